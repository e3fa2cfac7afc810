"""features.segments.vad: Silero VAD (ONNX, no torch) and the segmentation policies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.audio.load import load_audio
from features.errors import ParameterError
from features.segments.vad import (
    Segment,
    SegmentsConfig,
    SileroVAD,
    clear_vad_cache,
    fixed_segments,
    postprocess_regions,
    segment_audio,
    speech_regions,
)

SR = 16_000


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD().load()


def _check_invariants(segs: list[Segment], duration_s: float) -> None:
    assert segs == sorted(segs)
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.end_s <= b.start_s, (a, b)
    for s in segs:
        assert 0.0 <= s.start_s < s.end_s <= duration_s + 1e-9


def test_real_speech_segments(jfk_path: Path, vad: SileroVAD) -> None:
    a = load_audio(jfk_path)
    segs = segment_audio(a.y, a.sr, vad=vad)
    _check_invariants(segs, a.duration_s)
    speech = sum(s.duration_s for s in segs)
    assert 6.0 < speech < 11.0  # JFK speaks for most of the 11 s, with clear pauses
    assert all(s.duration_s >= 1.0 for s in segs)


def test_matches_silero_reference_implementation(jfk_path: Path, vad: SileroVAD) -> None:
    """Our numpy port of get_speech_timestamps gives the package's own answer (same model)."""
    torch = pytest.importorskip("torch")
    silero_vad = pytest.importorskip("silero_vad")
    threads = torch.get_num_threads()
    a = load_audio(jfk_path)
    model = silero_vad.load_silero_vad(onnx=True)
    torch.set_num_threads(threads)  # silero_vad sets it to 1 on import
    ref = silero_vad.get_speech_timestamps(torch.from_numpy(a.y), model,
                                           min_silence_duration_ms=300, speech_pad_ms=30)
    ours = speech_regions(vad.probabilities(a.y), len(a.y), min_silence_ms=300, speech_pad_ms=30)
    assert [(d["start"], d["end"]) for d in ref] == ours


def test_silence_and_noise_give_no_or_little_speech(vad: SileroVAD) -> None:
    assert segment_audio(np.zeros(SR * 5, dtype=np.float32), SR, vad=vad) == []
    rng = np.random.default_rng(0)
    noise = (0.05 * rng.standard_normal(SR * 5)).astype(np.float32)
    segs = segment_audio(noise, SR, vad=vad)
    assert sum(s.duration_s for s in segs) < 1.5


def test_vad_runs_once_per_signal(jfk_path: Path, vad: SileroVAD,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Segmentation and the transcript's speech gate (another SileroVAD) share one pass; a
    changed sample, or a cleared cache, means a new pass with the same answer as before."""
    y = load_audio(jfk_path).y
    clear_vad_cache()
    passes: list[int] = []
    real_run = SileroVAD._run

    def counted(self: SileroVAD, padded: np.ndarray, n_frames: int) -> np.ndarray:
        passes.append(n_frames)
        return real_run(self, padded, n_frames)

    monkeypatch.setattr(SileroVAD, "_run", counted)
    first = vad.probabilities(y)
    again = SileroVAD().probabilities(y.copy())  # another instance, an equal copy
    assert len(passes) == 1
    np.testing.assert_array_equal(first, again)
    again[:] = 0  # callers get their own array
    np.testing.assert_array_equal(vad.probabilities(y), first)
    assert len(passes) == 1
    changed = y.copy()
    changed[1000] += 0.01
    vad.probabilities(changed)
    assert len(passes) == 2
    clear_vad_cache()
    np.testing.assert_array_equal(vad.probabilities(y), first)
    assert len(passes) == 3


def test_vad_does_not_import_torch(jfk_path: Path) -> None:
    code = ("import sys; from features.audio.load import load_audio; "
            "from features.segments.vad import segment_audio; "
            f"a = load_audio({str(jfk_path)!r}); segment_audio(a.y, a.sr); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_merge_split_and_drop() -> None:
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(SR * 60)).astype(np.float32)
    y[SR * 20: SR * 20 + 800] = 0.0  # a quiet spot inside a long region: the split point
    regions = [(0.0, 2.0), (2.3, 5.0),  # gap 0.3 s → merged
               (8.0, 8.4),  # isolated 0.4 s burst → dropped
               (10.0, 40.0),  # 30 s → split below 15 s
               (40.6, 41.0),  # short fragment 0.6 s after the last piece → joins it
               (50.0, 50.5)]  # isolated short burst → dropped
    segs = postprocess_regions(regions, y, SR, merge_gap_s=0.5, min_segment_s=1.0,
                               max_segment_s=15.0)
    _check_invariants(segs, 60.0)
    assert segs[0] == Segment(0.0, 5.0)
    assert all(s.duration_s <= 15.0 + 1e-6 for s in segs)
    assert all(s.duration_s >= 1.0 for s in segs)
    assert not any(s.start_s <= 8.2 < s.end_s for s in segs)
    assert not any(s.start_s <= 50.2 < s.end_s for s in segs)
    assert segs[-1].end_s == 41.0
    assert any(abs(s.end_s - 20.025) < 0.05 for s in segs)  # cut at the quiet spot


def test_short_fragment_merged_into_close_neighbour() -> None:
    y = np.ones(SR * 10, dtype=np.float32) * 0.1
    segs = postprocess_regions([(1.0, 1.5), (1.8, 4.0)], y, SR, merge_gap_s=0.2,
                               min_segment_s=1.0, max_segment_s=15.0)
    assert segs == [Segment(1.0, 4.0)]
    # too far from any neighbour: dropped
    segs = postprocess_regions([(1.0, 1.5), (3.0, 5.0)], y, SR, merge_gap_s=0.2,
                               min_segment_s=1.0, max_segment_s=15.0)
    assert segs == [Segment(3.0, 5.0)]


def test_fixed_policy() -> None:
    segs = fixed_segments(12.0, 5.0)
    assert segs == [Segment(0.0, 5.0), Segment(5.0, 10.0), Segment(10.0, 12.0)]
    cfg = SegmentsConfig(policy="fixed", window_s=4.0, hop_s=2.0)
    segs = segment_audio(np.zeros(SR * 9, dtype=np.float32), SR, cfg)
    assert [s.start_s for s in segs] == [0.0, 2.0, 4.0, 6.0]
    assert segs[-1].end_s == 9.0
    assert fixed_segments(0.0, 5.0) == []
    with pytest.raises(ParameterError):
        fixed_segments(10.0, 0.0)


def test_segment_validation() -> None:
    with pytest.raises(ParameterError, match="before its start"):
        Segment(2.0, 1.0)
    with pytest.raises(ParameterError, match="finite"):
        Segment(0.0, float("nan"))
    with pytest.raises(ValueError, match="min_segment_s"):
        SegmentsConfig(min_segment_s=20.0, max_segment_s=10.0)


@settings(max_examples=25, deadline=None)
@given(duration_s=st.floats(0.05, 30.0), sr=st.sampled_from([8000, 16000, 44100]),
       seed=st.integers(0, 2**16), kind=st.sampled_from(["noise", "tone", "bursts"]))
def test_random_signals_give_valid_segments(duration_s: float, sr: int, seed: int,
                                            kind: str) -> None:
    from features.audio.load import audio_from_signal

    rng = np.random.default_rng(seed)
    n = max(1, int(duration_s * sr))
    t = np.arange(n) / sr
    if kind == "noise":
        y = rng.standard_normal(n) * rng.uniform(0, 0.5)
    elif kind == "tone":
        y = 0.3 * np.sin(2 * np.pi * rng.uniform(80, 400) * t)
    else:
        y = rng.standard_normal(n) * (np.sin(2 * np.pi * 0.5 * t) > 0) * 0.3
    a = audio_from_signal(y, sr)
    segs = segment_audio(a.y, a.sr, vad=_VAD)
    _check_invariants(segs, a.duration_s)


_VAD = SileroVAD()
