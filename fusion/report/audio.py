"""Audio to embed in a report: 16 kHz mono, compressed with Opus when ffmpeg can, else WAV.

Sizes for one minute of speech: Ogg/Opus at 24 kbit/s ≈ 0.18 MB (≈ 0.24 MB as base64);
16-bit PCM WAV ≈ 1.9 MB (≈ 2.6 MB as base64).
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import wave

import numpy as np

from features.audio.load import Audio
from features.errors import ParameterError
from fusion.report.render import EmbeddedAudio

__all__ = ["encode_audio", "OPUS_BITRATE_KBPS"]

log = logging.getLogger("vocalfusion.report")

OPUS_BITRATE_KBPS = 24


def encode_audio(audio: Audio, *, codec: str = "auto", timeout_s: float = 120.0) -> EmbeddedAudio:
    """Encode the analysed (16 kHz mono) signal for embedding in the page.

    Parameters
    ----------
    audio : Audio
        The audio the analysis ran on (``features.audio.load.load_audio``).
    codec : {"auto", "opus", "wav"}
        ``"auto"``: Ogg/Opus at 24 kbit/s when ffmpeg with libopus is installed, else 16-bit
        PCM WAV. ``"opus"`` fails when ffmpeg cannot encode Opus.
    timeout_s : float
        Hard limit for the ffmpeg encoder, in seconds.

    Returns
    -------
    EmbeddedAudio
    """
    if codec not in ("auto", "opus", "wav"):
        raise ParameterError(f"audio codec {codec!r} is not one of 'auto', 'opus', 'wav'")
    if codec in ("auto", "opus"):
        data = _opus(audio, timeout_s=timeout_s)
        if data is not None:
            return EmbeddedAudio(mime="audio/ogg", data=data,
                                 note=f"Ogg/Opus {OPUS_BITRATE_KBPS} kbit/s, "
                                      f"{audio.sr // 1000} kHz mono")
        if codec == "opus":
            raise ParameterError("cannot encode Opus: ffmpeg with libopus is not available "
                                 "(use --audio-codec wav)")
    return EmbeddedAudio(mime="audio/wav", data=_wav(audio),
                         note=f"16-bit PCM WAV, {audio.sr // 1000} kHz mono")


def _wav(audio: Audio) -> bytes:
    y = np.clip(np.nan_to_num(audio.y, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
    pcm = (y * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(audio.sr)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _opus(audio: Audio, *, timeout_s: float) -> bytes | None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None
    y = np.nan_to_num(audio.y.astype("<f4"), nan=0.0, posinf=0.0, neginf=0.0)
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "pipe",
           "-f", "f32le", "-ar", str(audio.sr), "-ac", "1", "-i", "pipe:0",
           "-c:a", "libopus", "-b:a", f"{OPUS_BITRATE_KBPS}k", "-application", "voip",
           "-map_metadata", "-1", "-f", "ogg", "pipe:1"]
    try:
        proc = subprocess.run(cmd, input=y.tobytes(), capture_output=True, timeout=timeout_s,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("Opus encoding failed (%s); embedding WAV instead", exc)
        return None
    if proc.returncode != 0 or not proc.stdout.startswith(b"OggS"):
        log.warning("Opus encoding failed (%s); embedding WAV instead",
                    proc.stderr.decode("utf-8", "replace").strip()[:200])
        return None
    return proc.stdout
