"""End to end on real measurements: espeak-ng speech (SYNTHETIC) → real pipeline → fusion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import espeak_available, synth_speech

from fusion.config import load_config
from fusion.scoring.baseline import build_profile, save_profile
from fusion.scoring.head import PRIOR_CALIBRATION_STATUS, load_prior
from fusion.scoring.vector import FEATURES

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")

SENTENCES = [
    "We walked to the market this morning and bought some bread.",
    "The weather was calm and the river was quiet.",
    "Later we talked about the garden and the summer ahead.",
    "In the evening we cooked dinner and listened to music.",
]


def _session(tmp: Path, name: str, *, pitch: int, rate: int) -> Path:
    """Four synthetic sentences separated by 0.8 s pauses (so VAD finds several segments)."""
    parts = []
    for i, text in enumerate(SENTENCES):
        wav = synth_speech(tmp / f"{name}_{i}.wav", text, pitch=pitch, rate_wpm=rate)
        y, sr = sf.read(wav, dtype="float32")
        parts += [y, np.zeros(int(0.8 * sr), dtype=np.float32)]
    out = tmp / f"{name}.wav"
    sf.write(out, np.concatenate(parts), sr)
    return out


@pytest.fixture(scope="module")
def analyses(tmp_path_factory: pytest.TempPathFactory):
    from fusion.engine.analyzer import Analyzer

    tmp = tmp_path_factory.mktemp("e2e")
    calm = _session(tmp, "calm", pitch=40, rate=150)
    high = _session(tmp, "high", pitch=75, rate=190)
    analyzer = Analyzer(load_config(), streams=["prosody"]).load()
    return tmp, analyzer.process_file(calm), analyzer.process_file(high), analyzer


def test_pipeline_scores_real_measurements(analyses) -> None:
    _, calm, _, _ = analyses
    assert calm.fusion is not None and calm.fusion.calibrated is False
    assert calm.fusion.calibration_status == PRIOR_CALIBRATION_STATUS
    assert len(calm.segments) >= 3
    for seg in calm.segments:
        assert seg.prosody is not None and seg.scores is not None
        for detail in (seg.scores.stress, seg.scores.depression):
            assert detail.value is not None and 0 <= detail.value <= 1
            assert sum(detail.contributions.values()) == detail.logit
            assert set(detail.contributions) <= {"intercept", "prosody"}
            assert 0 < detail.confidence < 1  # emotion/sentiment/lexical weight missing
        assert set(seg.scores.features_speaker_z) <= set(FEATURES)
    s = calm.summary
    assert s.coverage["prosody"] == pytest.approx(1.0)
    assert s.coverage.get("sentiment", 0.0) == 0.0 and s.coverage["lexical"] == 0.0
    assert s.stress is not None and 0 <= s.stress.mean <= 1


def test_speaker_profile_raises_stress_of_higher_faster_session(analyses) -> None:
    from fusion.config import FusionConfig
    from fusion.scoring.fuser import Fuser

    tmp, calm, high, _ = analyses
    profile = build_profile([calm], load_prior().normalisation, speaker_id="espeak-en-us")
    save_profile(profile, tmp / "profile.json")
    fuser = Fuser(FusionConfig(speaker_profile=str(tmp / "profile.json"))).load()
    _, calm_summary = fuser.fuse(list(calm.segments), calm.streams)
    high_segs, high_summary = fuser.fuse(list(high.segments), high.streams)
    assert high_summary.stress.mean > calm_summary.stress.mean + 0.2
    assert all(s.scores.features_speaker_z["f0_mean_st"] > 1 for s in high_segs)


def test_cli_baseline_and_calibrate_on_saved_results(analyses, tmp_path: Path) -> None:
    tmp, calm, high, _ = analyses
    (tmp_path / "calm.json").write_text(calm.to_json())
    (tmp_path / "high.json").write_text(high.to_json())
    run = [sys.executable, "-m", "fusion.cli.main"]
    r = subprocess.run([*run, "baseline", "build", str(tmp_path / "calm.json"), "-o",
                        str(tmp_path / "p.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "wrote speaker profile" in r.stdout


def test_label_table_audio_is_analysed_once_and_cached(analyses, tmp_path: Path) -> None:
    from fusion.training.labels import load_sessions, read_label_csv

    tmp, calm, _, analyzer = analyses
    (tmp_path / "labels.csv").write_text(f"file,speaker,stress\n{tmp / 'calm.wav'},a,0\n"
                                         f"{tmp / 'calm.wav'},a,1\n")
    rows = read_label_csv(tmp_path / "labels.csv")
    calls = []

    def factory():
        calls.append(1)
        return analyzer

    cfg_hash = calm.config_hash
    first = load_sessions(rows, analyzer_factory=factory, analyses_dir=tmp_path / "cache",
                          config_hash=cfg_hash)
    assert len(calls) == 1 and len(first) == 1
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    again = load_sessions(rows, analyzer_factory=factory, analyses_dir=tmp_path / "cache",
                          config_hash=cfg_hash)
    assert len(calls) == 1  # reused, not recomputed
    seg_a = next(iter(first.values())).segments
    seg_b = next(iter(again.values())).segments
    assert [s.prosody for s in seg_a] == [s.prosody for s in seg_b]


@pytest.mark.slow
def test_calibrate_example_runs(tmp_path: Path) -> None:
    """examples/calibrate.py end to end on a reduced SYNTHETIC corpus (about 1–2 minutes)."""
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "examples" / "calibrate.py"), "--out",
                        str(tmp_path), "--sessions", "1"], capture_output=True, text=True,
                       timeout=900, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "SYNTHETIC data" in r.stdout and "ECE on held-out speakers" in r.stdout
    assert (tmp_path / "stress_model.json").exists()
