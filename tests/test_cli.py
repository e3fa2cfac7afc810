"""The `vocalfusion` CLI end to end, as a user runs it (real subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

LIGHT = ["--set", "emotion.enabled=false", "--set", "transcript.enabled=false",
         "--set", "sentiment.enabled=false"]


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("vocalfusion") or ""
    cmd = [exe] if exe else [sys.executable, "-m", "fusion.cli.main"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)


def test_analyze_example_writes_json_and_table(tmp_path: Path, jfk_path: Path) -> None:
    out = _cli("analyze", str(jfk_path), "-o", str(tmp_path), "--format", "csv")
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "jfk.json").read_text())
    assert data["status"] == "ok" and data["segments"]
    assert data["streams"]["transcript"]["status"] == "ok"
    text = " ".join(s["transcript"]["text"] for s in data["segments"] if s["transcript"])
    assert "country" in text.lower()
    df = pd.read_csv(tmp_path / "jfk.segments.csv")
    assert {"file", "start", "end", "f0_mean_hz"} <= set(df.columns)
    assert "jfk.flac" in out.stdout and "not calibrated" in out.stdout


def test_bad_inputs_one_line_each_partial_exit_code(tmp_path: Path, jfk_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"this is not audio at all" * 10)
    out = _cli("analyze", str(jfk_path), str(bad), str(tmp_path / "missing.flac"),
               "-o", str(tmp_path / "o"), "-q", *LIGHT)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "broken.wav: not a recognised audio file" in out.stderr
    assert "missing.flac: file not found" in out.stderr
    assert (tmp_path / "o" / "jfk.json").exists()


def test_all_bad_exit_3_and_config_error_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    out = _cli("analyze", str(empty), "-o", str(tmp_path), *LIGHT)
    assert out.returncode == 3 and "empty.wav: the file is empty" in out.stderr
    out = _cli("analyze", str(empty), "--set", "segments.nope=1")
    assert out.returncode == 2 and "segments.nope" in out.stderr
    assert "Traceback" not in out.stderr


def test_folder_input_and_parquet(tmp_path: Path, jfk_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(jfk_path, folder / "a.flac")
    shutil.copy(jfk_path, folder / "b.flac")
    out = _cli("analyze", str(folder), "-o", str(tmp_path / "o"), "--format", "parquet", *LIGHT)
    assert out.returncode == 0, out.stderr
    a = pd.read_parquet(tmp_path / "o" / "a.segments.parquet")
    b = pd.read_parquet(tmp_path / "o" / "b.segments.parquet")
    assert list(a.index.names) == ["file", "start", "end"]
    assert set(a.index.get_level_values("file")) == {str(folder / "a.flac")}
    pd.testing.assert_frame_equal(a.droplevel("file").drop(columns=["path_abs"]),
                                  b.droplevel("file").drop(columns=["path_abs"]))


@pytest.mark.parametrize("args", [["--help"], ["analyze", "--help"], ["--version"]])
def test_help(args: list[str]) -> None:
    out = _cli(*args)
    assert out.returncode == 0 and "vocalfusion" in out.stdout


# ---------------------------------------------------------------- what a new user hit (#15.6)
def test_models_fetch_help_states_the_timeout_the_code_uses(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from features.sources import hub_timeout_s
    from fusion.cli.main import main

    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    with pytest.raises(SystemExit):
        main(["models", "fetch", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"HF_HUB_ETAG_TIMEOUT or {hub_timeout_s():g} s" in help_text
    assert "or 3 s" in help_text  # the documented default (docs/models.md)


def test_models_fetch_unknown_stream_lists_valid_names(
        capsys: pytest.CaptureFixture[str]) -> None:
    from fusion.cli.main import main

    assert main(["models", "fetch", "--stream", "bogus"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "bogus" in err
    assert "valid: segments, prosody, emotion, transcript, sentiment" in err


def test_emotion_skipped_is_one_short_line_with_detail_in_provenance(
        tmp_path: Path, jfk_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from features.emotion.stream import DEFAULT_CLASSIFIER_MODEL, model_offline_reason
    from fusion.cli.main import main
    from fusion.config import load_config
    from fusion.engine.inventory import list_models

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = [r for r in list_models(load_config()) if r.stream == "emotion"]
    if rows and rows[0].available:
        pytest.skip("the emotion model is on this machine: nothing is skipped")
    args = ["--set", "transcript.enabled=false", "--set", "sentiment.enabled=false"]
    assert main(["analyze", str(jfk_path), "-o", str(tmp_path), *args]) == 0
    out = " ".join(capsys.readouterr().out.split())
    reason = model_offline_reason(DEFAULT_CLASSIFIER_MODEL)
    assert reason.startswith(f"model {DEFAULT_CLASSIFIER_MODEL} not available offline; "
                             "`vocalfusion models fetch` on a networked machine")
    assert f"emotion: skipped — {reason}" in out
    for noise in ("Errno", "ConnectError", "5342d99f", "huggingface/hub"):
        assert noise not in out
    data = json.loads((tmp_path / "jfk.json").read_text())
    emotion = data["streams"]["emotion"]
    assert emotion["reason"] == reason
    assert "5342d99f" in emotion["provenance"]["options"]["unavailable_detail"]


def test_results_carry_bundled_form_not_install_path(tmp_path: Path, jfk_path: Path) -> None:
    from fusion.cli.main import main

    audio = tmp_path / "jfk.flac"  # an input outside the install tree
    shutil.copy(jfk_path, audio)
    assert main(["analyze", str(audio), "-o", str(tmp_path), "-q", *LIGHT]) == 0
    data = json.loads((tmp_path / "jfk.json").read_text())
    assert data["fusion"]["model_path"] == "bundled:fusion/configs/fusion_prior.json"
    import fusion

    install_dir = str(Path(fusion.__file__).resolve().parent.parent)
    assert install_dir not in (tmp_path / "jfk.json").read_text()


def test_stdin_dash_is_read_and_named_dash(tmp_path: Path, jfk_path: Path) -> None:
    exe = shutil.which("vocalfusion")
    cmd = [sys.executable, "-m", "fusion.cli.main"] if not exe else [exe]
    out = subprocess.run([*cmd, "analyze", "-", "-o", str(tmp_path), "--format", "csv", "-q",
                          *LIGHT], input=jfk_path.read_bytes(), capture_output=True,
                         timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr.decode()
    data = json.loads((tmp_path / "stdin.json").read_text())
    assert data["source"]["path"] == "-" and data["source"]["format"] == "flac"
    assert abs(data["source"]["duration_s"] - 11.0) < 0.01
    from fusion.schema import read_segment_table

    df = read_segment_table(tmp_path / "stdin.segments.csv")
    assert set(df.index.get_level_values("file")) == {"-"}
    assert set(df["path_abs"]) == {"<stdin>"}


def test_stdin_errors_are_clear(tmp_path: Path) -> None:
    import io

    from features.audio.load import load_stdin
    from features.errors import AudioTooLongError, EmptyAudioFileError, NotAudioError

    with pytest.raises(EmptyAudioFileError, match="^-: standard input is empty"):
        load_stdin(io.BytesIO(b""))
    with pytest.raises(NotAudioError, match="^-: not a recognised audio file"):
        load_stdin(io.BytesIO(b"not audio at all" * 100))
    with pytest.raises(AudioTooLongError, match="over the limit of 1000 bytes"):
        load_stdin(io.BytesIO(b"RIFF" + b"\0" * 5000), max_bytes=1000)
    # /dev/stdin and other non-regular paths: one line that says to use `-`
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    out = _cli("analyze", str(fifo), "-o", str(tmp_path / "o"), *LIGHT)
    assert out.returncode == 3 and "not a regular file" in out.stderr
    assert "give `-` as the path" in out.stderr and "Traceback" not in out.stderr


def test_batch_into_closed_pipe_finishes_quietly(tmp_path: Path, jfk_path: Path) -> None:
    corpus = tmp_path / "in"
    corpus.mkdir()
    for i in range(3):
        shutil.copy(jfk_path, corpus / f"f{i}.flac")
    out = tmp_path / "out"
    # `vocalfusion batch in -o out -q 2>&1 | head -1`: a real pipe whose reader goes away
    shell = (f"{sys.executable} -m fusion.cli.main batch {corpus} -o {out} -q --workers 1 "
             f"{' '.join(LIGHT)} 2>&1 | head -1; exit ${{PIPESTATUS[0]}}")
    run = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("batch: 3 files") and run.stdout.count("\n") == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["n_analysed"] == 3
    assert len(pd.read_parquet(out / "sessions.parquet")) == 3
    assert not list(out.rglob("*.part"))


def test_transcript_segment_policy_is_refused_naming_the_valid_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    from features.segments.vad import SEGMENT_POLICIES, SegmentsConfig
    from fusion.cli.main import main
    from fusion.config import load_config

    assert SEGMENT_POLICIES == ("vad", "fixed")
    assert main(["analyze", "x.wav", "--set", "segments.policy=transcript"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "segments.policy" in err and "valid: vad, fixed" in err
    for policy in SEGMENT_POLICIES:  # what is offered works
        assert load_config(overrides=[f"segments.policy={policy}"]).segments.policy == policy
        assert SegmentsConfig(policy=policy).policy == policy
