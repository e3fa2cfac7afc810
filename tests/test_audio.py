"""features.audio.load: every format in, mono float32 16 kHz out; every bad input a clear error."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from features import errors
from features.audio.load import (
    TARGET_SR,
    audio_from_signal,
    load_audio,
    probe_duration_s,
    sniff_format,
)

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def _sine(sr: int, seconds: float = 1.0, f: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    y = 0.5 * np.sin(2 * np.pi * f * t)
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def _ffmpeg_encode(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *args,
                    str(dst)], check=True, timeout=60)
    return dst


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000, 96000])
def test_any_rate_becomes_16k_mono_float32(tmp_path: Path, sr: int) -> None:
    p = tmp_path / f"tone_{sr}.wav"
    sf.write(p, _sine(sr, 1.0), sr, subtype="PCM_16")
    a = load_audio(p)
    assert a.sr == TARGET_SR and a.y.dtype == np.float32 and a.y.ndim == 1
    assert abs(a.duration_s - 1.0) < 1e-3
    assert a.source.original_sr == sr and a.source.decoder == "soundfile"
    # the 440 Hz tone survives resampling: spectral peak at 440 Hz, amplitude kept
    spec = np.abs(np.fft.rfft(a.y))
    assert abs(np.argmax(spec) * TARGET_SR / len(a.y) - 440) < 2
    assert 0.45 < np.max(np.abs(a.y[1000:-1000])) < 0.55


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"])
def test_sample_formats(tmp_path: Path, subtype: str) -> None:
    p = tmp_path / f"x_{subtype}.wav"
    sf.write(p, _sine(16000, 0.5), 16000, subtype=subtype)
    a = load_audio(p)
    assert np.all(np.isfinite(a.y)) and 0.45 < np.max(np.abs(a.y)) < 0.55


def test_real_example_flac_24bit_stereo(jfk_path: Path) -> None:
    a = load_audio(jfk_path)
    assert a.source.format == "flac" and a.source.channels == 2
    assert a.source.original_sr == 44100
    assert abs(a.duration_s - 11.0) < 0.01
    assert len(a.source.sha256 or "") == 64


def test_stereo_mixdown_is_mean_and_dead_channel_is_left_out(tmp_path: Path) -> None:
    y = _sine(16000, 1.0, channels=2)
    y[:, 1] *= 0.5
    p = tmp_path / "st.wav"
    sf.write(p, y, 16000, subtype="FLOAT")
    a = load_audio(p)
    np.testing.assert_allclose(a.y, y.mean(axis=1), atol=1e-6)
    y[:, 1] = 0.0  # dead channel
    sf.write(p, y, 16000, subtype="FLOAT")
    b = load_audio(p)
    np.testing.assert_allclose(b.y, y[:, 0], atol=1e-6)
    assert b.source.dead_channels == (1,)
    assert any("silent" in w for w in b.warnings)


@needs_ffmpeg
@pytest.mark.parametrize("suffix,args", [
    (".mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
    (".m4a", ["-c:a", "aac", "-b:a", "64k"]),
    (".ogg", ["-c:a", "libvorbis"]),
    (".opus", ["-c:a", "libopus"]),
    (".flac", ["-c:a", "flac"]),
])
def test_compressed_formats(tmp_path: Path, suffix: str, args: list[str]) -> None:
    src = tmp_path / "src.wav"
    sf.write(src, _sine(44100, 2.0, channels=2), 44100)
    enc = _ffmpeg_encode(src, tmp_path / f"enc{suffix}", *args)
    a = load_audio(enc)
    assert a.sr == TARGET_SR
    assert abs(a.duration_s - 2.0) < 0.1
    assert np.all(np.isfinite(a.y)) and np.max(np.abs(a.y)) > 0.3


def test_process_file_equals_process_signal(tmp_path: Path) -> None:
    y = _sine(22050, 1.0, channels=2).astype(np.float32)
    p = tmp_path / "eq.wav"
    sf.write(p, y, 22050, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(p).y, audio_from_signal(y, 22050).y)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float64, np.float32])
def test_signal_dtypes(dtype: type) -> None:
    y = _sine(16000, 0.2)
    if np.issubdtype(dtype, np.integer):
        y = (y * np.iinfo(dtype).max).astype(dtype)
    a = audio_from_signal(y.astype(dtype), 16000)
    assert a.y.dtype == np.float32 and 0.45 < np.max(np.abs(a.y)) < 0.55


def test_channels_first_array_is_accepted() -> None:
    y = _sine(16000, 0.5, channels=2).T  # (2, n) as librosa returns
    assert audio_from_signal(y, 16000).y.shape == (8000,)


def test_clipped_and_dc_input_stay_finite() -> None:
    y = np.clip(3 * _sine(16000, 1.0), -1, 1) + 0.0
    a = audio_from_signal(y, 48000)
    assert np.all(np.isfinite(a.y)) and np.max(np.abs(a.y)) <= 1.0
    assert any("full scale" in w for w in a.warnings)
    b = audio_from_signal(_sine(16000, 1.0) * 0.1 + 0.5, 16000)
    assert np.all(np.isfinite(b.y))


# ------------------------------------------------------------------------------ errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(errors.AudioFileNotFoundError, match="nope.wav: file not found"):
        load_audio(tmp_path / "nope.wav")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(errors.EmptyAudioFileError, match=r"empty\.wav: the file is empty"):
        load_audio(p)


def test_random_bytes_named_wav(tmp_path: Path) -> None:
    p = tmp_path / "random.wav"
    p.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(errors.NotAudioError, match="random.wav: not a recognised audio file"):
        load_audio(p)


def test_text_named_mp3_and_hls_playlist_rejected_by_content(tmp_path: Path) -> None:
    p = tmp_path / "list.mp3"
    p.write_text("#EXTM3U\n#EXT-X-VERSION:3\nfile:///etc/passwd\n")
    with pytest.raises(errors.NotAudioError):
        load_audio(p)
    q = tmp_path / "concat.mp3"
    q.write_text("ffconcat version 1.0\nfile /etc/passwd\n")
    with pytest.raises(errors.NotAudioError):
        load_audio(q)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(errors.NotAudioError, match="directory"):
        load_audio(tmp_path)


def test_truncated_wav(tmp_path: Path) -> None:
    p = tmp_path / "trunc.wav"
    sf.write(p, _sine(16000, 2.0), 16000, subtype="PCM_16")
    data = p.read_bytes()
    p.write_bytes(data[:30])  # header cut inside the fmt chunk
    with pytest.raises(errors.AudioError) as info:
        load_audio(p)
    assert "trunc.wav" in str(info.value)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_truncated_body_is_a_clear_error(tmp_path: Path, fmt: str) -> None:
    p = tmp_path / f"half.{fmt.lower()}"
    rng = np.random.default_rng(0)
    sf.write(p, 0.1 * rng.standard_normal(16000 * 2), 16000, format=fmt, subtype="PCM_16")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(errors.CorruptAudioError, match=rf"half\.{fmt.lower()}: (truncated|cannot)"):
        load_audio(p)


def test_streaming_wav_placeholder_size_is_not_truncation(tmp_path: Path) -> None:
    p = tmp_path / "stream.wav"
    sf.write(p, _sine(16000, 1.0), 16000, subtype="PCM_16")
    data = bytearray(p.read_bytes())
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)  # data size unknown, as streaming writers do
    p.write_bytes(bytes(data))
    assert abs(load_audio(p).duration_s - 1.0) < 0.01


def _wav_header(n_data_bytes: int, sr: int = 16000) -> bytes:
    return (b"RIFF" + struct.pack("<I", 36 + n_data_bytes) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16)
            + b"data" + struct.pack("<I", n_data_bytes))


def test_44_byte_wav_claiming_hours_is_refused_without_allocation(tmp_path: Path) -> None:
    p = tmp_path / "liar.wav"
    p.write_bytes(_wav_header(0xFFFFFF00))  # header says ~37 hours of 16 kHz audio
    with pytest.raises((errors.ZeroLengthAudioError, errors.AudioTooLongError,
                        errors.CorruptAudioError)) as info:
        load_audio(p, max_duration_s=3600)
    assert "liar.wav" in str(info.value)


def test_too_long(tmp_path: Path) -> None:
    p = tmp_path / "long.wav"
    sf.write(p, np.zeros(16000 * 5, dtype=np.float32), 16000)
    with pytest.raises(errors.AudioTooLongError, match=r"long\.wav: header says 5\.0 s"):
        load_audio(p, max_duration_s=2.0)
    assert probe_duration_s(p) == pytest.approx(5.0)


def test_nan_and_inf_samples(tmp_path: Path) -> None:
    y = _sine(16000, 0.5).astype(np.float32)
    y[100] = np.nan
    y[200] = np.inf
    p = tmp_path / "nan.wav"
    sf.write(p, y, 16000, subtype="FLOAT")
    with pytest.raises(errors.InvalidSamplesError, match=r"nan\.wav: 2 samples are NaN"):
        load_audio(p)


def test_zero_length(tmp_path: Path) -> None:
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(errors.ZeroLengthAudioError, match="zero.wav"):
        load_audio(p)
    with pytest.raises(errors.ZeroLengthAudioError):
        audio_from_signal(np.zeros(0), 16000)


def test_bad_sample_rate() -> None:
    with pytest.raises(errors.ParameterError, match="sample rate"):
        audio_from_signal(np.zeros(10), 0)


def test_one_sample_signal_is_accepted() -> None:
    a = audio_from_signal(np.array([0.1]), 16000)
    assert a.y.shape[0] >= 1 and np.all(np.isfinite(a.y))


@needs_ffmpeg
def test_corrupt_mp3_body(tmp_path: Path) -> None:
    p = tmp_path / "bad.mp3"
    p.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 100)
    with pytest.raises(errors.AudioError) as info:
        load_audio(p)
    assert "bad.mp3" in str(info.value)


def test_sniff_format() -> None:
    assert sniff_format("x", b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"
    assert sniff_format("x", b"RIFF\x00\x00\x00\x00AVI LIST") is None
    assert sniff_format("x", b"fLaC\x00") == "flac"
    assert sniff_format("x", b"#EXTM3U\n") is None
    assert sniff_format("x", b"\xff\xfb\x90\x00") == "mp3"
    assert sniff_format("x", b"\x00\x00\x00\x20ftypM4A ") == "mp4"
