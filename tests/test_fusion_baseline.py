"""Speaker baselines, population norms, and the `baseline` / `calibrate` commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from _fusion_factory import make_session

from features.errors import ConfigError, ParameterError, UnsafeModelFileError
from fusion.cli.main import main
from fusion.config import FusionConfig, config_dir
from fusion.schema import SessionResult, SessionStatus, SourceInfo
from fusion.scoring.baseline import (
    build_norms,
    build_profile,
    load_norms,
    load_profile,
    robust_location_scale,
    save_profile,
    speaker_baseline,
)
from fusion.scoring.fuser import Fuser
from fusion.scoring.head import load_prior
from fusion.scoring.vector import raw_features


def test_robust_location_scale() -> None:
    s = robust_location_scale([1.0, 2.0, 3.0, 4.0, 100.0], floor=0.1)
    assert s.median == 3.0 and s.scale == pytest.approx(1.4826) and s.n == 5
    assert robust_location_scale([5.0, 5.0, 5.0], floor=0.5).scale == 0.5  # floor
    assert robust_location_scale([1.0, np.nan, 3.0], floor=0.1).n == 2
    with pytest.raises(ParameterError):
        robust_location_scale([np.nan], floor=0.1)
    with pytest.raises(ParameterError):
        robust_location_scale([1.0], floor=0.0)


def test_session_baseline_rules() -> None:
    spec = load_prior()
    norms = load_norms(config_dir() / "population_norms.json")
    rows = [raw_features(s) for s in make_session(3)]
    base = speaker_baseline(rows, spec.normalisation, norms=norms)
    assert base["f0_mean_st"].source == "session" and base["f0_mean_st"].n == 3
    vals = [r["f0_mean_st"] for r in rows]
    assert base["f0_mean_st"].location == pytest.approx(float(np.median(vals)))
    two = speaker_baseline(rows[:2], spec.normalisation, norms=norms)
    assert two["f0_mean_st"].source == "session-2"
    assert two["f0_mean_st"].scale == pytest.approx(5.2)
    assert speaker_baseline(rows[:1], spec.normalisation, norms=norms) == {}


def _session(path: str, segs, speaker: str | None = None) -> SessionResult:
    return SessionResult(package_version="test", analysed_at=datetime.now(UTC),
                         status=SessionStatus.OK,
                         source=SourceInfo(path=path, duration_s=60.0, original_sr=16000,
                                           channels=1, format="wav", decoder="test"),
                         segments=segs, streams={}, config={}, config_hash="x",
                         speaker_id=speaker)


def test_profile_round_trip_and_errors(tmp_path: Path) -> None:
    spec = load_prior()
    sessions = [_session("a.wav", make_session(4), "s1"), _session("b.wav", make_session(5), "s1")]
    prof = build_profile(sessions, spec.normalisation, sex="male")
    assert prof.speaker_id == "s1" and prof.n_segments == 9 and prof.n_sessions == 2
    assert prof.features["f0_mean_st"].n_segments == 9
    save_profile(prof, tmp_path / "p.json")
    again = load_profile(tmp_path / "p.json")
    assert again == prof
    with pytest.raises(ParameterError, match="several speakers"):
        build_profile([sessions[0], _session("c.wav", make_session(3), "s2")],
                      spec.normalisation)
    (tmp_path / "bad.json").write_text('{"format": "nope"}')
    with pytest.raises(ConfigError, match="not a speaker profile"):
        load_profile(tmp_path / "bad.json")
    (tmp_path / "p.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeModelFileError):
        load_profile(tmp_path / "p.pkl")


def test_norms_validation_and_build(tmp_path: Path) -> None:
    data = json.loads((config_dir() / "population_norms.json").read_text(encoding="utf-8"))
    data["features"]["hnr_db"]["all"]["sd"] = 0
    (tmp_path / "n.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="sd > 0"):
        load_norms(tmp_path / "n.json")
    spec = load_prior()
    doc = build_norms([_session("a.wav", make_session(6))], spec.normalisation)
    (tmp_path / "built.json").write_text(json.dumps(doc))
    norms = load_norms(tmp_path / "built.json")
    assert norms.status("f0_mean_st") == "measured"
    mean, sd = norms.reference("f0_mean_st")
    assert mean == pytest.approx(8.0, abs=0.2) and sd > 0


def test_bundled_norms_are_labelled() -> None:
    data = json.loads((config_dir() / "population_norms.json").read_text(encoding="utf-8"))
    for feat, entry in data["features"].items():
        for group in ("all", "female", "male"):
            if group in entry:
                status = entry[group]["status"]
                assert status.split()[0] in ("published", "derived", "placeholder"), feat
                if status.startswith("published"):
                    assert entry[group]["source"]


# ------------------------------------------------------------------- commands
def test_cli_baseline_build(tmp_path: Path) -> None:
    spec_sessions = [_session(f"s{i}.wav", make_session(4), "alice") for i in range(2)]
    paths = []
    for i, s in enumerate(spec_sessions):
        p = tmp_path / f"s{i}.json"
        p.write_text(s.to_json())
        paths.append(str(p))
    out = tmp_path / "alice.json"
    assert main(["baseline", "build", *paths, "-o", str(out), "--sex", "female"]) == 0
    prof = load_profile(out)
    assert prof.speaker_id == "alice" and prof.sex == "female" and prof.n_sessions == 2
    fuser = Fuser(FusionConfig(speaker_profile=str(out))).load()
    assert fuser.sex_ == "female"
    norms_out = tmp_path / "norms.json"
    assert main(["baseline", "build", *paths, "--norms", "-o", str(norms_out)]) == 0
    assert load_norms(norms_out).status("speech_rate_syl_per_s") == "measured"
    assert main(["baseline", "build", str(tmp_path / "x.wav"), "-o", str(out)]) == 2


def _labelled_corpus(tmp_path: Path) -> Path:
    """6 synthetic speakers × (calm, stressed) saved analyses; stressed = higher F0, faster."""
    rng = np.random.default_rng(0)
    lines = ["file,speaker,stress,cortisol"]
    for spk in range(6):
        base_f0 = rng.normal(8, 3)
        for label in (0, 1):
            segs = make_session(8, prosody={
                "f0_mean_st": base_f0 + 1.5 * label + rng.normal(0, 0.3),
                "speech_rate_syl_per_s": 4.0 + 0.4 * label + rng.normal(0, 0.1)})
            path = tmp_path / f"spk{spk}_{label}.json"
            path.write_text(_session(path.name, segs).to_json())
            lines.append(f"{path.name},spk{spk},{label},{10 + 5 * label + rng.normal(0, 1):.3f}")
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def test_cli_calibrate_on_saved_analyses(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    csv = _labelled_corpus(tmp_path)
    out = tmp_path / "model.json"
    assert main(["calibrate", str(csv), "-o", str(out), "--folds", "3",
                 "--features", "prior"]) == 0
    printed = capsys.readouterr().out
    assert "held-out speakers" in printed and "ECE" in printed
    doc = json.loads(out.read_text())
    assert set(doc["heads"]) == {"stress", "cortisol"}
    assert doc["heads"]["cortisol"]["kind"] == "regression"
    td = doc["training_data"]
    assert td["n_speakers"] == 6 and td["n_sessions"] == 12 and td["speaker_baseline"] == "profile"
    assert "session-level labels apply" in td["label_rule"]
    m = doc["metrics"]["stress"]
    assert m["segment_level"]["calibrated"]["auc"] > 0.8
    assert m["session_level"]["uncalibrated"]["n"] == 12
    assert doc["population_norms"]["sha256"]
    fuser = Fuser(FusionConfig(model=str(out))).load()
    assert "stress: fitted and calibrated (platt)" in fuser.info().calibration_status
    assert fuser.info().calibrated is False  # depression still the prior
    segs, _ = fuser.fuse(make_session(5), {})
    assert segs[0].scores.stress.value is not None


def test_cli_calibrate_errors(tmp_path: Path) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_text("file,stress\na.json,1\n")
    assert main(["calibrate", str(bad), "-o", str(tmp_path / "m.json")]) == 2
    bad.write_text("file,speaker\na.json,s1\n")
    assert main(["calibrate", str(bad), "-o", str(tmp_path / "m.json")]) == 2
