"""The live engine (issue 17) in process: streaming VAD, LiveSession, ``vocalfusion live``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from features.audio.load import load_audio
from features.errors import InvalidSamplesError, ParameterError
from features.segments.vad import SegmentsConfig, SileroVAD, StreamingSegmenter, segment_audio
from fusion.config import load_config
from fusion.engine.analyzer import Analyzer

ROOT = Path(__file__).resolve().parents[1]
JFK = ROOT / "examples" / "jfk.flac"
LIBRI = Path("/work/shared/data/librispeech/1688/1688-142285-0000.flac")
LIGHT = {"transcript.enabled": False, "emotion.enabled": False, "sentiment.enabled": False}


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD().load()


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(load_config(overrides=LIGHT)).load()


def stream_segments(y: np.ndarray, chunk: int, vad: SileroVAD,
                    cfg: SegmentsConfig | None = None) -> tuple[list, int]:
    seg = StreamingSegmenter(cfg, vad=vad)
    out, most = [], 0
    for i in range(0, len(y), chunk):
        out += seg.push(y[i:i + chunk])
        most = max(most, seg.buffered_samples)
    out += seg.flush()
    return out, most


@pytest.mark.parametrize("path", [JFK, LIBRI])
@pytest.mark.parametrize("chunk", [160, 5000, 16000])
def test_streaming_vad_gives_the_file_segments(vad: SileroVAD, path: Path, chunk: int) -> None:
    if not path.exists():
        pytest.skip(f"{path} is not here")
    y = load_audio(path).y
    closed, _ = stream_segments(y, chunk, vad)
    assert [c.segment for c in closed] == segment_audio(y, 16000, vad=vad)
    for c in closed:  # each closed segment carries its own audio and ≤ 1.5 s before it
        assert len(c.audio) == pytest.approx(c.segment.duration_s * 16000, abs=2)
        assert len(c.context) <= int(1.5 * 16000)


def test_streaming_vad_cuts_at_max_segment_and_keeps_memory_bounded(vad: SileroVAD) -> None:
    y = load_audio(JFK).y
    long = np.concatenate([y[int(5.4 * 16000):int(11.0 * 16000)]] * 8)  # ~45 s without pauses
    cfg = SegmentsConfig(max_segment_s=6.0, min_segment_s=1.0)
    closed, most = stream_segments(long, 4000, vad, cfg)
    assert closed and all(c.segment.duration_s <= 6.0 + 1e-6 for c in closed)
    pairs = zip(closed[:-1], closed[1:], strict=True)
    assert all(a.segment.end_s <= b.segment.start_s for a, b in pairs)
    assert most <= int((6.0 + 1.5 + 1.5) * 16000)  # open region + context + a little


def test_live_session_is_chunk_size_invariant_and_final(analyzer: Analyzer) -> None:
    y, sr = sf.read(JFK, dtype="int16")
    y = y.mean(axis=1).astype(np.int16) if y.ndim == 2 else y
    runs = []
    for chunk in (441, 22050):
        live = analyzer.stream(sample_rate=sr)
        emitted = []
        for i in range(0, len(y), chunk):
            emitted += live.feed(y[i:i + chunk])
        result = live.close()
        assert result.segments[:len(emitted)] == emitted  # what was emitted stays as it was
        runs.append(result)
    a, b = runs
    assert [(s.start_s, s.end_s) for s in a.segments] == [(s.start_s, s.end_s)
                                                        for s in b.segments]
    assert a.source.sha256 == b.source.sha256 and a.source.format == "pcm_s16le"
    infos = [live.segment_info(i) for i in range(len(b.segments))]
    assert [i.warmup for i in infos] == [True, True, False]
    # the fuser's own account (scores.stress.reference): one segment has no session baseline;
    # two have the session median (population SD as the scale)
    assert [i.reference for i in infos] == ["population", "session", "session"]
    assert [s.scores.stress.reference for s in b.segments if s.scores] == \
        [i.reference for i in infos]
    assert {s.speaker for s in b.segments} == {"S1"}
    assert [s.scores.stress.warmup for s in b.segments if s.scores] == [True, True, False]


def test_live_session_bounded_over_a_long_stream(analyzer: Analyzer) -> None:
    rng = np.random.default_rng(0)
    live = analyzer.stream(sample_rate=8000)
    most = 0
    for _ in range(300):  # 5 min of quiet noise in 1-s chunks
        live.feed((rng.standard_normal(8000) * 50).astype(np.int16))
        most = max(most, live.buffered_samples)
    result = live.close()
    assert most <= 3 * 16000
    assert result.source.duration_s == pytest.approx(300.0)
    assert result.status == "insufficient speech"


def test_live_session_refuses_bad_input(analyzer: Analyzer) -> None:
    with pytest.raises(ParameterError, match="sample_rate"):
        analyzer.stream(sample_rate=7999)
    with pytest.raises(ParameterError, match="speakers_mode"):
        analyzer.stream(sample_rate=16000, speakers_mode="channels")
    live = analyzer.stream(sample_rate=16000)
    with pytest.raises(ParameterError, match="even number of bytes"):
        live.feed(b"\x00\x01\x02")
    with pytest.raises(ParameterError, match="mono"):
        live.feed(np.zeros((100, 2), dtype=np.int16))
    with pytest.raises(InvalidSamplesError):
        live.feed(np.array([0.0, np.nan], dtype=np.float32))
    live.close()
    with pytest.raises(ParameterError, match="closed"):
        live.feed(np.zeros(10, dtype=np.int16))


def test_cli_live_prints_rows_and_writes_the_session(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from fusion.cli.main import main

    out = tmp_path / "s.json"
    sets = [a for k, v in LIGHT.items() for a in ("--set", f"{k}={str(v).lower()}")]
    assert main(["live", "--input", str(JFK), "-o", str(out), *sets]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert len(result["segments"]) == 3
    assert printed.count("stress") == 3 and "5.38" in printed
    assert result["source"]["format"] == "pcm_s16le"
