"""Shared fixtures: real audio made here (numpy tones, espeak-ng speech) and the bundled example.

Everything synthetic is labelled so: espeak-ng voices are synthetic speech, not human speech.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SR = 16_000


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synth_speech(path: Path, text: str, *, rate_wpm: int = 160, pitch: int = 50,
                 voice: str = "en-us", amplitude: int = 100) -> Path:
    """Speak ``text`` with espeak-ng into a WAV file (synthetic speech)."""
    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-p", str(pitch),
                    "-a", str(amplitude), "-w", str(path), text], check=True,
                   capture_output=True, timeout=60)
    return path


def tone(freq_hz: float, duration_s: float, sr: int = SR, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(duration_s * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


@pytest.fixture(scope="session")
def jfk_path() -> Path:
    """Real speech: JFK inaugural address excerpt (public domain), 11 s, 44.1 kHz stereo FLAC."""
    return EXAMPLES / "jfk.flac"


@pytest.fixture(scope="session")
def speech_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Make synthetic espeak-ng speech files; cached per (text, options)."""
    base = tmp_path_factory.mktemp("speech")
    cache: dict[tuple, Path] = {}

    def make(text: str, **kw: int | str) -> Path:
        key = (text, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = synth_speech(base / f"speech_{len(cache)}.wav", text, **kw)  # type: ignore[arg-type]
        return cache[key]

    return make


@pytest.fixture(scope="session")
def speech_wav(speech_factory: Callable[..., Path]) -> Path:
    """About 6 s of synthetic speech (espeak-ng, en-us) with a pause in the middle."""
    return speech_factory(
        "The weather was calm this morning, so we walked to the market. "
        "Later we talked about the garden and the long summer ahead.")


@pytest.fixture()
def silence_wav(tmp_path: Path) -> Path:
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(SR * 5, dtype=np.float32), SR)
    return p


@pytest.fixture()
def noise_wav(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path / "noise.wav"
    sf.write(p, (0.1 * rng.standard_normal(SR * 5)).astype(np.float32), SR)
    return p
