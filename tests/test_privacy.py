"""The ``privacy`` config section (issue 18, class 10): paths as given, as file names or
hashed; transcripts redacted to counts and timings; no voiceprints unless asked. Every output
honours it: the JSON, the tables, the HTML report, the CLI and the server.

Real speech (``jfk.flac``) analysed by the real transcript stream; real voiceprints from the
real diarizer on real speech.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from features.errors import ConfigError
from fusion.cli.main import main
from fusion.config import load_config
from fusion.schema import SessionResult, public_path

JFK = Path("/work/shared/data/jfk.flac")
if not JFK.is_file():
    JFK = Path(__file__).resolve().parents[1] / "examples" / "jfk.flac"
LIGHT = ["emotion.enabled=false", "prosody.enabled=false"]
SET_ARGS = [a for o in LIGHT for a in ("--set", o)]

pytestmark = pytest.mark.skipif(not JFK.is_file(), reason="jfk.flac not available")


@pytest.fixture(scope="module")
def result() -> SessionResult:
    from fusion.engine.analyzer import Analyzer

    r = Analyzer(load_config(overrides=LIGHT)).process_file(str(JFK.resolve()))
    assert r.streams["transcript"].status == "ok", r.streams["transcript"]
    return r


def _with(r: SessionResult, **privacy: Any) -> SessionResult:
    """The same analysis under other privacy settings (they do not change what is measured)."""
    cfg = dict(r.config)
    cfg["privacy"] = {**cfg.get("privacy", {}), **privacy}
    return r.model_copy(update={"config": cfg})


def _words(r: SessionResult) -> set[str]:
    return {re.sub(r"[^a-z]", "", w.text.lower()) for s in r.segments if s.transcript
            for w in s.transcript.words} - {""}


def test_default_keeps_text_and_path(result: SessionResult) -> None:
    text = result.to_json().lower()
    assert "country" in text and str(JFK.resolve()).lower() in text
    assert result.with_privacy() is result  # nothing to change: no copy


def test_redacted_transcript_keeps_counts_and_timings_only(result: SessionResult) -> None:
    words = {w for w in _words(result) if len(w) > 3}
    assert {"country", "fellow", "americans"} <= words
    red = _with(result, redact_transcript=True)
    text = red.to_json().lower()
    leaked = {w for w in words if re.search(rf"\b{w}\b", text)}
    assert not leaked
    back = SessionResult.from_json(red.to_json())
    for a, b in zip(result.segments, back.segments, strict=True):
        if a.transcript is None:
            continue
        assert b.transcript is not None and b.transcript.text == ""
        assert b.transcript.word_count == a.transcript.word_count
        assert [(w.start_s, w.end_s, w.probability) for w in b.transcript.words] == \
            [(w.start_s, w.end_s, w.probability) for w in a.transcript.words]
        assert all(w.text == "" for w in b.transcript.words)
    assert back.streams["transcript"].session["n_words"] == \
        result.streams["transcript"].session["n_words"]
    df = red.to_dataframe()
    assert set(df["text"].fillna("")) == {""}
    assert df["word_count"].sum() == result.to_dataframe()["word_count"].sum()


def test_hashed_paths_leave_no_trace_of_the_path(result: SessionResult, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # a fusion model at a revealing path: it must not leak either
    model = tmp_path / "alice-smith" / "model.json"
    cfg = dict(result.config)
    cfg["fusion"] = {**cfg["fusion"], "model": str(model),
                     "population_norms": str(tmp_path / "alice-smith/n.json")}
    r = result.model_copy(update={"config": cfg, "warnings": [
        *result.warnings, f"fusion.model {model}: example warning naming a path"]})
    hashed = _with(r, paths="hashed")
    text = hashed.to_json()
    assert "jfk" not in text and "alice-smith" not in text and "/work/" not in text
    key = public_path(str(JFK.resolve()), "hashed")
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", key)
    assert hashed.with_privacy().source.path == key
    # tables: file and path_abs are the same key whether the path was given relative or not
    monkeypatch.chdir(JFK.resolve().parent)
    rec = hashed.session_record(file=JFK.name)
    assert rec["file"] == rec["path_abs"] == key
    df = hashed.to_dataframe(JFK.name)
    assert set(df.index.get_level_values("file")) == {key}
    assert set(df["path_abs"]) == {key}
    # idempotent: a saved hashed result read back and written again is unchanged
    again = SessionResult.from_json(text)
    assert again.to_json() == text


def test_name_only_paths(result: SessionResult) -> None:
    named = _with(result, paths="name").with_privacy()
    assert named.source.path == "jfk.flac"
    assert str(JFK.resolve().parent) not in named.to_json()
    assert named.session_record()["path_abs"] == "jfk.flac"


def test_voiceprints_removed_unless_asked(result: SessionResult) -> None:
    import numpy as np

    from features.audio.load import load_audio
    from features.segments.vad import SegmentsConfig, segment_audio
    from features.speakers.diarize import diarize

    try:
        audio = load_audio(str(JFK))
        speakers = diarize(audio.y, segment_audio(audio.y, 16_000, SegmentsConfig()),
                           voiceprints=True)
    except Exception as exc:  # the encoder's weights come with resemblyzer
        pytest.skip(f"speaker encoder unavailable: {exc}")
    assert speakers.speakers and speakers.speakers[0].voiceprint is not None
    vp = speakers.speakers[0].voiceprint
    streams = dict(result.streams)
    streams["prosody"] = streams["prosody"].model_copy(
        update={"session": {"speakers": speakers.model_dump(mode="json")}})
    with_vp = result.model_copy(update={"streams": streams})
    default = json.loads(with_vp.to_json())
    kept = default["streams"]["prosody"]["session"]["speakers"]
    assert all(s["voiceprint"] is None for s in kept["speakers"])
    assert kept["num_speakers"] == speakers.num_speakers  # the rest stays
    asked = json.loads(_with(with_vp, voiceprints=True).to_json())
    got = asked["streams"]["prosody"]["session"]["speakers"]["speakers"][0]["voiceprint"]
    assert np.allclose(got, vp)


def test_report_honours_privacy(result: SessionResult) -> None:
    from fusion.report.render import render_session

    words = {"country", "fellow", "americans"}  # words of the speech, not of the page
    assert words <= _words(result)
    plain = render_session(result).lower()
    assert "country" in plain and "jfk.flac" in plain
    html = render_session(_with(result, redact_transcript=True, paths="hashed")).lower()
    assert "jfk" not in html
    assert not {w for w in words if re.search(rf"\b{w}\b", html)}


def test_privacy_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="privacy.paths"):
        load_config(overrides=["privacy.paths=full"])
    with pytest.raises(ConfigError, match="privacy"):
        load_config(overrides=["privacy.share=true"])
    cfg = load_config(overrides=["privacy.redact_transcript=true"])
    assert cfg.privacy.redact_transcript and cfg.privacy.paths == "as_given"
    assert cfg.config_hash() != load_config().config_hash()  # outputs differ: no resume


def test_cli_analyze_writes_private_outputs(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(["analyze", str(JFK), "-o", str(out), "-q", "--format", "csv", *SET_ARGS,
               "--set", "privacy.redact_transcript=true", "--set", "privacy.paths=hashed"])
    assert rc == 0, capsys.readouterr().err
    for f in out.iterdir():
        text = f.read_text().lower()
        assert "jfk" not in text and "country" not in text and "/work/" not in text, f
    data = json.loads((out / "jfk.json").read_text())
    assert sum(s["transcript"]["word_count"] for s in data["segments"]
               if s["transcript"]) > 10


def test_server_answers_honour_the_server_privacy(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from fusion.server.app import create_app

    cfg = load_config(overrides=[*LIGHT, "privacy.redact_transcript=true",
                                 "privacy.paths=hashed"])
    with TestClient(create_app(cfg), base_url="http://127.0.0.1",
                    client=("127.0.0.1", 50000)) as client:
        with open(JFK, "rb") as fh:
            resp = client.post("/v1/analyze", files={"file": ("jfk.flac", fh, "audio/flac")})
    assert resp.status_code == 200, resp.text
    text = resp.text.lower()
    assert "country" not in text and "jfk" not in text
    body = resp.json()
    assert body["source"]["path"].startswith("sha256:")
    assert sum(s["transcript"]["word_count"] for s in body["segments"]
               if s["transcript"]) > 10
