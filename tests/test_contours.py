"""Frame contours (``analyze(..., contours=True)``, ``result.contours()``, ``--contours``).

Audio: the bundled JFK recording (real speech) and numpy harmonic complexes of known F0
(synthetic), through the real Praat in the real worker process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.audio.load import audio_from_signal
from features.errors import ParameterError
from features.prosody.contours import BYTES_PER_FRAME, CONTOUR_COLUMNS, grid_start
from features.prosody.stream import ProsodyConfig, ProsodyStream
from features.segments.vad import Segment
from fusion.schema import SessionResult

SR = 16_000
PROSODY_ONLY = {"emotion.enabled": False, "transcript.enabled": False,
                "sentiment.enabled": False}


def _harmonic(f0_hz: float, duration_s: float) -> np.ndarray:
    t = np.arange(int(duration_s * SR)) / SR
    return 0.1 * sum(np.sin(2 * np.pi * f0_hz * k * t) / k for k in range(1, 12))


@pytest.fixture(scope="module")
def jfk_result(jfk_path: Path) -> SessionResult:
    import fusion

    return fusion.analyze(jfk_path, contours=True, overrides=PROSODY_ONLY)


def test_contours_table_shape_grid_and_segments(jfk_result: SessionResult) -> None:
    df = jfk_result.contours()
    assert list(df.index.names) == ["file", "time"]
    assert set(df.index.get_level_values("file")) == {jfk_result.source.path}
    times = df.index.get_level_values("time")
    assert isinstance(times, pd.TimedeltaIndex)
    ms = times.total_seconds().to_numpy() * 1000.0
    np.testing.assert_allclose(ms, np.round(ms / 10.0) * 10.0, atol=1e-6)  # the 10-ms grid
    assert list(df.columns) == ["segment", *CONTOUR_COLUMNS]  # no speakers in this result
    assert all(df[c].dtype == np.float32 for c in CONTOUR_COLUMNS)
    t_s = times.total_seconds().to_numpy()
    for i, seg in enumerate(jfk_result.segments):  # every frame inside its segment, all there
        ts = t_s[df["segment"].to_numpy() == i]
        assert ts.size == grid_start(seg.end_s) - grid_start(seg.start_s)
        assert ts.min() >= seg.start_s - 1e-9 and ts.max() < seg.end_s
    assert df["f0_hz"].notna().mean() > 0.4 and df["intensity_db"].notna().mean() > 0.9


def test_contours_agree_with_the_segment_measures(jfk_result: SessionResult) -> None:
    df = jfk_result.contours()
    for i, seg in enumerate(jfk_result.segments):
        frames = df[df["segment"] == i]
        pr = seg.prosody
        assert pr is not None and pr.f0_mean_hz is not None and pr.f1_mean_hz is not None
        # same pitch range and Praat analysis (0.01-s step here): means within 1 %
        assert frames["f0_hz"].mean() == pytest.approx(pr.f0_mean_hz, rel=0.01)
        # F1 on the same voiced frames (the pitch step differs slightly): within 5 %
        assert frames["f1_hz"].mean() == pytest.approx(pr.f1_mean_hz, rel=0.05)
        assert pr.hnr_db is not None
        assert frames["hnr_db"].mean() == pytest.approx(pr.hnr_db, abs=1.0)


def test_contours_follow_a_known_f0_in_child_and_here() -> None:
    y = np.concatenate([_harmonic(150.0, 1.0), np.zeros(SR // 2), _harmonic(220.0, 1.0)])
    audio = audio_from_signal(y.astype(np.float32), SR, name="synthetic")
    segments = [Segment(0.003, 1.0), Segment(1.5, 2.5)]
    tables = []
    for where in ("child-process", "this-process"):
        stream = ProsodyStream(ProsodyConfig(run_praat_in=where))
        stream.load()
        c = stream.contours(audio, segments, pitch_floor_hz=75.0, pitch_ceiling_hz=400.0)
        assert c.nbytes == c.n_frames * BYTES_PER_FRAME
        tables.append(c)
    a, b = tables
    np.testing.assert_array_equal(a.frame, b.frame)
    for col in CONTOUR_COLUMNS:  # the child runs the same function on the same float32 samples
        np.testing.assert_array_equal(a.values[col], b.values[col])
    assert a.frame[0] == 1 and a.frame[-1] == 249  # 0.003 s → frame 1; 2.5 s excluded
    f0 = a.values["f0_hz"]
    first, second = f0[a.segment == 0], f0[a.segment == 1]
    assert np.nanmedian(first) == pytest.approx(150.0, rel=0.005)
    assert np.nanmedian(second) == pytest.approx(220.0, rel=0.005)
    assert np.mean(np.isfinite(first)) > 0.9


def test_result_without_contours_says_how(jfk_result: SessionResult) -> None:
    again = SessionResult.from_json(jfk_result.to_json())  # JSON holds no contours
    assert not again.has_contours
    with pytest.raises(ParameterError, match=r"contours=True"):
        again.contours()


def test_contours_need_the_prosody_stream(jfk_path: Path) -> None:
    from fusion.config import load_config
    from fusion.engine.analyzer import Analyzer

    cfg = load_config(overrides={**PROSODY_ONLY, "prosody.enabled": False,
                                 "fusion.enabled": False})
    with pytest.raises(ParameterError, match="prosody"):
        Analyzer(cfg).process_file(jfk_path, contours=True)


def test_cli_writes_the_contours_table(tmp_path: Path, jfk_path: Path,
                                       jfk_result: SessionResult) -> None:
    from fusion.cli.main import main

    light = [a for k in PROSODY_ONLY for a in ("--set", f"{k}=false")]
    assert main(["analyze", str(jfk_path), "-o", str(tmp_path), "-q", "--contours", "parquet",
                 *light]) == 0
    df = pd.read_parquet(tmp_path / "jfk.contours.parquet")
    expected = jfk_result.contours()
    assert list(df.index.names) == ["file", "time"]
    assert df.shape == expected.shape
    np.testing.assert_allclose(df["f0_hz"].to_numpy(), expected["f0_hz"].to_numpy(),
                               equal_nan=True)


def test_contours_carry_the_speaker_when_the_speaker_stage_ran(jfk_path: Path) -> None:
    """A stereo call made from the real JFK speech (its first half on the left channel, then
    its second half on the right): with ``speakers.mode = "channels"`` every contour frame
    names the speaker of its segment, and both channels' speakers are there."""
    import fusion
    from features.audio.load import load_audio

    y = load_audio(str(jfk_path)).y
    half = len(y) // 2
    left = np.concatenate([y[:half], np.zeros(len(y) - half)])
    right = np.concatenate([np.zeros(half), y[half:]])
    result = fusion.analyze(np.stack([left, right], axis=1), sr=SR, contours=True,
                            overrides={**PROSODY_ONLY, "speakers.mode": "channels"})
    df = result.contours()
    assert list(df.columns) == ["segment", "speaker", *CONTOUR_COLUMNS]
    seg_speaker = {i: seg.speaker for i, seg in enumerate(result.segments)}
    assert len(set(seg_speaker.values())) == 2
    assert (df["speaker"].astype(str) == df["segment"].map(seg_speaker)).all()
