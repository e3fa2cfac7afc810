"""fusion.engine.analyzer: the Analyzer end to end on real and synthetic audio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fusion
from features.audio.load import load_audio
from features.stream import StreamStatus
from fusion.config import load_config
from fusion.engine.analyzer import Analyzer
from fusion.schema import SessionResult, SessionStatus

PROSODY_ONLY = ["emotion.enabled=false", "transcript.enabled=false", "sentiment.enabled=false"]


@pytest.fixture(scope="module")
def prosody_analyzer() -> Analyzer:
    return Analyzer(load_config(overrides=PROSODY_ONLY)).load()


def _numbers(result: SessionResult) -> dict:
    d = result.to_dict()
    for key in ("analysed_at", "source"):
        d.pop(key)
    for info in d["streams"].values():
        info.pop("elapsed_s", None)
    return d


def test_import_and_prosody_only_analysis_do_not_import_torch(jfk_path: Path) -> None:
    code = (
        "import sys, fusion\n"
        "assert 'torch' not in sys.modules, 'import fusion imported torch'\n"
        f"r = fusion.analyze(sys.argv[1], overrides={PROSODY_ONLY!r})\n"
        "assert r.segments and r.segments[0].prosody is not None\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(jfk_path)], capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_result_schema_round_trip_and_dataframe(prosody_analyzer: Analyzer,
                                                jfk_path: Path) -> None:
    r = prosody_analyzer.process_file(jfk_path)
    assert r.status == SessionStatus.OK
    again = SessionResult.from_json(r.to_json())
    assert again == r
    df = r.to_dataframe()
    assert list(df.index.names) == ["file", "start", "end"]
    assert isinstance(df.index.get_level_values("start")[0], pd.Timedelta)
    assert len(df) == len(r.segments) > 0
    assert "f0_mean_hz" in df.columns
    starts = df.index.get_level_values("start").total_seconds()
    assert np.all(np.diff(starts) > 0)
    assert df.index.get_level_values("end").total_seconds().max() <= r.source.duration_s
    # provenance travels with the result
    assert r.source.sha256 and r.config_hash and r.package_version
    assert r.streams["prosody"].provenance is not None
    assert r.streams["emotion"].status == StreamStatus.SKIPPED


def test_file_and_signal_give_identical_numbers_across_runs(prosody_analyzer: Analyzer,
                                                            jfk_path: Path) -> None:
    r1 = prosody_analyzer.process_file(jfk_path)
    r2 = prosody_analyzer.process_file(jfk_path)
    a = load_audio(jfk_path)
    r3 = prosody_analyzer.process_audio(a)
    assert _numbers(r1) == _numbers(r2) == _numbers(r3)


def test_silence_is_insufficient_speech_not_an_error(prosody_analyzer: Analyzer) -> None:
    r = prosody_analyzer.process_signal(np.zeros(16000 * 10, dtype=np.float32), 16000,
                                        name="silence")
    assert r.status == SessionStatus.INSUFFICIENT_SPEECH
    assert r.segments == []
    assert any("insufficient speech" in w for w in r.warnings)
    assert r.summary is not None and r.summary.stress is None


def test_default_config_runs_every_available_stream(speech_wav: Path) -> None:
    r = fusion.analyze(speech_wav)
    assert r.streams["prosody"].status == StreamStatus.OK
    assert r.streams["transcript"].status == StreamStatus.OK
    assert r.streams["sentiment"].status == StreamStatus.OK
    # the emotion model lives on the hub; offline it is skipped with a remedy, not a crash
    emo = r.streams["emotion"]
    if emo.status != StreamStatus.OK:
        assert emo.status == StreamStatus.SKIPPED and emo.reason
    words = [w for s in r.segments if s.transcript for w in s.transcript.words]
    assert len(words) > 10
    for s in r.segments:
        for w in (s.transcript.words if s.transcript else []):
            assert s.start_s <= (w.start_s + w.end_s) / 2 < s.end_s
    assert r.fusion is not None and "not calibrated" in r.fusion.calibration_status


def test_unknown_stream_name() -> None:
    from features.errors import ParameterError

    with pytest.raises(ParameterError, match="unknown stream"):
        Analyzer(streams=["nope"]).load()
