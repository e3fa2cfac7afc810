"""Fuzzing the decoder boundary with hypothesis byte strings (bounded time in CI).

Every input — random bytes or a mutated real file — must give an ``Audio`` or an
``AudioError`` naming the file, never another exception, a hang or a crash. Decoding runs
isolated (a child process per input, hard timeout), exactly as the server decodes uploads.
Any input that breaks this is written to ``tests/fuzz_corpus/`` and stays there as a
regression fixture (``test_regression_corpus`` replays every file in that folder).

Run longer by hand:  VOCALFUSION_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_decoder.py
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.audio.load import Audio, load_audio
from features.errors import AudioError

CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
N_EXAMPLES = int(os.environ.get("VOCALFUSION_FUZZ_EXAMPLES", "30"))


def _seed(fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    y = 0.3 * np.sin(np.arange(4000) * 0.07)
    sf.write(buf, y, 8000, format=fmt, subtype=subtype)
    return buf.getvalue()


SEEDS = [_seed("WAV", "PCM_16"), _seed("WAV", "FLOAT"), _seed("FLAC", "PCM_16"),
         _seed("OGG", "VORBIS"), _seed("AIFF", "PCM_16")]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite_int"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=64))
        elif op == "overwrite_int" and len(data) >= i + 4:
            data[i:i + 4] = draw(st.sampled_from(
                [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\x7f",
                 b"\x01\x00\x00\x00"]))
    return bytes(data)


def _check(data: bytes, tmp: Path) -> None:
    path = tmp / "fuzz.wav"
    path.write_bytes(data)
    try:
        result = load_audio(path, isolate=True, timeout_s=10.0, max_duration_s=600.0)
    except AudioError as exc:
        assert "fuzz.wav" in str(exc)
        return
    except BaseException:
        CORPUS.mkdir(exist_ok=True)
        (CORPUS / f"crash-{hashlib.sha256(data).hexdigest()[:16]}.bin").write_bytes(data)
        raise
    assert isinstance(result, Audio)
    assert result.y.dtype == np.float32 and np.all(np.isfinite(result.y))


@settings(max_examples=N_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.one_of(mutated(), st.binary(min_size=0, max_size=2048)))
def test_decoder_boundary_never_breaks(tmp_path: Path, data: bytes) -> None:
    _check(data, tmp_path)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.bin")) or [None],
                         ids=lambda p: p.name if p else "empty")
def test_regression_corpus(tmp_path: Path, path: Path | None) -> None:
    if path is None:
        pytest.skip("no saved crashers yet (the corpus folder is empty)")
    _check(path.read_bytes(), tmp_path)
