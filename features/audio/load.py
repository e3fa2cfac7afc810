"""Load any common audio format into mono float32 at 16 kHz, with clear errors.

Decoding order: libsndfile (``soundfile``) for WAV, FLAC, OGG/Vorbis/Opus, AIFF and, with
libsndfile ≥ 1.1, MP3; then ``ffmpeg`` in a subprocess (only the ``file`` and ``pipe``
protocols, a hard timeout) for everything else (M4A/AAC, MP4, WebM, MP3 on older libsndfile).
The duration is probed *before* any sample is decoded, so a small file that claims hours is
refused without allocating hours of samples.

Channel policy: multi-channel audio is mixed down to mono by the mean of the channels, except
that channels which are entirely digital silence (a dead channel) are left out of the mean, so a
stereo file with one dead channel is not attenuated by 6 dB. Resampling uses soxr at "VHQ".

Memory: files are decoded, checked, mixed down and resampled in blocks of about 10 s
(:mod:`features.audio.blocks`), never whole, so loading costs the 16 kHz mono result plus a few
blocks whatever the file's duration, rate and channel count; in-memory signals are processed in
the same blocks, without a whole-signal float64 copy.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from features.audio.blocks import (
    FULL_SCALE,
    PipeReader,
    StreamResult,
    block_frames,
    check_sample_dtype,
    stream_mono,
)
from features.errors import (
    AudioError,
    AudioFileNotFoundError,
    AudioTooLongError,
    CorruptAudioError,
    DecodeTimeoutError,
    EmptyAudioFileError,
    InputFileError,
    InvalidSamplesError,
    NotAudioError,
    ParameterError,
    UnreadableAudioFileError,
    ZeroLengthAudioError,
)
from features.regular_file import open_regular

__all__ = [
    "Audio",
    "AudioSource",
    "TARGET_SR",
    "DEFAULT_MAX_DURATION_S",
    "load_audio",
    "load_channels",
    "audio_from_signal",
    "channel_axis",
    "MAX_SIGNAL_CHANNELS",
    "to_mono",
    "resample",
    "sniff_format",
    "probe_duration_s",
    "file_sha256",
    "open_audio_file",
    "STDIN_PATH",
    "STDIN_MAX_BYTES",
    "load_stdin",
]

#: every stream works on 16 kHz mono float32
TARGET_SR = 16_000
#: most channels an in-memory signal may have (see :func:`channel_axis`)
MAX_SIGNAL_CHANNELS = 32
#: default refusal limit for one file: 4 hours
DEFAULT_MAX_DURATION_S = 4 * 3600.0
#: default wall-clock limit for decoding one file with ffmpeg
DEFAULT_DECODE_TIMEOUT_S = 120.0
#: the path that means "read the audio from standard input"
STDIN_PATH = "-"
#: byte cap of audio read from standard input. A file is decoded block by block from disk and
#: limited by ``max_duration_s`` alone; stdin has to be spooled first, so it is also capped in
#: bytes (1 GiB: about 1.5 h of 48 kHz stereo 16-bit WAV, far longer when compressed)
STDIN_MAX_BYTES = 1 << 30

# Magic numbers of the containers we accept. Anything else is "not audio".
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"RIFF", "wav"),
    (0, b"RF64", "wav"),
    (0, b"fLaC", "flac"),
    (0, b"OggS", "ogg"),
    (0, b"FORM", "aiff"),
    (0, b"ID3", "mp3"),
    (4, b"ftyp", "mp4"),
    (0, b"\x1a\x45\xdf\xa3", "webm"),
    (0, b"caff", "caf"),
)
_HEAD_BYTES = 4096
_SOUNDFILE_FORMATS = {"wav", "flac", "ogg", "aiff", "caf"}


@dataclass(frozen=True)
class AudioSource:
    """Where an :class:`Audio` came from: the facts a result must carry about its input."""

    path: str
    sha256: str | None
    duration_s: float
    original_sr: int
    channels: int
    format: str
    decoder: str
    dead_channels: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "duration_s": self.duration_s,
            "original_sr": self.original_sr,
            "channels": self.channels,
            "format": self.format,
            "decoder": self.decoder,
            "dead_channels": list(self.dead_channels),
        }


@dataclass(frozen=True)
class Audio:
    """Mono float32 audio at :data:`TARGET_SR` plus its provenance.

    Attributes
    ----------
    y : np.ndarray, shape (n,), float32
        Samples in [-1, 1] (clipped input stays clipped; nothing is normalised).
    sr : int
        Sample rate in Hz; always 16000.
    source : AudioSource
        File facts (path, sha256, original rate and channels, decoder).
    """

    y: np.ndarray
    sr: int
    source: AudioSource
    warnings: tuple[str, ...] = field(default=())

    @property
    def duration_s(self) -> float:
        return len(self.y) / float(self.sr)

    @property
    def name(self) -> str:
        return self.source.path

    def crop(self, start_s: float, end_s: float) -> np.ndarray:
        """Samples of ``[start_s, end_s)``, clamped to the signal."""
        i0 = max(0, int(round(start_s * self.sr)))
        i1 = min(len(self.y), int(round(end_s * self.sr)))
        return self.y[i0:max(i0, i1)]


# --------------------------------------------------------------------------------------------
# pure signal helpers
# --------------------------------------------------------------------------------------------

def to_mono(y: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Mix ``(n, channels)`` down to ``(n,)`` by the mean of the live channels.

    Returns the mono signal and the indices of dead (all-zero) channels that were left out.
    """
    if y.ndim == 1:
        return y, ()
    if y.ndim != 2:
        raise ParameterError(f"audio must have shape (n,) or (n, channels); got {y.shape}")
    if y.shape[1] == 1:
        return y[:, 0], ()
    peak = np.max(np.abs(y), axis=0) if y.shape[0] else np.zeros(y.shape[1])
    dead = tuple(int(i) for i in np.flatnonzero(peak == 0))
    live = [i for i in range(y.shape[1]) if i not in dead]
    if not live:  # all silent: any channel will do
        return y[:, 0], ()
    return y[:, live].mean(axis=1, dtype=np.float64), dead if len(live) < y.shape[1] else ()


def resample(y: np.ndarray, orig_sr: int, target_sr: int = TARGET_SR) -> np.ndarray:
    """Resample with soxr (very high quality); a no-op when the rates agree."""
    if orig_sr <= 0:
        raise ParameterError(f"sample rate must be positive; got {orig_sr} Hz")
    if orig_sr == target_sr or len(y) == 0:
        return y.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(y.astype(np.float32, copy=False), orig_sr, target_sr, quality="VHQ")


def channel_axis(shape: tuple[int, ...], *, name: str = "<signal>") -> int:
    """The channel axis of a 2-D signal of ``shape``: the one axis of length at most
    :data:`MAX_SIGNAL_CHANNELS`.

    The rule: exactly one axis may be that short, and it holds the channels; the other holds
    the samples. ``(9, 32000)`` and ``(32000, 9)`` are both 9 channels of 32 000 samples.
    A shape with both axes that short (``(8, 8)``: which is time?) or neither (``(100,
    3000)``: 100 or 3000 channels?) is refused: pass ``(n, channels)`` explicitly shaped,
    or mix down first.

    Raises
    ------
    ParameterError
        The rule cannot decide (the message names the shape and the rule).
    """
    short = [i for i, n in enumerate(shape[:2]) if n <= MAX_SIGNAL_CHANNELS]
    if len(short) == 1:
        return short[0]
    why = ("both axes" if short else "neither axis") + f" {'are' if short else 'is'} at most " \
        f"{MAX_SIGNAL_CHANNELS} long"
    raise ParameterError(
        f"{name}: cannot tell the channel axis of an array of shape {tuple(shape)} ({why}); "
        f"the channel axis is the one axis of length ≤ {MAX_SIGNAL_CHANNELS} and the other "
        "holds the samples: give (n, channels) or (channels, n) with n > "
        f"{MAX_SIGNAL_CHANNELS}, or a 1-D mono array")


def audio_from_signal(
    y: np.ndarray,
    sr: int,
    *,
    name: str = "<signal>",
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    _decoder: str = "array",
    _format: str = "array",
    _sha256: str | None = None,
) -> Audio:
    """Validate an in-memory signal and bring it to mono float32 16 kHz.

    Parameters
    ----------
    y : np.ndarray, shape (n,), (n, channels) or (channels, n)
        Samples; int16/int32/uint8 are scaled to [-1, 1], floats are taken as they are. The
        channel axis of a 2-D array is the one axis of length ≤ :data:`MAX_SIGNAL_CHANNELS`
        (32); shapes where that does not single out one axis are refused
        (:func:`channel_axis`).
    sr : int
        Sample rate of ``y`` in Hz, > 0.
    name : str
        Name used in error messages and in the result's source.
    max_duration_s : float
        Longer signals raise :class:`AudioTooLongError`.

    Raises
    ------
    ZeroLengthAudioError
        ``y`` holds no samples.
    InvalidSamplesError
        ``y`` contains NaN or infinite values.
    ParameterError
        ``sr`` is not a positive integer, or ``y`` is not 1-D or 2-D, or its channel axis
        cannot be told (:func:`channel_axis`).

    Notes
    -----
    ``y`` is read in blocks of about 10 s (scaled to float64, checked, mixed, resampled): a long
    signal is never copied whole, whatever its dtype.

    Examples
    --------
    >>> import numpy as np
    >>> a = audio_from_signal(np.zeros((8000, 2), dtype=np.int16), 8000)
    >>> a.sr, a.y.shape
    (16000, (16000,))
    """
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"{name}: sample rate must be a positive integer; got {sr!r}")
    arr = np.asarray(y)
    if arr.ndim not in (1, 2):
        raise ParameterError(f"{name}: audio must have shape (n,), (n, channels) or "
                             f"(channels, n); got {arr.shape}")
    if arr.size == 0:
        raise ZeroLengthAudioError(name, "the audio holds no samples (zero length)")
    if arr.ndim == 2 and channel_axis(arr.shape, name=name) == 0:
        arr = arr.T  # (channels, n) as librosa gives it → (n, channels)
    n_channels = 1 if arr.ndim == 1 else int(arr.shape[1])
    duration_s = arr.shape[0] / float(sr)
    if duration_s > max_duration_s:
        raise AudioTooLongError(
            name, f"duration {duration_s:.1f} s exceeds the limit of {max_duration_s:.0f} s "
            "(set audio.max_duration_s to raise it)")
    check_sample_dtype(arr.dtype)
    frames = arr if arr.ndim == 2 else arr[:, None]
    result = stream_mono(partial(_array_blocks, frames, block_frames(int(sr), n_channels)),
                         sr=int(sr), channels=n_channels, expected_frames=frames.shape[0],
                         target_sr=TARGET_SR)
    return _to_audio(result, name=name, sr=int(sr), channels=n_channels,
                     max_duration_s=max_duration_s, decoder=_decoder, fmt=_format,
                     sha256=_sha256)


def _array_blocks(frames: np.ndarray, step: int) -> Iterator[np.ndarray]:
    """Views of ``step`` rows of a ``(n, channels)`` array."""
    for i in range(0, frames.shape[0], step):
        yield frames[i:i + step]


def _to_audio(result: StreamResult, *, name: str, sr: int, channels: int,
              max_duration_s: float, decoder: str, fmt: str, sha256: str | None,
              extra_warnings: list[str] | None = None) -> Audio:
    """The checks on a whole decode (length, finiteness) and the warnings, then the Audio."""
    duration_s = result.frames / float(sr)
    if duration_s > max_duration_s:
        raise AudioTooLongError(
            name, f"duration {duration_s:.1f} s exceeds the limit of {max_duration_s:.0f} s "
            "(set audio.max_duration_s to raise it)")
    if result.n_bad:
        raise InvalidSamplesError(
            name, f"{result.n_bad} samples are NaN or infinite; audio must be finite")
    warnings: list[str] = list(extra_warnings or ())
    if result.dead:
        warnings.append(
            f"channels {list(result.dead)} are silent and were left out of the mix-down")
    if result.peak >= FULL_SCALE:
        clipped = result.clipped_fraction
        if clipped > 0.001:
            warnings.append(f"{clipped:.1%} of samples are at full scale (clipped input)")
    source = AudioSource(
        path=str(name), sha256=sha256, duration_s=duration_s, original_sr=int(sr),
        channels=channels, format=fmt, decoder=decoder, dead_channels=result.dead)
    return Audio(y=result.y, sr=TARGET_SR, source=source, warnings=tuple(warnings))


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------

def sniff_format(path: str | os.PathLike[str], head: bytes | None = None) -> str | None:
    """Container format from the file's first bytes, or ``None`` if it is not audio we accept.

    Text playlists (HLS ``#EXTM3U``, ffmpeg ``ffconcat``) and anything else without a known
    magic number return ``None``: content decides, never the file name.
    """
    if head is None:
        with open_audio_file(path) as fh:  # regular files only: a FIFO would block
            head = fh.read(_HEAD_BYTES)
    for offset, magic, fmt in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            if fmt == "wav" and head[8:12] not in (b"WAVE",):
                return None
            return fmt
    # ADTS AAC: 12-bit sync, layer 00, valid sampling-frequency index
    if len(head) >= 7 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0 \
            and ((head[2] >> 2) & 0x0F) < 13:
        return "aac"
    # MPEG audio without ID3 tag: a valid frame header followed by a second one
    if _mpeg_frame_length(head, 0):
        n = _mpeg_frame_length(head, 0)
        if len(head) < n + 4 or _mpeg_frame_length(head, n):
            return "mp3"
    return None


_MPEG1_L3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_L3_KBPS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)


def _mpeg_frame_length(buf: bytes | mmap.mmap, i: int) -> int:
    """Length in bytes of the MPEG layer III frame whose header starts at ``buf[i]``; 0 if none."""
    if len(buf) < i + 4 or buf[i] != 0xFF or (buf[i + 1] & 0xE0) != 0xE0:
        return 0
    version = (buf[i + 1] >> 3) & 0x03  # 3 = MPEG1, 2 = MPEG2, 0 = MPEG2.5, 1 reserved
    layer = (buf[i + 1] >> 1) & 0x03  # 1 = layer III
    bitrate_idx = buf[i + 2] >> 4
    sr_idx = (buf[i + 2] >> 2) & 0x03
    padding = (buf[i + 2] >> 1) & 0x01
    if version == 1 or layer != 1 or bitrate_idx in (0, 15) or sr_idx == 3:
        return 0
    base_sr = (44100, 48000, 32000)[sr_idx]
    sr = base_sr if version == 3 else base_sr // (2 if version == 2 else 4)
    kbps = (_MPEG1_L3_KBPS if version == 3 else _MPEG2_L3_KBPS)[bitrate_idx]
    coef = 144 if version == 3 else 72
    return coef * kbps * 1000 // sr + padding


def _mpeg_samples_per_frame(buf: bytes | mmap.mmap, i: int) -> tuple[int, int]:
    """(samples per frame, sample rate) of the layer III frame header at ``buf[i]``."""
    version = (buf[i + 1] >> 3) & 0x03
    base_sr = (44100, 48000, 32000)[(buf[i + 2] >> 2) & 0x03]
    if version == 3:
        return 1152, base_sr
    return 576, base_sr // (2 if version == 2 else 4)


def _frame_pair(buf: bytes | mmap.mmap, i: int, size: int) -> bool:
    """A frame header at ``i`` followed by another one (or by the end of the file)."""
    n = _mpeg_frame_length(buf, i)
    return bool(n) and (i + n + 4 > size or bool(_mpeg_frame_length(buf, i + n)))


def mp3_frame_count(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(samples, sample rate) that the MPEG audio frames of an MP3 file hold, counted from the
    frame headers (no decoding), or ``None`` if no frame is found.

    The count is the packets' content, whatever a Xing/Info header or a length estimate says:
    libsndfile and ffprobe estimate the length of a VBR file without a Xing header from its
    first frames' bitrate, and libsndfile stops decoding at that estimate. A Xing/Info frame
    (which decodes to nothing) is not counted; encoder delay and padding (< 2 frames) are.
    """
    with open_audio_file(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 4:
            return None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            i = 0
            if buf[:3] == b"ID3" and size >= 10:  # ID3v2 tag: syncsafe size, optional footer
                tag = (buf[6] << 21) | (buf[7] << 14) | (buf[8] << 7) | buf[9]
                i = 10 + tag + (10 if buf[5] & 0x10 else 0)
            samples = frames = 0
            sr = 0
            while i + 4 <= size:
                n = _mpeg_frame_length(buf, i)
                if n <= 0:
                    if buf[i:i + 3] == b"TAG" or buf[i:i + 8] in (b"APETAGEX", b"LYRICSBE"):
                        break
                    nxt = buf.find(b"\xff", i + 1)  # resynchronise on the next frame pair
                    while nxt != -1 and not _frame_pair(buf, nxt, size):
                        nxt = buf.find(b"\xff", nxt + 1)
                    if nxt == -1:
                        break
                    i = nxt
                    continue
                spf, fsr = _mpeg_samples_per_frame(buf, i)
                if frames == 0:
                    sr = fsr
                    side = (32 if spf == 1152 else 17)  # side info after the 4-byte header
                    if buf[i + 4 + side:i + 8 + side] in (b"Xing", b"Info"):
                        i += n  # the Xing/Info frame holds no audio
                        frames = 1
                        continue
                frames += 1
                samples += spf
                i += n
    return (samples, sr) if samples else None


def open_audio_file(path: str | os.PathLike[str], name: str | None = None) -> BinaryIO:
    """Open an audio input for reading: regular files only (never a FIFO, device, socket or
    directory, also behind a symlink), checked on the open descriptor.

    Raises
    ------
    AudioFileNotFoundError, NotAudioError, UnreadableAudioFileError
    """
    name = str(path) if name is None else name
    try:
        return open_regular(path, what="audio")
    except InputFileError as exc:
        if exc.kind == "not_found":
            raise AudioFileNotFoundError(name, "file not found") from None
        if exc.kind == "not_regular":
            raise NotAudioError(name, exc.problem + " (to read audio from standard input give "
                                "`-` as the path)") from None
        raise UnreadableAudioFileError(name, exc.problem) from None


def _sha256_of(fh: BinaryIO, name: str) -> str:
    h = hashlib.sha256()
    fh.seek(0)
    try:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    except OSError as exc:
        raise UnreadableAudioFileError(name, f"cannot read the file ({exc.strerror})") from None
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a regular file's bytes, read in 1 MiB blocks.

    Raises
    ------
    AudioFileNotFoundError, NotAudioError, UnreadableAudioFileError
        Missing, not a regular file (a FIFO would block for ever), or unreadable.
    """
    with open_audio_file(path) as fh:
        return _sha256_of(fh, str(path))


def _ffmpeg_binary(name: str) -> str | None:
    return shutil.which(name)


def probe_duration_s(path: str | os.PathLike[str], *, timeout_s: float = 20.0) -> float:
    """Duration in seconds from the container header, without decoding samples.

    Raises
    ------
    CorruptAudioError
        The header cannot be read.
    """
    p = Path(path)
    fmt = sniff_format(p)
    if fmt == "mp3":  # the frames' own count: a VBR file's header length is an estimate
        counted = mp3_frame_count(p)
        if counted is not None:
            return counted[0] / float(counted[1])
    if fmt in _SOUNDFILE_FORMATS:
        info = _soundfile_info(p)
        if info is not None:
            return info[0] / float(info[1])
    return _ffprobe(p, timeout_s=timeout_s)[0]


def _soundfile_info(path: Path) -> tuple[int, int, int] | None:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError):
        return None
    return int(info.frames), int(info.samplerate), int(info.channels)


def _tool_message(stderr: bytes, path: Path) -> str:
    """Last line of a tool's stderr, without the file's full path (never leak server paths)."""
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    if not lines:
        return ""
    return " (" + lines[-1].replace(str(path), path.name)[:200] + ")"


def _ffprobe(path: Path, *, timeout_s: float) -> tuple[float, int, int]:
    exe = _ffmpeg_binary("ffprobe")
    if exe is None:
        raise CorruptAudioError(
            str(path), "libsndfile cannot read this format and ffprobe/ffmpeg is not installed "
            "(install ffmpeg to read MP3/M4A/AAC)")
    cmd = [exe, "-v", "error", "-protocol_whitelist", "file,pipe", "-show_entries",
           "stream=sample_rate,channels,codec_type:format=duration", "-of", "json", "--",
           str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DecodeTimeoutError(str(path), f"probing the file took longer than {timeout_s:.0f} s"
                                 ) from exc
    if proc.returncode != 0:
        raise CorruptAudioError(str(path), "cannot read the file header"
                                + _tool_message(proc.stderr, path))
    try:
        data = json.loads(proc.stdout or b"{}")
        audio_streams = [s for s in data.get("streams", []) if s.get("codec_type") == "audio"]
        if not audio_streams:
            raise NotAudioError(str(path), "the file holds no audio stream")
        sr = int(audio_streams[0]["sample_rate"])
        ch = int(audio_streams[0].get("channels", 1))
        duration = float(data.get("format", {}).get("duration", "nan"))
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptAudioError(str(path), "the file header gives no duration or sample rate"
                                ) from exc
    if not np.isfinite(duration):
        raise CorruptAudioError(str(path), "the file header gives no duration")
    return duration, sr, ch


def _declared_frames(path: Path, fmt: str, head: bytes) -> int | None:
    """Frame count the container header promises (WAV data chunk, FLAC STREAMINFO), if any.

    ``None`` when the header does not say (streaming placeholders 0 / 0xFFFFFFFF, RF64, or a
    layout we do not parse): truncation is then not detectable from the header.
    """
    import struct

    if fmt == "flac" and len(head) >= 42 and head[4] & 0x7F == 0:  # STREAMINFO block first
        info = head[8:42]
        total = ((info[13] & 0x0F) << 32) | struct.unpack(">I", info[14:18])[0]
        return total or None
    if fmt != "wav" or head[:4] != b"RIFF":
        return None
    with open(path, "rb") as fh:
        fh.seek(12)
        block_align = 0
        while True:
            hdr = fh.read(8)
            if len(hdr) < 8:
                return None
            cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == b"fmt ":
                fmt_chunk = fh.read(min(size, 16))
                if len(fmt_chunk) < 16:
                    return None
                block_align = struct.unpack("<H", fmt_chunk[12:14])[0]
                fh.seek(size - 16 + (size & 1), os.SEEK_CUR)
            elif cid == b"data":
                if size in (0, 0xFFFFFFFF) or block_align <= 0:
                    return None
                return size // block_align
            else:
                fh.seek(size + (size & 1), os.SEEK_CUR)


def _soundfile_blocks(path: Path) -> Iterator[np.ndarray]:
    """Decode with libsndfile into float32 ``(frames, channels)`` blocks of about 10 s.

    Reads stop at the header's frame count (as a whole-file read does) or at the end of data.
    """
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as fh:
            step = block_frames(int(fh.samplerate), int(fh.channels))
            while True:
                block = fh.read(step, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield block
    except (RuntimeError, sf.LibsndfileError) as exc:
        detail = str(exc).replace(str(path), path.name)[:200]
        raise CorruptAudioError(str(path), f"cannot decode the audio ({detail})") from exc


def _ffmpeg_blocks(path: Path, sr: int, channels: int, max_samples: int,
                   timeout_s: float) -> Iterator[np.ndarray]:
    """Decode with ffmpeg into float32 ``(frames, channels)`` blocks, read from its stdout as
    they come (only the ``file`` and ``pipe`` protocols).

    ``timeout_s`` bounds the time spent waiting on ffmpeg (not the caller's work on the blocks);
    more than ``max_samples`` + 1 s of output kills it.

    Raises
    ------
    AudioTooLongError, DecodeTimeoutError, CorruptAudioError
    """
    exe = _ffmpeg_binary("ffmpeg")
    if exe is None:
        raise CorruptAudioError(str(path), "this format needs ffmpeg, which is not installed")
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-protocol_whitelist",
           "file,pipe", "-i", str(path), "-map", "0:a:0", "-vn", "-f", "f32le",
           "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(sr), "pipe:1"]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise CorruptAudioError(str(path), f"cannot start ffmpeg ({exc})") from exc
    reader = PipeReader(proc, limit_bytes=(max_samples + sr) * channels * 4,
                        timeout_s=timeout_s)
    frame_bytes = 4 * channels
    step = block_frames(sr, channels)
    try:
        while True:
            block = np.empty((step, channels), dtype="<f4")
            got = reader.readinto(block.data.cast("B"))
            if reader.exceeded:
                raise AudioTooLongError(str(path), "the decoded audio is longer than its "
                                        "header claims and exceeds the duration limit")
            if got >= frame_bytes:
                yield block[: got // frame_bytes]
            if got < block.nbytes:
                break
        try:
            rc, err = reader.finish()
        except subprocess.TimeoutExpired as exc:
            raise DecodeTimeoutError(str(path), f"decoding took longer than {timeout_s:.0f} s"
                                     ) from exc
        if rc != 0 and reader.total == 0:
            raise CorruptAudioError(str(path), "cannot decode the audio"
                                    + _tool_message(err, path))
    finally:
        reader.close()


def _decode_ffmpeg(path: Path, sr: int, channels: int, max_samples: int,
                   timeout_s: float) -> np.ndarray:
    """The whole ffmpeg decode as one float32 ``(frames, channels)`` array (small files)."""
    blocks = list(_ffmpeg_blocks(path, sr, channels, max_samples, timeout_s))
    if not blocks:
        return np.zeros((0, channels), dtype=np.float32)
    return np.concatenate(blocks)


def load_audio(
    path: str | os.PathLike[str],
    *,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    timeout_s: float = DEFAULT_DECODE_TIMEOUT_S,
    hash_file: bool = True,
    isolate: bool = False,
) -> Audio:
    """Read an audio file into mono float32 at 16 kHz.

    Parameters
    ----------
    path : str or PathLike
        WAV, FLAC, OGG, AIFF, MP3, M4A/AAC, WebM or anything else ffmpeg decodes, recognised by
        content (magic bytes), never by extension.
    max_duration_s : float
        Files whose header claims more are refused before decoding.
    timeout_s : float
        Limit for the ffmpeg decoder: the time spent waiting on it (the time spent resampling
        what it has decoded does not count); with ``isolate``, the wall-clock limit of the
        whole decode.
    hash_file : bool
        Compute the file's sha256 for the result's provenance.
    isolate : bool
        Decode in a child process with a hard wall-clock limit of ``timeout_s``: a decoder that
        hangs or crashes on a crafted file (a C library can be killed by one) costs that file
        only. The server and the batch runner use this for untrusted input.

    Returns
    -------
    Audio

    Raises
    ------
    AudioFileNotFoundError, EmptyAudioFileError, NotAudioError, CorruptAudioError,
    ZeroLengthAudioError, InvalidSamplesError, AudioTooLongError, DecodeTimeoutError
        Each message names the file and the problem.

    Examples
    --------
    >>> a = load_audio("examples/jfk.flac")  # doctest: +SKIP
    >>> a.sr, round(a.duration_s, 1)  # doctest: +SKIP
    (16000, 11.0)
    """
    name = str(path)
    if name == STDIN_PATH:
        return load_stdin(max_duration_s=max_duration_s, timeout_s=timeout_s,
                          hash_file=hash_file, isolate=isolate)
    p = Path(path)
    with open_audio_file(p, name) as fh:  # regular files only; checked on the open descriptor
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise EmptyAudioFileError(name, "the file is empty (0 bytes)")
        head = fh.read(_HEAD_BYTES)
        fmt = sniff_format(p, head)
        if fmt is None:
            raise NotAudioError(
                name, "not a recognised audio file (content is not WAV, FLAC, OGG, AIFF, MP3, "
                "MP4/M4A, AAC or WebM)")
        digest = _sha256_of(fh, name) if hash_file else None
    if isolate:
        return _load_isolated(p, name, fmt, digest, max_duration_s, timeout_s)

    result: StreamResult | None = None
    decoder = ""
    # MP3: the frames' own count (libsndfile and ffprobe only estimate a VBR file's length
    # without a Xing header, and libsndfile stops decoding at its estimate)
    counted = mp3_frame_count(p) if fmt == "mp3" else None
    counted_s = counted[0] / counted[1] if counted is not None else None
    if counted_s is not None and counted_s > max_duration_s:
        raise AudioTooLongError(
            name, f"the file's MPEG frames hold {counted_s:.1f} s, over the limit of "
            f"{max_duration_s:.0f} s (set audio.max_duration_s to raise it)")
    stated_s: float | None = None  # the length the container (or its decoder) states
    if fmt in _SOUNDFILE_FORMATS or fmt == "mp3":
        info = _soundfile_info(p)
        if (info is not None and counted_s is not None and info[1] > 0
                and info[0] / info[1] < counted_s - _length_tolerance_s(counted_s)
                and _ffmpeg_binary("ffmpeg") is not None):
            stated_s = info[0] / info[1]
            info = None  # libsndfile would stop at its short estimate: decode with ffmpeg
        if info is not None:
            frames, sr, channels = info
            if sr <= 0:
                raise CorruptAudioError(name, f"header gives an invalid sample rate ({sr} Hz)")
            duration = frames / float(sr)
            if duration > max_duration_s:
                raise AudioTooLongError(
                    name, f"header says {duration:.1f} s, over the limit of "
                    f"{max_duration_s:.0f} s (set audio.max_duration_s to raise it)")
            # blocks of ~10 s: the header's frame count only sizes the (lazily committed) output
            result = stream_mono(partial(_soundfile_blocks, p), sr=sr, channels=channels,
                                 expected_frames=frames, target_sr=TARGET_SR)
            decoder = "soundfile"
            stated_s = duration
            declared = _declared_frames(p, fmt, head)
            if declared is not None and result.frames < declared:
                raise CorruptAudioError(
                    name, f"truncated: the header says {declared / sr:.2f} s but only "
                    f"{result.frames / sr:.2f} s are present (repair it, e.g. "
                    "`ffmpeg -i in.wav out.wav`, to analyse what is there)")
        elif fmt in _SOUNDFILE_FORMATS and fmt != "ogg" and _ffmpeg_binary("ffmpeg") is None:
            raise CorruptAudioError(name, f"the {fmt.upper()} file is truncated or corrupt")
    if result is None:
        duration, sr, channels = _ffprobe(p, timeout_s=min(timeout_s, 30.0))
        stated_s = duration if stated_s is None else stated_s
        if counted_s is not None:
            duration = counted_s
        if duration > max_duration_s:
            raise AudioTooLongError(
                name, f"header says {duration:.1f} s, over the limit of {max_duration_s:.0f} s "
                "(set audio.max_duration_s to raise it)")
        channels = max(1, min(int(channels), 8))
        max_samples = int(max_duration_s * sr)
        # the probed duration can be an estimate (VBR MP3): size the output with a margin
        # (pages never written cost nothing) so that it need not grow, which would copy it
        expected = min(max_samples + sr, int(duration * sr * 1.1) + 10 * sr)
        result = stream_mono(partial(_ffmpeg_blocks, p, sr, channels, max_samples, timeout_s),
                             sr=sr, channels=channels, expected_frames=expected,
                             target_sr=TARGET_SR)
        decoder = "ffmpeg"
    if result.frames == 0:
        raise ZeroLengthAudioError(name, "the file decodes to zero samples")
    return _to_audio(result, name=name, sr=sr, channels=channels, max_duration_s=max_duration_s,
                     decoder=decoder, fmt=fmt, sha256=digest,
                     extra_warnings=_length_warnings(result.frames / float(sr), stated_s,
                                                     counted_s))


def _length_tolerance_s(length_s: float) -> float:
    """How far a stated length may be from the decoded one without a warning: 0.25 s or 1 %
    (encoder delay, padding and priming samples are well below that)."""
    return max(0.25, 0.01 * length_s)


def _length_warnings(decoded_s: float, stated_s: float | None,
                     counted_s: float | None) -> list[str]:
    """Warnings when the decoded length disagrees with the stated or the counted one."""
    out = []
    if stated_s is not None and abs(stated_s - decoded_s) > _length_tolerance_s(
            max(stated_s, decoded_s)):
        out.append(f"the file states a length of {stated_s:.2f} s but {decoded_s:.2f} s were "
                   "decoded (a VBR MP3 without a Xing header, or a wrong header); the decoded "
                   "length is used")
    if counted_s is not None and decoded_s < counted_s - _length_tolerance_s(counted_s):
        out.append(f"only {decoded_s:.2f} s of the {counted_s:.2f} s that the file's MPEG "
                   "frames hold were decoded (install ffmpeg to decode the whole file)")
    return out


def load_stdin(
    stream: Any = None,
    *,
    max_bytes: int = STDIN_MAX_BYTES,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    timeout_s: float = DEFAULT_DECODE_TIMEOUT_S,
    hash_file: bool = True,
    isolate: bool = False,
) -> Audio:
    """Read audio from standard input (the path ``-``) like :func:`load_audio` reads a file.

    The bytes are copied, up to ``max_bytes``, into a private temporary file (mode 0600,
    removed afterwards); the format is then recognised by content and decoded by the same
    code, with the same limits, as a file. The result's ``source.path`` and every error
    message name the input ``-``.

    Parameters
    ----------
    stream : binary file object, optional
        What to read; default ``sys.stdin.buffer``.
    max_bytes : int
        Larger input is refused (:class:`AudioTooLongError`) without reading it all.
    max_duration_s, timeout_s, hash_file, isolate
        As in :func:`load_audio`.

    Returns
    -------
    Audio

    Raises
    ------
    EmptyAudioFileError, AudioTooLongError, NotAudioError, CorruptAudioError, ...
        As :func:`load_audio`, each naming ``-``.
    """
    if max_bytes < 1:
        raise ParameterError(f"max_bytes must be at least 1; got {max_bytes}")
    src = stream if stream is not None else sys.stdin.buffer
    with tempfile.TemporaryDirectory(prefix="vocalfusion-stdin-") as tmp:
        spool = Path(tmp) / "stdin"
        total = 0
        with open(spool, "wb") as out:
            while chunk := src.read(1 << 20):
                total += len(chunk)
                if total > max_bytes:
                    raise AudioTooLongError(
                        STDIN_PATH, f"standard input is over the limit of {max_bytes} bytes "
                        "for stdin; write it to a file and analyse the file")
                out.write(chunk)
        if total == 0:
            raise EmptyAudioFileError(STDIN_PATH, "standard input is empty (0 bytes)")
        try:
            audio = load_audio(spool, max_duration_s=max_duration_s, timeout_s=timeout_s,
                               hash_file=hash_file, isolate=isolate)
        except AudioError as exc:
            problem = exc.problem.replace(str(spool), STDIN_PATH)
            raise type(exc)(STDIN_PATH, problem) from None
    return replace(audio, source=replace(audio.source, path=STDIN_PATH))


def load_channels(
    path: str | os.PathLike[str],
    *,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    timeout_s: float = DEFAULT_DECODE_TIMEOUT_S,
) -> np.ndarray:
    """Every channel of a file, un-mixed, at 16 kHz: float32 ``(n, channels)``.

    For analyses that need the channels apart (one speaker per channel). The file is first
    checked and decoded by :func:`load_audio` (same errors, same limits), then decoded again
    whole, so this costs ``channels`` times the mono result: use it only when the channels
    are needed.

    Raises
    ------
    AudioError
        As :func:`load_audio`.
    """
    mono = load_audio(path, max_duration_s=max_duration_s, timeout_s=timeout_s, hash_file=False)
    p, name = Path(path), str(path)
    sr, channels = mono.source.original_sr, mono.source.channels
    if mono.source.decoder == "soundfile":
        import soundfile as sf

        frames, _sr = sf.read(str(p), dtype="float32", always_2d=True)
    else:
        frames = _decode_ffmpeg(p, sr, channels, int(max_duration_s * sr), timeout_s)
    if not np.all(np.isfinite(frames)):
        raise InvalidSamplesError(name, "the audio contains NaN or infinite samples")
    cols = [resample(np.ascontiguousarray(frames[:, c]), sr) for c in range(frames.shape[1])]
    n = min(len(c) for c in cols)
    return np.stack([c[:n] for c in cols], axis=1).astype(np.float32, copy=False)


_ERRORS_BY_CODE: dict[str, type[AudioError]] = {
    cls.code: cls for cls in (
        AudioFileNotFoundError, EmptyAudioFileError, NotAudioError, CorruptAudioError,
        UnreadableAudioFileError,
        ZeroLengthAudioError, InvalidSamplesError, AudioTooLongError, DecodeTimeoutError)
}


def _load_isolated(p: Path, name: str, fmt: str, digest: str | None, max_duration_s: float,
                   timeout_s: float) -> Audio:
    """Decode ``p`` in a child process (see :mod:`features.audio._decode_worker`).

    The child's samples are read straight into the result array (no intermediate bytes).
    """
    from features.supervisor import Child, describe_exit

    limit = int(max_duration_s * TARGET_SR + TARGET_SR) * 4 + (1 << 20)
    try:
        child = Child("features.audio._decode_worker",
                      [str(p), repr(max_duration_s), repr(timeout_s)], stderr=subprocess.PIPE)
    except OSError as exc:
        raise CorruptAudioError(name, f"cannot start the decoder process ({exc})") from exc
    reader = PipeReader(child.proc, limit_bytes=limit, timeout_s=timeout_s + 5.0,
                        kill=child.kill)
    header: dict[str, Any] | None = None
    y: np.ndarray | None = None
    got = rc = 0
    try:
        header = _worker_header(reader.readline(1 << 20))
        n = int(header["n"]) if header is not None and header.get("ok") else None
        too_long = reader.exceeded or (n is not None and reader.total + 4 * n > limit)
        if n is not None and not too_long:
            y = np.empty(n, dtype="<f4")  # the child's bytes land here directly
            got = reader.readinto(y.data.cast("B"))
            reader.drain()
            too_long = reader.exceeded
        if not too_long:
            rc, _err = reader.finish()
    except subprocess.TimeoutExpired as exc:
        raise DecodeTimeoutError(name, f"decoding took longer than {timeout_s:.0f} s") from exc
    finally:
        reader.close()
        child.close()
    if too_long:
        raise AudioTooLongError(name, "the decoded audio exceeds the duration limit")
    if rc < 0:
        sig = describe_exit(rc).removeprefix("killed by signal ")
        raise CorruptAudioError(name, f"the decoder crashed on this file ({sig})")
    if header is None:
        raise CorruptAudioError(name, f"the decoder failed on this file (exit status {rc})")
    if not header.get("ok"):
        cls = _ERRORS_BY_CODE.get(str(header.get("code")), CorruptAudioError)
        raise cls(name, str(header.get("problem", "cannot decode the audio")))
    if y is None or got < 4 * len(y):
        raise CorruptAudioError(name, "the decoder process returned fewer samples than promised")
    src = header["source"]
    source = AudioSource(path=name, sha256=digest, duration_s=float(src["duration_s"]),
                         original_sr=int(src["original_sr"]), channels=int(src["channels"]),
                         format=fmt, decoder=f"{src['decoder']} (isolated)",
                         dead_channels=tuple(src["dead_channels"]))
    return Audio(y=y.astype(np.float32, copy=False), sr=TARGET_SR, source=source,
                 warnings=tuple(header.get("warnings", ())))


def _worker_header(line: bytes) -> dict[str, Any] | None:
    """The decoder process's JSON header line; ``None`` if it is not a well-formed one."""
    try:
        header = json.loads(line)
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    if header.get("ok"):
        n = header.get("n")
        if not isinstance(n, int) or n < 0 or not isinstance(header.get("source"), dict):
            return None
    return header
