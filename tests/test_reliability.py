"""shared/RELIABILITY.md, the rows not proven elsewhere, plus decoder hangs and crashes.

docs/reliability.md maps every row of the table to the test that proves it.
"""

from __future__ import annotations

import io
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _procs import FAKE_M4A, fake_ffmpeg, sigkill_when, write_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import errors
from features.audio import load as audio_mod
from features.audio.load import load_audio
from fusion.config import load_config
from fusion.engine.analyzer import Analyzer, analyze
from fusion.schema import SessionResult, SessionStatus

SR = 16_000
# prosody + fusion: the streams every input reaches; transcript added where words matter
LIGHT = ["emotion.enabled=false", "transcript.enabled=false", "sentiment.enabled=false"]


@pytest.fixture(scope="module")
def light() -> Analyzer:
    return Analyzer(load_config(overrides=LIGHT)).load()


@pytest.fixture(scope="module")
def with_words() -> Analyzer:
    return Analyzer(load_config(overrides=["emotion.enabled=false"])).load()


def _assert_finite_or_none(result: SessionResult) -> None:
    """No Inf or NaN anywhere in the JSON (missing values are None); scores in [0, 1]."""
    def walk(node: object) -> None:
        if isinstance(node, float):
            assert np.isfinite(node), node
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(result.to_dict())
    for seg in result.segments:
        if seg.scores is not None:
            for detail in (seg.scores.stress, seg.scores.depression):
                assert detail.value is None or 0.0 <= detail.value <= 1.0
                assert 0.0 <= detail.confidence <= 1.0
        if seg.emotion is not None and seg.emotion.probabilities:
            assert abs(sum(seg.emotion.probabilities.values()) - 1) < 1e-4
        if seg.sentiment is not None:
            total = seg.sentiment.negative + seg.sentiment.neutral + seg.sentiment.positive
            assert abs(total - 1) < 1e-4


# --------------------------------------------------------------------------- row 4: too long

def test_row4_header_claiming_hours_refused_before_decoding(tmp_path: Path) -> None:
    p = tmp_path / "liar.wav"
    p.write_bytes(b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVEfmt "
                  + struct.pack("<IHHIIHH", 16, 1, 1, SR, SR * 2, 2, 16)
                  + b"data" + struct.pack("<I", 0xFFFFFFCC))
    t0 = time.perf_counter()
    with pytest.raises(errors.AudioError, match="liar.wav"):
        load_audio(p, max_duration_s=60)
    assert time.perf_counter() - t0 < 5


def test_row4_compressed_file_decoding_past_the_limit_is_cut_off(tmp_path: Path) -> None:
    """The ffmpeg reader counts decoded bytes: past the limit it kills the decoder."""
    src = tmp_path / "ten.wav"
    sf.write(src, 0.1 * np.sin(np.arange(SR * 10) * 0.05), SR)
    import subprocess

    ogg = tmp_path / "ten.ogg"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(src), "-c:a",
                    "libvorbis", str(ogg)], check=True, timeout=60)
    with pytest.raises(errors.AudioTooLongError):
        load_audio(ogg, max_duration_s=5)  # refused from the header
    # and when a header under-states the length, the decode itself stops at the limit
    with pytest.raises(errors.AudioTooLongError, match="longer than its header claims"):
        audio_mod._decode_ffmpeg(ogg, sr=SR, channels=1, max_samples=SR * 3, timeout_s=30)


# --------------------------------------------------------------------------- row 5: corrupt

def _giant_info_chunk_wav(path: Path) -> Path:
    body = 0.1 * np.sin(np.arange(SR) * 0.05)
    pcm = (body * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, SR, SR * 2, 2, 16)
    info = b"LIST" + struct.pack("<I", 0x7FFFFFF0) + b"INFO" + b"INAM" + b"\x00" * 64
    data = b"data" + struct.pack("<I", len(pcm)) + pcm
    riff = b"WAVE" + b"fmt " + fmt + info + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
    return path


@pytest.mark.parametrize("make", ["truncated", "giant_info", "random", "zero"])
def test_row5_corrupt_files_clear_error_quickly(tmp_path: Path, make: str) -> None:
    p = tmp_path / f"{make}.wav"
    if make == "truncated":
        sf.write(p, 0.1 * np.ones(SR * 2), SR, subtype="PCM_16")
        p.write_bytes(p.read_bytes()[:2000])
    elif make == "giant_info":
        _giant_info_chunk_wav(p)
    elif make == "random":
        p.write_bytes(np.random.default_rng(3).bytes(10_000))
    else:
        p.write_bytes(b"")
    for isolate in (False, True):
        t0 = time.perf_counter()
        with pytest.raises(errors.AudioError) as info:
            load_audio(p, isolate=isolate, timeout_s=10)
        assert f"{make}.wav" in str(info.value)
        assert time.perf_counter() - t0 < 10


# ------------------------------------------------------- beyond the table: hang and crash

@pytest.mark.parametrize("behaviour,expected,needle", [
    ("exec sleep 600", errors.DecodeTimeoutError, "longer than"),
    ("kill -SEGV $$", errors.CorruptAudioError, "decoder crashed on this file (SIGSEGV)"),
    ("kill -ABRT $$", errors.CorruptAudioError, "decoder crashed on this file (SIGABRT)"),
    ("echo garbage; exit 3", errors.CorruptAudioError, "decoder failed"),
])
def test_decoder_that_hangs_or_crashes_costs_that_file_only(
        tmp_path: Path, jfk_path: Path, monkeypatch: pytest.MonkeyPatch, behaviour: str,
        expected: type, needle: str) -> None:
    """The isolated decoder process is replaced by one that hangs / is killed by a signal /
    prints garbage (what a crafted file does to a C decoder); the caller gets a clear error
    within the time limit, and the next file decodes normally in the same process."""
    real = os.sys.executable
    fake = write_script(tmp_path / "fake_decoder.sh", behaviour)
    monkeypatch.setattr(os.sys, "executable", str(fake))
    t0 = time.perf_counter()
    with pytest.raises(expected, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_audio(jfk_path, isolate=True, timeout_s=1.0)
    assert time.perf_counter() - t0 < 15
    monkeypatch.setattr(os.sys, "executable", real)
    assert load_audio(jfk_path, isolate=True).duration_s == pytest.approx(11.0)


def test_hanging_ffmpeg_is_killed_at_the_timeout(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder (ffmpeg/ffprobe) that never answers: DecodeTimeoutError, no hang."""
    fake_ffmpeg(tmp_path, monkeypatch, ffmpeg="exec sleep 600", ffprobe="exec sleep 600")
    p = tmp_path / "x.m4a"
    p.write_bytes(FAKE_M4A)
    t0 = time.perf_counter()
    with pytest.raises(errors.DecodeTimeoutError, match=r"x\.m4a"):
        load_audio(p, timeout_s=1.0)
    assert time.perf_counter() - t0 < 10


# ------------------------------------------------ row 10: silence, noise, music → no words

def _music(seconds: float, seed: int = 0) -> np.ndarray:
    """Synthetic music: a chord sequence of harmonic tones with a percussive pulse."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    roots = [220.0, 261.6, 196.0, 246.9]
    for k, f0 in enumerate(roots * int(seconds // 8 + 1)):
        start, end = k * 2.0, (k + 1) * 2.0
        mask = (t >= start) & (t < end)
        for ratio in (1.0, 1.26, 1.5):
            for h in range(1, 5):
                y[mask] += np.sin(2 * np.pi * f0 * ratio * h * t[mask]) / (h * 3)
    beat = (np.mod(t, 0.5) < 0.03) * rng.standard_normal(len(t)) * 0.5
    y = y + beat
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.mark.parametrize("kind", ["silence", "white_noise", "music"])
def test_row10_no_invented_words_no_confident_score(with_words: Analyzer, kind: str) -> None:
    n = SR * 30
    if kind == "silence":
        y = np.zeros(n, dtype=np.float32)
    elif kind == "white_noise":
        y = (0.1 * np.random.default_rng(1).standard_normal(n)).astype(np.float32)
    else:
        y = _music(30.0)
    r = with_words.process_signal(y, SR, name=kind)
    words = [w.text for s in r.segments if s.transcript for w in s.transcript.words]
    assert words == [], words
    if kind != "music":
        assert r.status == SessionStatus.INSUFFICIENT_SPEECH
    # whatever the VAD thought of the music: no score without words and with low confidence
    scored = [s.scores for s in r.segments if s.scores and s.scores.stress.value is not None]
    assert r.status == SessionStatus.INSUFFICIENT_SPEECH or all(
        sc.depression.confidence < 0.8 for sc in scored)
    _assert_finite_or_none(r)


# -------------------------------------------------- row 11: very short segments keep rows

def test_row11_short_segments_nan_with_reason_rows_present(light: Analyzer,
                                                           jfk_path: Path) -> None:
    from features.segments.vad import SegmentsConfig

    a = load_audio(jfk_path)
    for window in (0.02, 0.05, 0.099):
        r = light.process_audio(a, segments=SegmentsConfig(policy="fixed", window_s=window,
                                                           min_segment_s=0.0))
        assert len(r.segments) == int(np.ceil(11.0 / window - 1e-9))
        seg = r.segments[len(r.segments) // 2]
        assert seg.prosody is not None and seg.prosody.f0_mean_hz is None
        assert seg.prosody.missing.get("f0_mean_hz")
        _assert_finite_or_none(r)


# ------------------------------------------------ row 12: degenerate signals, any dtype/rate

@pytest.mark.parametrize("case", ["empty", "one_sample", "nan", "inf", "clipped", "dc",
                                  "dead_channel", "8k", "96k", "int16", "int32", "float64"])
def test_row12_degenerate_signals(light: Analyzer, jfk_path: Path, case: str) -> None:
    y, sr = sf.read(jfk_path, dtype="float64")
    mono = y.mean(axis=1)
    if case == "empty":
        with pytest.raises(errors.ZeroLengthAudioError):
            light.process_signal(np.zeros(0), SR)
        return
    if case in ("nan", "inf"):
        bad = mono.copy()
        bad[1000] = np.nan if case == "nan" else np.inf
        with pytest.raises(errors.InvalidSamplesError, match="NaN or infinite"):
            light.process_signal(bad, sr)
        return
    signal, rate = {
        "one_sample": (np.array([0.2]), SR),
        "clipped": (np.clip(mono * 20, -1, 1), sr),
        "dc": (mono + 0.4, sr),
        "dead_channel": (np.stack([mono, np.zeros_like(mono)], axis=1), sr),
        "8k": (mono[::2][: len(mono) // 2], sr // 2),
        "96k": (np.repeat(mono, 2), sr * 2),
        "int16": ((mono * 32767).astype(np.int16), sr),
        "int32": ((mono * 2**31 * 0.99).astype(np.int32), sr),
        "float64": (mono, sr),
    }[case]
    r = light.process_signal(signal, rate, name=case)
    _assert_finite_or_none(r)
    if case not in ("one_sample",):
        assert r.segments, case


# ------------------------------------------------ row 13: property-based, random signals

@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(duration_s=st.floats(0.5, 30.0), sr=st.sampled_from([8000, 11025, 16000, 22050, 44100,
                                                            48000]),
       channels=st.integers(1, 3), seed=st.integers(0, 2**16),
       kind=st.sampled_from(["noise", "chirp", "bursts", "vowel"]))
def test_row13_random_signals_through_the_pipeline(light: Analyzer, duration_s: float, sr: int,
                                                   channels: int, seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    n = int(duration_s * sr)
    t = np.arange(n) / sr
    if kind == "noise":
        y = rng.standard_normal(n) * rng.uniform(0.001, 0.5)
    elif kind == "chirp":
        y = 0.3 * np.sin(2 * np.pi * (100 + 200 * t / duration_s) * t)
    elif kind == "bursts":
        y = rng.standard_normal(n) * (np.sin(2 * np.pi * 0.7 * t) > 0.3) * 0.3
    else:  # a glottal-pulse-like vowel with vibrato
        f0 = 120 + 10 * np.sin(2 * np.pi * 5 * t)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        y = sum(np.sin(h * phase) / h for h in range(1, 12)) * 0.2
    y = np.stack([y * rng.uniform(0, 1) for _ in range(channels)], axis=1) if channels > 1 else y
    r = light.process_signal(y, sr)
    segs = [(s.start_s, s.end_s) for s in r.segments]
    assert segs == sorted(segs)
    assert all(0 <= a < b <= r.source.duration_s + 1e-6 for a, b in segs)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(segs, segs[1:], strict=False))
    _assert_finite_or_none(r)


# ------------------------------------- row 14: API, CLI, process_file, process_signal agree

def _numbers(d: dict) -> dict:
    d = dict(d)
    for key in ("analysed_at", "source"):
        d.pop(key, None)
    d["streams"] = {k: {kk: vv for kk, vv in v.items() if kk != "elapsed_s"}
                    for k, v in d["streams"].items()}
    return d


def test_row14_api_cli_file_signal_identical(tmp_path: Path, jfk_path: Path) -> None:
    import json
    import subprocess
    import sys

    from fastapi.testclient import TestClient

    from fusion.server.app import ServerSettings, create_app

    cfg = load_config(overrides=LIGHT)
    by_file = analyze(jfk_path, config=cfg).to_dict()
    again = analyze(jfk_path, config=cfg).to_dict()
    y, sr = sf.read(jfk_path, dtype="float32")
    by_signal = analyze(y, sr=sr, config=cfg).to_dict()
    out = subprocess.run([sys.executable, "-m", "fusion.cli.main", "analyze", str(jfk_path), "-o",
                          str(tmp_path), "-q", *sum((["--set", o] for o in LIGHT), [])],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    by_cli = json.loads((tmp_path / "jfk.json").read_text())
    app = create_app(cfg, settings=ServerSettings(temp_dir=tmp_path / "srv", workers=1))
    with TestClient(app, base_url="http://localhost", client=("127.0.0.1", 50000)) as client:
        resp = client.post("/v1/analyze", files={"file": ("jfk.flac", jfk_path.read_bytes(),
                                                          "audio/flac")})
    assert resp.status_code == 200, resp.text
    by_api = resp.json()
    reference = _numbers(by_file)
    for other in (again, by_signal, by_cli, by_api):
        assert _numbers(other) == reference


# ------------------------------------------------ row 20: provenance travels with results

def test_row20_results_carry_model_config_and_version(jfk_path: Path) -> None:
    from fusion._version import package_version

    base = load_config(overrides=["emotion.enabled=false"])
    r1 = analyze(jfk_path, config=base)
    r2 = analyze(jfk_path, config=base.with_overrides(["segments.max_segment_s=6"]))
    assert r1.package_version == package_version()
    assert r1.config_hash != r2.config_hash
    assert r2.config["segments"]["max_segment_s"] == 6
    prov = r1.streams["transcript"].provenance
    assert prov is not None and prov.model_id and prov.revision  # model id@revision
    assert r1.streams["prosody"].provenance.library_version
    assert r1.fusion is not None and r1.fusion.model_name and r1.fusion.model_sha256
    assert "not calibrated" in r1.fusion.calibration_status


def test_jsonable_roundtrip_is_exact(light: Analyzer, jfk_path: Path) -> None:
    r = light.process_file(jfk_path)
    buf = io.StringIO(r.to_json())
    assert SessionResult.from_json(buf.read()) == r


# ------------------------------------- row 19: 1,000 files, one corrupt, killed half-way

@pytest.mark.slow
def test_row19_thousand_files_one_corrupt(tmp_path: Path) -> None:
    """1,000 short files (tones and noise bursts, synthetic) and one corrupt file: the CLI
    batch is killed half-way, rerun, and ends with 1,000 results, one error row, nothing
    half-written, and finished files not redone."""
    import csv
    import json
    import subprocess
    import sys

    src = tmp_path / "corpus"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1000):
        y = 0.05 * np.sin(2 * np.pi * (100 + i % 300) * np.arange(SR // 2) / SR)
        y = y + 0.01 * rng.standard_normal(len(y))
        sf.write(src / f"f{i:04d}.wav", y.astype(np.float32), SR, subtype="PCM_16")
    (src / "f0500_corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x01" * 30)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fusion.cli.main", "batch", str(src), "-o", str(out), "--workers",
           "2", "--quiet", *sum((["--set", o] for o in LIGHT), [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sigkill_when(proc, lambda: len(list((out / "results").glob("*.json"))) >= 300,
                 timeout_s=600, what="300 results")
    done = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}
    assert 300 <= len(done) < 1000
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert rerun.returncode == 1, rerun.stderr[-2000:]  # partial failure: one bad file
    after = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}
    assert len(after) == 1000
    assert {k: after[k] for k in done} == done
    assert not list(out.rglob("*.part"))
    with open(out / "errors.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [Path(r["file"]).name for r in rows] == ["f0500_corrupt.wav"]
    for p in list((out / "results").glob("*.json"))[:50]:
        SessionResult.from_json(p.read_bytes())
    assert json.loads((out / "manifest.json").read_text())["n_failed"] == 1
