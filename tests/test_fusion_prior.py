"""The literature prior: loading, provenance, formulas, monotonicity of every coefficient."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _fusion_factory import BASE_EMOTION, BASE_PROSODY, BASE_SENTIMENT, make_segment, make_session

from features.errors import ConfigError
from fusion.config import FusionConfig, config_dir
from fusion.scoring.baseline import load_norms, profile_from_segments, save_profile
from fusion.scoring.calibration import sigmoid
from fusion.scoring.fuser import Fuser
from fusion.scoring.head import PRIOR_CALIBRATION_STATUS, load_prior
from fusion.scoring.vector import FEATURES

ROOT = Path(__file__).resolve().parents[1]
PRIOR_PATH = config_dir() / "fusion_prior.json"


def _prior_json() -> dict:
    return json.loads(PRIOR_PATH.read_text(encoding="utf-8"))


def test_prior_loads_with_documented_intercepts() -> None:
    spec = load_prior()
    data = _prior_json()
    assert spec.origin == "prior"
    assert not spec.calibrated
    assert spec.calibration_status == PRIOR_CALIBRATION_STATUS
    for target in ("stress", "depression"):
        p = data["heads"][target]["base_rate"]
        assert spec.heads[target].intercept == pytest.approx(math.log(p / (1 - p)), abs=1e-12)
    assert data["heads"]["depression"]["base_rate"] == 0.05
    assert spec.heads["stress"].intercept == 0.0


def test_every_coefficient_is_documented_and_cited() -> None:
    data = _prior_json()
    docs = (ROOT / "docs" / "scores.md").read_text(encoding="utf-8")
    for target, head in data["heads"].items():
        assert head["base_rate_reason"]
        for c in head["coefficients"]:
            assert c["feature"] in FEATURES
            assert c["sources"], f"{target}.{c['feature']} has no source"
            assert c["derivation"] and c["strength"]
            for key in c["sources"]:
                assert key in docs, f"source {key} of {target}.{c['feature']} not in docs"
            # the docs table lists every non-zero coefficient with its value
            if c["beta"] != 0:
                assert f"`{c['feature']}`" in docs


def test_prior_weights_follow_the_json_exactly(tmp_path: Path) -> None:
    """No hidden numbers: editing the JSON changes the score by exactly the edit."""
    segs = make_session(6)
    base_out, _ = Fuser(FusionConfig()).load().fuse(segs, {})
    data = _prior_json()
    for c in data["heads"]["stress"]["coefficients"]:
        if c["feature"] == "f0_mean_st":
            c["beta"] = 2 * c["beta"]
    data["heads"]["depression"]["base_rate"] = 0.2
    p = tmp_path / "prior.json"
    p.write_text(json.dumps(data), encoding="utf-8")
    fuser = Fuser(FusionConfig(model=str(p))).load()
    assert fuser.info().calibrated is False
    assert fuser.info().calibration_status == PRIOR_CALIBRATION_STATUS
    out, _ = fuser.fuse(segs, {})
    for a, b in zip(base_out, out, strict=True):
        fa = a.scores.stress.feature_contributions["speaker_z.f0_mean_st"]
        fb = b.scores.stress.feature_contributions["speaker_z.f0_mean_st"]
        assert fb == pytest.approx(2 * fa, abs=1e-12)
        shift = math.log(0.2 / 0.8) - math.log(0.05 / 0.95)
        assert b.scores.depression.logit == pytest.approx(a.scores.depression.logit + shift,
                                                          abs=1e-12)


def test_prior_rejects_unknown_feature(tmp_path: Path) -> None:
    data = _prior_json()
    data["heads"]["stress"]["coefficients"][0]["feature"] = "f0_mean_bogus"
    p = tmp_path / "prior.json"
    p.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown feature 'f0_mean_bogus'"):
        load_prior(p)


def test_contributions_sum_exactly_to_the_logit() -> None:
    out, _ = Fuser(FusionConfig()).load().fuse(make_session(6), {})
    for seg in out:
        for detail in (seg.scores.stress, seg.scores.depression):
            assert sum(detail.contributions.values()) == detail.logit
            assert detail.value == pytest.approx(sigmoid(detail.logit), abs=1e-15)
            by_stream: dict[str, float] = {}
            for name, v in detail.feature_contributions.items():
                stream = FEATURES[name.split(".", 1)[1]].stream
                by_stream[stream] = by_stream.get(stream, 0.0) + v
            for stream, v in by_stream.items():
                assert detail.contributions[stream] == pytest.approx(v, abs=1e-12)
            assert 0.0 <= detail.value <= 1.0 and 0.0 <= detail.confidence <= 1.0


# ------------------------------------------------------------------- monotonicity
def _segment_with(feature: str, value: float, index: int = 0):
    if feature in BASE_PROSODY:
        return make_segment(index, prosody={feature: value})
    if feature.startswith("emotion_") and feature[8:] in ("arousal", "valence", "dominance"):
        return make_segment(index, arousal=value)
    if feature.startswith("emotion_"):
        return make_segment(index, emotion={feature[8:]: value})
    key = feature[len("sentiment_"):] if feature.startswith("sentiment_") else feature
    assert key in BASE_SENTIMENT
    return make_segment(index, sentiment={key: value})


def _base_value(feature: str) -> float:
    if feature in BASE_PROSODY:
        return float(BASE_PROSODY[feature])
    if feature == "emotion_arousal":
        return 0.5
    if feature.startswith("emotion_"):
        return BASE_EMOTION[feature[8:]]
    key = feature[len("sentiment_"):] if feature.startswith("sentiment_") else feature
    return float(BASE_SENTIMENT[key])


@pytest.fixture(scope="module")
def profile_fuser(tmp_path_factory: pytest.TempPathFactory) -> Fuser:
    """A fuser with a fixed speaker baseline (a stored profile) so one segment's change
    moves only its own z-scores."""
    spec = load_prior()
    profile = profile_from_segments(make_session(9), spec.normalisation, speaker_id="s1")
    path = tmp_path_factory.mktemp("profile") / "speaker.json"
    save_profile(profile, path)
    return Fuser(FusionConfig(speaker_profile=str(path))).load()


_COEFS = [(t, c) for t, h in json.loads(PRIOR_PATH.read_text(encoding="utf-8"))["heads"].items()
          for c in h["coefficients"]]


@pytest.mark.parametrize(("target", "coef"), _COEFS,
                         ids=[f"{t}-{c['feature']}-{c['normalisation']}" for t, c in _COEFS])
def test_raising_a_feature_moves_the_score_the_sign_way(profile_fuser: Fuser, target: str,
                                                        coef: dict) -> None:
    feature, beta = coef["feature"], coef["beta"]
    norms = load_norms(config_dir() / "population_norms.json")
    ref = norms.reference(feature)
    assert ref is not None, f"{feature} has no population norm"
    base = _base_value(feature)
    step = 0.25 * ref[1]  # a quarter of a population SD: stays inside the clip range
    if feature == "pause_count":  # an integer measure
        step = 1
    lo = profile_fuser.fuse([_segment_with(feature, base)], {})[0][0].scores
    hi = profile_fuser.fuse([_segment_with(feature, base + step)], {})[0][0].scores
    d_lo, d_hi = getattr(lo, target), getattr(hi, target)
    assert d_lo.value is not None and d_hi.value is not None
    delta = d_hi.logit - d_lo.logit
    if beta > 0:
        assert d_hi.value > d_lo.value and delta > 0
    elif beta < 0:
        assert d_hi.value < d_lo.value and delta < 0
    else:
        assert delta == pytest.approx(0.0, abs=1e-12)
    if beta != 0:
        prefix = "speaker_z" if coef["normalisation"] == "speaker" else "population_z"
        dz = (getattr(hi, f"features_{coef['normalisation']}_z")[feature]
              - getattr(lo, f"features_{coef['normalisation']}_z")[feature])
        assert delta == pytest.approx(beta * dz, rel=1e-4, abs=1e-6)
        assert f"{prefix}.{feature}" in d_hi.feature_contributions
