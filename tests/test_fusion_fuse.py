"""The Fuser: missing streams, insufficient speech, speaker baselines, fitted models."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from _fusion_factory import make_segment, make_session

from features.errors import ConfigError, UnsafeModelFileError
from fusion.config import FusionConfig
from fusion.schema import SessionResult
from fusion.scoring.fuser import Fuser
from fusion.scoring.head import PRIOR_CALIBRATION_STATUS, load_prior
from fusion.training.estimator import FusionModel
from fusion.training.persistence import save_model


@pytest.fixture(scope="module")
def prior_fuser() -> Fuser:
    return Fuser(FusionConfig()).load()


def test_info_labels_the_prior(prior_fuser: Fuser) -> None:
    info = prior_fuser.info()
    assert info.model_name == "vocalfusion-prior-v1"
    assert info.calibrated is False
    assert info.calibration_status == PRIOR_CALIBRATION_STATUS
    assert info.model_sha256 and len(info.model_sha256) == 64


def test_fuse_returns_copies_with_scores(prior_fuser: Fuser) -> None:
    segs = make_session(5)
    out, summary = prior_fuser.fuse(segs, {})
    assert all(s.scores is None for s in segs)  # inputs untouched
    assert [s.index for s in out] == [s.index for s in segs]
    assert all(s.scores is not None for s in out)
    assert summary.n_segments == 5
    assert summary.speech_s == pytest.approx(sum(s.duration_s for s in segs))
    assert summary.stress is not None and summary.depression is not None
    assert summary.coverage["prosody"] == 1.0 and summary.coverage["lexical"] == 1.0


def test_missing_stream_is_left_out_not_zero_imputed(prior_fuser: Fuser) -> None:
    full = make_session(5)
    no_emotion = [s.model_copy(update={"emotion": None}) for s in full]
    out_full, sum_full = prior_fuser.fuse(full, {})
    out_missing, sum_missing = prior_fuser.fuse(no_emotion, {})
    for a, b in zip(out_full, out_missing, strict=True):
        sa, sb = a.scores.stress, b.scores.stress
        # the emotion stream is absent from the explanation, not a 0 entry
        assert "emotion" in sa.contributions and "emotion" not in sb.contributions
        assert not any(k.endswith(("emotion_fearful", "emotion_angry", "emotion_arousal"))
                       for k in sb.feature_contributions)
        # confidence drops by exactly the emotion share of the absolute prior weight
        head = prior_fuser.spec_.heads["stress"]
        emo_w = sum(abs(w) for n, w in head.weights.items() if ".emotion_" in n)
        assert sb.confidence == pytest.approx(sa.confidence * (1 - emo_w / head.total_abs_weight))
        assert sb.confidence < sa.confidence
        # the logit is the sum of the present contributions only
        assert sb.logit == pytest.approx(sa.logit - sa.contributions["emotion"], abs=1e-12)
        assert "emotion_fearful" not in b.scores.features_speaker_z
    assert sum_missing.coverage["emotion"] == 0.0 and sum_full.coverage["emotion"] == 1.0


def test_zero_imputation_would_differ(prior_fuser: Fuser) -> None:
    """Guard against silent 0-imputation: an emotion z of 0 keeps the confidence; absence
    lowers it."""
    segs = make_session(4)
    flat = [s.model_copy(update={"emotion": make_segment(0).emotion}) for s in segs]
    out_flat, _ = prior_fuser.fuse(flat, {})  # emotion present, speaker z == 0 everywhere
    out_none, _ = prior_fuser.fuse([s.model_copy(update={"emotion": None}) for s in segs], {})
    for a, b in zip(out_flat, out_none, strict=True):
        assert a.scores.stress.contributions["emotion"] == 0.0
        assert a.scores.stress.confidence > b.scores.stress.confidence


def test_no_features_gives_no_value(prior_fuser: Fuser) -> None:
    segs = [make_segment(i, prosody=False, emotion=False, sentiment=False) for i in range(3)]
    out, summary = prior_fuser.fuse(segs, {})
    for s in out:
        assert s.scores.stress.value is None and s.scores.stress.confidence == 0.0
        assert s.scores.depression.value is None and s.scores.depression.contributions == {}
    assert summary.stress is None and summary.depression is None


def test_lexical_features_need_enough_words(prior_fuser: Fuser) -> None:
    segs = make_session(4)
    few = [s.model_copy(update={"sentiment": s.sentiment.model_copy(update={"word_count": 3})})
           for s in segs]
    out, summary = prior_fuser.fuse(few, {})
    for s in out:
        assert "lexical" not in s.scores.depression.contributions
        assert "sentiment" not in s.scores.depression.contributions
    assert summary.coverage["lexical"] == 0.0


def test_short_and_unvoiced_segments_lower_confidence(prior_fuser: Fuser) -> None:
    segs = make_session(4)
    short = segs[:3] + [make_segment(3, duration_s=1.5)]
    out, _ = prior_fuser.fuse(short, {})
    assert out[3].scores.depression.confidence == pytest.approx(
        out[0].scores.depression.confidence * 0.5)
    unvoiced = segs[:3] + [make_segment(3, prosody={"voiced_fraction": 0.15})]
    out, _ = prior_fuser.fuse(unvoiced, {})
    assert out[3].scores.stress.confidence == pytest.approx(out[0].scores.stress.confidence * 0.5)


@pytest.mark.parametrize("insufficient", [True, False])
def test_insufficient_speech_or_no_segments(prior_fuser: Fuser, insufficient: bool) -> None:
    segs = make_session(2) if insufficient else []
    out, summary = prior_fuser.fuse(segs, {}, insufficient_speech=insufficient)
    assert all(s.scores is None for s in out)
    assert summary.stress is None and summary.depression is None
    assert summary.n_segments == len(segs)
    assert summary.speech_s == pytest.approx(sum(s.duration_s for s in segs))
    if segs:
        assert summary.coverage["prosody"] == 1.0


def test_session_baseline_fallbacks(prior_fuser: Fuser) -> None:
    # one segment: no within-session baseline → population reference values, half the
    # confidence (issue 16: a one-segment clip still gets a stress value that means something)
    out, summary = prior_fuser.fuse([make_segment(0)], {})
    assert out[0].scores.features_speaker_z != {}
    assert out[0].scores.stress.value is not None
    assert out[0].scores.stress.reference == "population"
    assert set(out[0].scores.stress.feature_references.values()) == {"population"}
    assert summary.stress is not None and summary.stress.reference == "population"
    assert summary.stress.fraction_above_threshold is not None
    assert out[0].scores.depression.value is not None  # population z still there
    # two segments: session median, population SD as scale
    two = [make_segment(0, prosody={"f0_mean_st": 8.0}),
           make_segment(1, prosody={"f0_mean_st": 10.0})]
    out, _ = prior_fuser.fuse(two, {})
    z = out[1].scores.features_speaker_z["f0_mean_st"]
    assert z == pytest.approx((10.0 - 9.0) / 5.2, abs=1e-6)


def test_speaker_profile_replaces_session_baseline(tmp_path: Path) -> None:
    from fusion.scoring.baseline import profile_from_segments, save_profile

    spec = load_prior()
    calm = make_session(6)
    profile = profile_from_segments(calm, spec.normalisation, speaker_id="s1", sex="female")
    save_profile(profile, tmp_path / "s1.json")
    stressed = make_session(6, prosody={"f0_mean_st": 11.0})
    session_fuser = Fuser(FusionConfig()).load()
    profile_fuser = Fuser(FusionConfig(speaker_profile=str(tmp_path / "s1.json"))).load()
    assert profile_fuser.sex_ == "female"
    s_out, _ = session_fuser.fuse(stressed, {})
    p_out, p_sum = profile_fuser.fuse(stressed, {})
    # a whole-session F0 rise is invisible against the session itself, visible against the
    # profile
    assert abs(s_out[0].scores.features_speaker_z["f0_mean_st"]) < 1
    assert p_out[0].scores.features_speaker_z["f0_mean_st"] > 3
    assert p_sum.stress.mean > 0.7
    # sex-specific norms are used for F0: (11 - 12.84) / 2.0
    assert p_out[0].scores.features_population_z["f0_mean_st"] == pytest.approx(
        (11.0 - 12.84) / 2.0, abs=1e-6)


# ------------------------------------------------------------------- fitted models
def _fitted_model_file(tmp_path: Path, *, calibration: str | None = "platt") -> Path:
    import pandas as pd

    spec = load_prior()
    fuser = Fuser(FusionConfig()).load()
    rows, labels, groups = [], [], []
    rng = np.random.default_rng(0)
    for spk in range(6):
        for label in (0, 1):
            segs = make_session(5, prosody={"f0_mean_st": 8.0 + 2.0 * label + rng.normal(0, .5),
                                            "speech_rate_syl_per_s": 4.0 - 0.5 * label})
            rows += fuser.features(segs).fused()
            labels += [label] * len(segs)
            groups += [spk] * len(segs)
    X = pd.DataFrame.from_records(rows).astype(float)
    model = FusionModel(target="depression", calibration=calibration).fit(
        X, np.array(labels), groups=np.array(groups))
    return save_model(tmp_path / "model.json", {"depression": model},
                      normalisation=spec.normalisation, confidence=spec.confidence,
                      population_norms={"name": fuser.norms_.name,
                                        "sha256": fuser.norms_.sha256},
                      training_data={"n_sessions": 12, "n_speakers": 6})


def test_fitted_model_scores_and_is_named(tmp_path: Path) -> None:
    path = _fitted_model_file(tmp_path)
    fuser = Fuser(FusionConfig(model=str(path))).load()
    info = fuser.info()
    assert info.model_name == "model" and info.model_path == str(path)
    assert info.calibrated is False  # the stress head is still the prior
    assert "depression: fitted and calibrated (platt)" in info.calibration_status
    assert f"stress: {PRIOR_CALIBRATION_STATUS}" in info.calibration_status
    out, summary = fuser.fuse(make_session(5), {})
    d = out[0].scores.depression
    assert sum(d.contributions.values()) == d.logit
    head = fuser.spec_.heads["depression"]
    assert d.value == pytest.approx(float(head.calibrator.predict([d.logit])[0]))
    assert summary.depression is not None


def test_model_json_round_trip_gives_identical_scores(tmp_path: Path) -> None:
    path = _fitted_model_file(tmp_path)
    again = tmp_path / "copy.json"
    again.write_text(json.dumps(json.loads(path.read_text())), encoding="utf-8")
    segs = make_session(6, prosody={"f0_mean_st": 9.0})
    a, _ = Fuser(FusionConfig(model=str(path))).load().fuse(segs, {})
    b, _ = Fuser(FusionConfig(model=str(again))).load().fuse(segs, {})
    assert [s.scores for s in a] == [s.scores for s in b]
    # and through the result JSON
    assert [s.scores.model_dump_json() for s in a] == [s.scores.model_dump_json() for s in b]


def test_norms_mismatch_is_refused(tmp_path: Path) -> None:
    path = _fitted_model_file(tmp_path)
    from fusion.config import config_dir

    other = json.loads((config_dir() / "population_norms.json").read_text(encoding="utf-8"))
    other["features"]["speech_rate_syl_per_s"]["all"]["mean"] = 3.0
    (tmp_path / "norms.json").write_text(json.dumps(other), encoding="utf-8")
    with pytest.raises(ConfigError, match="population norms"):
        Fuser(FusionConfig(model=str(path), population_norms=str(tmp_path / "norms.json"))).load()


def test_model_with_unknown_features_is_refused(tmp_path: Path) -> None:
    path = _fitted_model_file(tmp_path)
    data = json.loads(path.read_text())
    data["heads"]["depression"]["features"][0]["name"] = "population_z.shoe_size_cm"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="shoe_size_cm.*does not produce"):
        Fuser(FusionConfig(model=str(path))).load()


@pytest.mark.parametrize("name", ["model.pkl", "model.json"])
def test_pickle_model_file_is_refused(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_bytes(pickle.dumps({"heads": {}}))
    with pytest.raises(UnsafeModelFileError, match="pickle"):
        Fuser(FusionConfig(model=str(p))).load()


def test_not_a_model_file(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text('{"format": "something-else"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="not a vocalfusion fusion model"):
        Fuser(FusionConfig(model=str(p))).load()
    p.write_text("[1, 2", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid UTF-8 JSON"):
        Fuser(FusionConfig(model=str(p))).load()


def test_scores_survive_the_result_json(prior_fuser: Fuser) -> None:
    from datetime import UTC, datetime

    from fusion.schema import SessionStatus, SourceInfo

    out, summary = prior_fuser.fuse(make_session(4), {})
    res = SessionResult(package_version="0", analysed_at=datetime.now(UTC),
                        status=SessionStatus.OK,
                        source=SourceInfo(path="x.wav", duration_s=20.0, original_sr=16000,
                                          channels=1, format="wav", decoder="test"),
                        segments=out, streams={}, fusion=prior_fuser.info(), summary=summary,
                        config={}, config_hash="0")
    again = SessionResult.from_json(res.to_json())
    assert again.segments == res.segments and again.summary == res.summary
    for seg in again.segments:
        d = seg.scores.stress
        assert sum(d.contributions.values()) == d.logit
