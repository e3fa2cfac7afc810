"""features.audio.blocks: block-by-block loading gives what whole-array loading gave.

The reference below is the whole-array code ``load_audio`` had before it streamed: decode the
whole file, scale to float64, find dead channels from per-channel peaks, take the float64 mean
of the live channels, cast to float32, one-shot ``soxr.resample(..., quality="VHQ")``, clip.
Every case is also run with tiny blocks, so that block boundaries, the dead-channel hold and the
second decode are all exercised on short files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from _procs import FAKE_M4A, fake_ffmpeg

from features import errors
from features.audio import blocks as audio_stream
from features.audio import load as audio_mod
from features.audio.load import TARGET_SR, audio_from_signal, load_audio, resample, to_mono

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


@pytest.fixture(params=["default_blocks", "tiny_blocks"])
def blocks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Default block sizes, or 0.1-s blocks and a 0.3-s hold (many blocks, second decodes)."""
    if request.param == "tiny_blocks":
        monkeypatch.setattr(audio_stream, "BLOCK_S", 0.1)
        monkeypatch.setattr(audio_stream, "HOLD_S", 0.3)
    return str(request.param)


def _as_float(y: np.ndarray) -> np.ndarray:
    """The whole-array scaling load_audio used before streaming."""
    if np.issubdtype(y.dtype, np.integer):
        info = np.iinfo(y.dtype)
        scale = float(max(abs(info.min), info.max))
        if info.min == 0:
            return (y.astype(np.float64) - (info.max + 1) / 2) / ((info.max + 1) / 2)
        return y.astype(np.float64) / scale
    return y.astype(np.float64, copy=False)


def _reference(y: np.ndarray, sr: int) -> tuple[np.ndarray, tuple[int, ...], list[str]]:
    """Whole-array reference: mono float32 16 kHz, dead channels, warnings."""
    arr = _as_float(y)
    mono, dead = to_mono(arr)
    out = resample(np.asarray(mono, dtype=np.float32), sr)
    out = np.clip(out.astype(np.float32, copy=False), -1.0, 1.0)
    warnings = []
    if dead:
        warnings.append(f"channels {list(dead)} are silent and were left out of the mix-down")
    if float(np.max(np.abs(arr))) >= 0.999:
        clipped = float(np.mean(np.abs(arr) >= 0.999))
        if clipped > 0.001:
            warnings.append(f"{clipped:.1%} of samples are at full scale (clipped input)")
    return out, dead, warnings


def _content(sr: int, seconds: float, channels: int, *, dead: int | None = None,
             clip: bool = False, late: int | None = None, seed: int = 0) -> np.ndarray:
    """Tones plus noise, a different mix per channel; optionally a dead channel, a channel
    silent for the first 2 s (``late``), or 4× gain clipped to full scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    cols = []
    for c in range(channels):
        y = 0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.05 * rng.standard_normal(len(t))
        cols.append(y)
    y = np.stack(cols, axis=1)
    if clip:
        y = np.clip(4 * y, -1.0, 1.0)
    if dead is not None:
        y[:, dead] = 0.0
    if late is not None:
        y[: int(2 * sr), late] = 0.0
    return y


CASES = {
    # name: (sr, channels, subtype, options)
    "mono_16k_int16": (16000, 1, "PCM_16", {}),
    "mono_44k1_float": (44100, 1, "FLOAT", {}),
    "stereo_48k_int16": (48000, 2, "PCM_16", {}),
    "stereo_44k1_float": (44100, 2, "FLOAT", {}),
    "stereo_44k1_dead_channel": (44100, 2, "PCM_16", {"dead": 1}),
    "three_ch_48k_dead_channel": (48000, 3, "FLOAT", {"dead": 0}),
    "stereo_16k_late_channel": (16000, 2, "PCM_16", {"late": 0}),
    "stereo_48k_clipped": (48000, 2, "PCM_24", {"clip": True}),
    "mono_16k_clipped": (16000, 1, "FLOAT", {"clip": True}),
    "stereo_22k_all_silent": (22050, 2, "PCM_16", {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_file_matches_whole_array_reference(tmp_path: Path, blocks: str, case: str) -> None:
    sr, channels, subtype, opts = CASES[case]
    y = _content(sr, 3.0, channels, **opts)
    if case.endswith("all_silent"):
        y[:] = 0.0
    fmt = "FLAC" if subtype == "PCM_16" and channels == 2 else "WAV"
    p = tmp_path / f"{case}.{fmt.lower()}"
    sf.write(p, y, sr, format=fmt, subtype=subtype)
    decoded, _ = sf.read(p, dtype="float32", always_2d=True)
    ref, dead, warnings = _reference(decoded, sr)
    a = load_audio(p)
    diff = float(np.max(np.abs(a.y - ref))) if len(ref) else 0.0
    print(f"{case} [{blocks}]: max |streamed - reference| = {diff:.3g}")
    assert a.y.dtype == np.float32 and a.y.shape == ref.shape
    assert diff <= 1e-6
    assert a.source.dead_channels == dead
    assert list(a.warnings) == warnings
    assert a.source.channels == channels and a.source.original_sr == sr
    if "dead" in opts:
        assert any("silent" in w for w in a.warnings)
    if opts.get("clip"):
        assert any("full scale" in w for w in a.warnings)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["mono", "stereo", "channels_first", "dead_channel"])
def test_signal_matches_whole_array_reference(blocks: str, dtype: type, layout: str) -> None:
    sr = 44100
    y = _content(sr, 1.5, 1 if layout == "mono" else 2, dead=1 if layout == "dead_channel"
                 else None)
    if np.issubdtype(dtype, np.unsignedinteger):
        y = np.round(y * 127 + 128).astype(dtype)
    elif np.issubdtype(dtype, np.integer):
        y = np.round(y * np.iinfo(dtype).max * 0.9).astype(dtype)
    else:
        y = y.astype(dtype)
    y = y[:, 0] if layout == "mono" else y
    given = y.T if layout == "channels_first" else y
    ref, dead, warnings = _reference(y, sr)
    a = audio_from_signal(given, sr)
    assert a.y.shape == ref.shape
    assert float(np.max(np.abs(a.y - ref))) <= 1e-6
    assert a.source.dead_channels == dead and list(a.warnings) == warnings


def test_signal_is_not_copied_whole_to_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    """No float64 array the size of the input is ever made (blocks only)."""
    y = (0.1 * np.random.default_rng(0).standard_normal((16000 * 30, 2))).astype(np.float32)
    largest = 0
    real = audio_stream.as_float64

    def spy(block: np.ndarray) -> np.ndarray:
        nonlocal largest
        out = real(block)
        largest = max(largest, out.size)
        return out

    monkeypatch.setattr(audio_stream, "as_float64", spy)
    audio_from_signal(y, 16000)
    assert 0 < largest <= y.size // 2


def test_streamed_resampling_equals_one_shot() -> None:
    """soxr.ResampleStream in blocks of any size gives one-shot soxr.resample's samples."""
    rng = np.random.default_rng(7)
    for sr in (8000, 22050, 44100, 48000, 96000):
        x = (0.3 * rng.standard_normal(sr * 7 + 321)).astype(np.float32)
        one_shot = soxr.resample(x, sr, TARGET_SR, quality="VHQ")
        for step in (1000, 4096, sr, sr * 10):
            rs = soxr.ResampleStream(sr, TARGET_SR, 1, dtype="float32", quality="VHQ")
            parts = [rs.resample_chunk(x[i:i + step]) for i in range(0, len(x), step)]
            parts.append(rs.resample_chunk(np.empty(0, dtype=np.float32), last=True))
            streamed = np.concatenate(parts)
            assert streamed.shape == one_shot.shape
            assert float(np.max(np.abs(streamed - one_shot))) == 0.0


# ------------------------------------------------------------------ decodes and re-decodes


def _counting(source: audio_stream.BlockSource) -> tuple[audio_stream.BlockSource, list[int]]:
    calls: list[int] = []

    def opener():  # type: ignore[no-untyped-def]
        calls.append(1)
        return source()

    return opener, calls


@pytest.mark.parametrize("case,decodes", [("live", 1), ("dead_short", 1), ("dead_long", 2),
                                          ("late_long", 2)])
def test_second_decode_only_when_a_channel_stays_silent_past_the_hold(
        monkeypatch: pytest.MonkeyPatch, case: str, decodes: int) -> None:
    monkeypatch.setattr(audio_stream, "BLOCK_S", 0.1)
    monkeypatch.setattr(audio_stream, "HOLD_S", 0.3)
    sr = 16000
    seconds = 0.25 if case == "dead_short" else 3.0
    y = _content(sr, seconds, 2, dead=1 if case.startswith("dead") else None,
                 late=1 if case.startswith("late") else None).astype(np.float32)
    step = audio_stream.block_frames(sr, 2)
    opener, calls = _counting(lambda: (y[i:i + step] for i in range(0, len(y), step)))
    r = audio_stream.stream_mono(opener, sr=sr, channels=2, expected_frames=len(y),
                                 target_sr=TARGET_SR)
    assert len(calls) == decodes
    assert r.dead == ((1,) if case.startswith("dead") else ())
    ref, _, _ = _reference(y, sr)
    np.testing.assert_array_equal(r.y, ref)


# ------------------------------------------------------------------------------- errors


def test_nan_in_a_later_block_is_counted_exactly(tmp_path: Path, blocks: str) -> None:
    y = _content(16000, 2.0, 2).astype(np.float32)
    y[17_000, 0] = np.nan  # a later block with tiny blocks
    y[30_000, 1] = np.inf
    y[31_999, 0] = -np.inf  # the last block
    p = tmp_path / "mid_nan.wav"
    sf.write(p, y, 16000, subtype="FLOAT")
    with pytest.raises(errors.InvalidSamplesError,
                       match=r"mid_nan\.wav: 3 samples are NaN or infinite; audio must be finite"):
        load_audio(p)
    with pytest.raises(errors.InvalidSamplesError, match=r"<signal>: 3 samples are NaN"):
        audio_from_signal(y, 16000)
    with pytest.raises(errors.InvalidSamplesError, match=r"mid_nan\.wav: 3 samples are NaN"):
        load_audio(p, isolate=True)


def test_zero_length_and_too_long_errors_unchanged(tmp_path: Path, blocks: str) -> None:
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros((0, 2), dtype=np.float32), 44100)
    with pytest.raises(errors.ZeroLengthAudioError, match=r"zero\.wav: the file decodes to zero"):
        load_audio(p)
    with pytest.raises(errors.ZeroLengthAudioError, match="holds no samples"):
        audio_from_signal(np.zeros((0, 2), dtype=np.int16), 44100)
    q = tmp_path / "long.flac"
    sf.write(q, _content(44100, 3.0, 2), 44100, format="FLAC")
    with pytest.raises(errors.AudioTooLongError, match=r"long\.flac: header says 3\.0 s, over "
                       r"the limit of 2 s"):
        load_audio(q, max_duration_s=2.0)
    with pytest.raises(errors.AudioTooLongError, match=r"<signal>: duration 3\.0 s exceeds"):
        audio_from_signal(_content(44100, 3.0, 2), 44100, max_duration_s=2.0)


# ------------------------------------------------------------------- ffmpeg and isolation


@needs_ffmpeg
@pytest.mark.parametrize("dead", [None, 1])
def test_ffmpeg_path_matches_whole_array_reference(tmp_path: Path, blocks: str,
                                                   dead: int | None) -> None:
    """ALAC in M4A (lossless, so a dead channel stays exactly zero), decoded by ffmpeg."""
    src = tmp_path / "src.wav"
    sf.write(src, _content(44100, 3.0, 2, dead=dead), 44100, subtype="PCM_16")
    m4a = tmp_path / "alac.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src),
                    "-c:a", "alac", str(m4a)], check=True, timeout=60)
    whole = audio_mod._decode_ffmpeg(m4a, sr=44100, channels=2, max_samples=44100 * 60,
                                     timeout_s=60)
    ref, ref_dead, warnings = _reference(whole, 44100)
    a = load_audio(m4a)
    assert a.source.decoder == "ffmpeg"
    assert a.y.shape == ref.shape and float(np.max(np.abs(a.y - ref))) <= 1e-6
    assert a.source.dead_channels == ref_dead == ((1,) if dead else ())
    assert list(a.warnings) == warnings


@pytest.mark.parametrize("case", ["stereo_44k1_dead_channel", "stereo_48k_clipped"])
def test_isolated_equals_in_process(tmp_path: Path, case: str) -> None:
    sr, channels, subtype, opts = CASES[case]
    p = tmp_path / f"{case}.wav"
    sf.write(p, _content(sr, 3.0, channels, **opts), sr, subtype=subtype)
    a, b = load_audio(p), load_audio(p, isolate=True)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.warnings == b.warnings and a.source.dead_channels == b.source.dead_channels
    assert b.source.decoder == "soundfile (isolated)"


def test_ffmpeg_that_hangs_mid_stream_is_killed_at_the_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ffmpeg that sends some samples and then stops answering: DecodeTimeoutError."""
    import time

    probe = ('{"streams": [{"codec_type": "audio", "sample_rate": "16000", "channels": 1}], '
             '"format": {"duration": "60.0"}}')
    fake_ffmpeg(tmp_path, monkeypatch, ffprobe=f"echo '{probe}'",
                ffmpeg="head -c 64000 /dev/zero\nexec sleep 600")
    p = tmp_path / "hang.m4a"
    p.write_bytes(FAKE_M4A)
    t0 = time.perf_counter()
    with pytest.raises(errors.DecodeTimeoutError, match=r"hang\.m4a: decoding took longer"):
        load_audio(p, timeout_s=1.0)
    assert time.perf_counter() - t0 < 10


def _child(tmp_path: Path, code: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "child.py"
    script.write_text(code)
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_pipe_reader_budget_counts_waiting_not_the_callers_work(tmp_path: Path) -> None:
    import time

    proc = _child(tmp_path, "import sys, time\n"
                  "for _ in range(3):\n"
                  "    sys.stdout.buffer.write(b'x' * 1000); sys.stdout.flush()\n")
    reader = audio_stream.PipeReader(proc, limit_bytes=10_000, timeout_s=0.5)
    buf = memoryview(bytearray(1000))
    try:
        for _ in range(3):
            assert reader.readinto(buf) == 1000
            time.sleep(0.4)  # the caller's work: 1.2 s in all, past the 0.5 s budget
        assert reader.readinto(buf) == 0
        assert reader.finish()[0] == 0 and not reader.expired
    finally:
        reader.close()


def test_pipe_reader_kills_a_silent_child_and_one_that_says_too_much(tmp_path: Path) -> None:
    import time

    proc = _child(tmp_path, "import time\ntime.sleep(600)\n")
    reader = audio_stream.PipeReader(proc, limit_bytes=10, timeout_s=0.5)
    t0 = time.perf_counter()
    try:
        assert reader.readinto(memoryview(bytearray(10))) == 0
        with pytest.raises(subprocess.TimeoutExpired):
            reader.finish()
        assert reader.expired and time.perf_counter() - t0 < 5
    finally:
        reader.close()
    proc = _child(tmp_path, "import sys\nsys.stdout.buffer.write(b'y' * 100000)\n")
    reader = audio_stream.PipeReader(proc, limit_bytes=1000, timeout_s=30)
    try:
        reader.drain()
        assert reader.exceeded
    finally:
        reader.close()
    assert proc.poll() is not None
