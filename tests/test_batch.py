"""Batch runner: bad files cost themselves only, atomic outputs, resume, dead and hung workers,
local and Ray engines agree.

Audio is real and made here: synthetic espeak-ng speech (``speech_factory``), digital silence,
truncated / random / empty files. The configs are light (no Whisper, no wav2vec2) because these
tests are about batching, not streams; the per-file numbers are checked against
``Analyzer.process_file`` on the same config.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from _procs import sigkill_when

from fusion.batch.pool import LocalPool
from fusion.batch.runner import (
    BatchError,
    FileLimits,
    FileOutcome,
    FileTask,
    collect_inputs,
    output_names,
    process_files_dataframe,
    run_batch,
    worker_config,
)
from fusion.cli.main import main
from fusion.config import load_config
from fusion.schema import SessionResult

SR = 16_000


def _light_overrides() -> list[str]:
    """Streams off except prosody (and the fusion prior) where those modules exist yet."""
    over = ["transcript.enabled=false", "emotion.enabled=false", "sentiment.enabled=false"]
    if not hasattr(importlib.import_module("features.prosody.stream"), "ProsodyStream"):
        over.append("prosody.enabled=false")
    if importlib.util.find_spec("fusion.scoring.fuser") is None:
        over.append("fusion.enabled=false")
    return over


#: prosody (real Praat numbers) for the tests that compare tables
LIGHT = _light_overrides()
#: segmentation only, for the tests about scheduling, failures and resuming
VAD_ONLY = [*LIGHT, "prosody.enabled=false"] if "prosody.enabled=false" not in LIGHT else LIGHT
SET_ARGS = [a for o in VAD_ONLY for a in ("--set", o)]


@pytest.fixture(scope="module")
def light_config():
    return load_config(overrides=LIGHT)


@pytest.fixture(scope="module")
def vad_config():
    return load_config(overrides=VAD_ONLY)


TEXTS = [
    "The weather was calm this morning, so we walked to the market and bought bread.",
    "Later we talked about the garden and the long summer ahead of us.",
    "She said the train would leave at seven, but it was late again today.",
    "Numbers and letters, colours and shapes: the children learned them all quickly.",
]


@pytest.fixture()
def mixed_corpus(tmp_path: Path, speech_factory: Callable[..., Path]) -> dict[str, Path]:
    """Good synthetic speech (one in a sub-folder), corrupt, random, empty and silent files."""
    d = tmp_path / "corpus"
    (d / "spk2").mkdir(parents=True)
    files = {
        "good1": d / "good1.wav",
        "good2": d / "spk2" / "good2.wav",
        "good3": d / "good3.wav",
        "truncated": d / "truncated.wav",
        "random": d / "random.wav",
        "empty": d / "empty.wav",
        "silent": d / "silent.wav",
    }
    shutil.copy(speech_factory(TEXTS[0]), files["good1"])
    shutil.copy(speech_factory(TEXTS[1], pitch=30), files["good2"])
    shutil.copy(speech_factory(TEXTS[2], rate_wpm=140), files["good3"])
    files["truncated"].write_bytes(files["good1"].read_bytes()[:30])  # cut inside the header
    files["random"].write_bytes(np.random.default_rng(1).bytes(8000))
    files["empty"].write_bytes(b"")
    sf.write(files["silent"], np.zeros(SR * 4, dtype=np.float32), SR)
    return files


def _read_errors(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "errors.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {Path(r["file"]).name: r for r in rows}


def _mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns
            for p in sorted((out / "results").rglob("*.json"))}


# ------------------------------------------------------------------------------------ inputs
def test_collect_inputs_from_list_and_output_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/x.wav", "a/x.flac", "y.wav"):
        (tmp_path / name).write_bytes(b"RIFF")
    lst = tmp_path / "files.txt"
    lst.write_text(f"# corpus\na/x.wav\n\n  a/x.flac  \n{tmp_path / 'y.wav'}\na/x.wav\n",
                   encoding="utf-8")
    paths, root = collect_inputs(lst)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["a/x.wav", "a/x.flac",
                                                                    "y.wav"]
    assert all(p.is_absolute() for p in paths)
    assert output_names(paths, root) == ["a/x.wav", "a/x.flac", "y.wav"]
    # outside the root: relative to the common folder; a bare sequence works too
    other = tmp_path.parent / f"{tmp_path.name}-other.wav"
    names = output_names([*paths, other], root)
    assert len(set(names)) == 4 and not any(n.startswith("..") for n in names)
    with pytest.raises(BatchError, match="no such folder"):
        collect_inputs(tmp_path / "missing")


def test_worker_config_splits_the_thread_budget(light_config) -> None:
    cfg = light_config.with_overrides({"runtime.num_threads": 4})
    assert worker_config(cfg, 2).runtime.num_threads == 2
    assert worker_config(cfg, 8).runtime.num_threads == 1
    assert worker_config(cfg, 1) is cfg
    assert worker_config(cfg, 2).model_dump(exclude={"runtime"}) == cfg.model_dump(
        exclude={"runtime"})


# ------------------------------------------------------------------------------------ CLI
def test_cli_mixed_folder_partial_failure(mixed_corpus: dict[str, Path], tmp_path: Path,
                                          light_config) -> None:
    out = tmp_path / "out"
    root = mixed_corpus["good1"].parent
    light_args = [a for o in LIGHT for a in ("--set", o)]
    rc = main(["batch", str(root), "-o", str(out), "--workers", "2", "--quiet", *light_args])
    assert rc == 1  # partial failure

    errors = _read_errors(out)
    assert set(errors) == {"truncated.wav", "random.wav", "empty.wav"}
    assert errors["truncated.wav"]["error_class"] == "CorruptAudioError"
    assert errors["random.wav"]["code"] == "not_audio"
    assert errors["empty.wav"]["code"] == "empty_file"
    assert all(r["message"].startswith(r["file"]) for r in errors.values())

    jsons = sorted(p.relative_to(out / "results").as_posix()
                   for p in (out / "results").rglob("*.json"))
    assert jsons == ["good1.wav.json", "good3.wav.json", "silent.wav.json",
                     "spk2/good2.wav.json"]
    assert not list(out.rglob("*.part"))

    sessions = pd.read_parquet(out / "sessions.parquet")
    status = dict(zip(sessions["file"].map(lambda f: Path(f).name), sessions["status"],
                      strict=True))
    assert status == {"good1.wav": "ok", "good2.wav": "ok", "good3.wav": "ok",
                      "silent.wav": "insufficient speech"}

    # the tables hold exactly what Analyzer.process_file gives for each file, in input order
    from fusion.engine.analyzer import Analyzer

    wcfg = worker_config(light_config, 2)
    analyzer = Analyzer(wcfg).load()
    good = [p for p in collect_inputs(root)[0]
            if p.name in ("good1.wav", "good3.wav", "silent.wav", "good2.wav")]
    singles = [analyzer.process_file(p) for p in good]
    expected = pd.concat([df for r in singles if len(df := r.to_dataframe())])
    segments = pd.read_parquet(out / "segments.parquet")
    assert len(segments) > 0
    pd.testing.assert_frame_equal(segments, expected, check_index_type=False,
                                  check_column_type=False)
    expected_sessions = pd.DataFrame.from_records([r.session_record() for r in singles])
    pd.testing.assert_frame_equal(sessions, expected_sessions, check_dtype=False)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["config_hash"] == wcfg.config_hash() == sessions["config_hash"].iloc[0]
    assert (manifest["n_files"], manifest["n_analysed"], manifest["n_failed"]) == (7, 4, 3)


def test_cli_exit_codes(tmp_path: Path, speech_factory: Callable[..., Path]) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.wav").write_bytes(b"")
    assert main(["batch", str(d), "-o", str(tmp_path / "o1"), "-q", *SET_ARGS]) == 3
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(speech_factory(TEXTS[0]), good / "a.wav")
    assert main(["batch", str(good), "-o", str(tmp_path / "o2"), "-q", *SET_ARGS]) == 0
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert main(["batch", str(empty), "-o", str(tmp_path / "o3"), "-q", *SET_ARGS]) == 2


# ------------------------------------------------------------------------------------ resume
def test_rerun_skips_up_to_date_files_and_redoes_changed_ones(
        mixed_corpus: dict[str, Path], tmp_path: Path, vad_config) -> None:
    light_config = vad_config
    out = tmp_path / "out"
    root = mixed_corpus["good1"].parent
    first = run_batch(root, out, light_config, num_workers=1)
    assert (first.n_analysed, first.n_cached, first.n_failed) == (4, 0, 3)
    before = _mtimes(out)
    seg_before = pd.read_parquet(out / "segments.parquet")

    second = run_batch(root, out, light_config, num_workers=1)
    assert (second.n_analysed, second.n_cached, second.n_failed) == (0, 4, 3)  # errors retried
    assert _mtimes(out) == before
    pd.testing.assert_frame_equal(pd.read_parquet(out / "segments.parquet"), seg_before)

    # new bytes in one input → only that file is analysed again
    shutil.copy(mixed_corpus["good3"], mixed_corpus["good1"])
    third = run_batch(root, out, light_config, num_workers=1)
    assert (third.n_analysed, third.n_cached) == (1, 3)
    after = _mtimes(out)
    changed = {k for k in before if after[k] != before[k]}
    assert changed == {"results/good1.wav.json"}

    # a file that now fails loses its stale result (it must not enter the tables)
    mixed_corpus["good3"].write_bytes(b"")
    fourth = run_batch(root, out, light_config, num_workers=1)
    assert fourth.n_failed == 4 and not (out / "results" / "good3.wav.json").exists()
    files = set(pd.read_parquet(out / "sessions.parquet")["file"].map(lambda f: Path(f).name))
    assert "good3.wav" not in files

    # another config → nothing is reused
    other = light_config.with_overrides({"segments.max_segment_s": 5.0})
    fifth = run_batch(root, out, other, num_workers=1)
    assert (fifth.n_analysed, fifth.n_cached) == (3, 0)


def test_kill_and_resume_cli(tmp_path: Path, speech_factory: Callable[..., Path]) -> None:
    """SIGKILL the CLI once the first result exists; the rerun redoes nothing finished."""
    src = tmp_path / "corpus"
    src.mkdir()
    n_files = 12
    for i in range(n_files):  # ~10 s each, distinct content
        y = np.concatenate([sf.read(speech_factory(TEXTS[(i + k) % 4]), dtype="float32")[0]
                            for k in range(2)])
        sf.write(src / f"f{i:02d}.wav", y, 22050 + 10 * i)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fusion.cli.main", "batch", str(src), "-o", str(out),
           "--workers", "1", "--quiet", *SET_ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sigkill_when(proc, lambda: bool(list((out / "results").glob("*.json"))), timeout_s=120,
                 what="the first result")
    done = _mtimes(out)
    assert 1 <= len(done) < n_files, "the run was not killed half-way"
    for p in (out / "results").glob("*.json"):
        SessionResult.from_json(p.read_bytes())  # every result on disk is complete
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} already analysed" in rerun.stderr
    assert rerun.stderr.count(" ok ") == n_files - len(done)  # one log line per new file
    after = _mtimes(out)
    assert len(after) == n_files
    assert {k: after[k] for k in done} == done  # finished files were not redone
    assert not list(out.rglob("*.part"))
    for p in (out / "results").glob("*.json"):
        SessionResult.from_json(p.read_bytes())
    assert len(pd.read_parquet(out / "sessions.parquet")) == n_files
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


# ------------------------------------------------------------------------------------ workers
class _KillOnStart:
    """Observer that sends ``sig`` to the worker that takes ``victim`` (a decoder crash or a
    hang, as far as the parent can tell)."""

    def __init__(self, victim: str, sig: int) -> None:
        self.victim, self.sig, self.pids = victim, sig, []

    def begin(self, **kw: object) -> None: ...

    def file_started(self, task: FileTask, pid: int | None) -> None:
        self.pids.append(pid)
        if Path(task.path).name == self.victim and pid is not None:
            os.kill(pid, self.sig)

    def file_finished(self, outcome: FileOutcome) -> None: ...

    def end(self, summary: object) -> None: ...


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_worker_that_dies_costs_its_file_only(mixed_corpus: dict[str, Path], tmp_path: Path,
                                              vad_config, sig: int) -> None:
    light_config = vad_config
    watcher = _KillOnStart("good2.wav", sig)
    summary = run_batch(mixed_corpus["good1"].parent, tmp_path / "out", light_config,
                        num_workers=1, progress=watcher)
    errors = {Path(e.file).name: e for e in summary.errors}
    assert errors["good2.wav"].code == "worker_died"
    assert errors["good2.wav"].error_class == "WorkerDied"
    assert signal.Signals(sig).name in errors["good2.wav"].message
    assert summary.n_failed == 4 and summary.n_analysed == 3
    assert summary.n_worker_processes >= 2  # the dead worker was replaced
    assert len(set(watcher.pids)) == 2


def test_hung_worker_is_stopped_at_the_deadline(mixed_corpus: dict[str, Path], tmp_path: Path,
                                                vad_config) -> None:
    watcher = _KillOnStart("good1.wav", signal.SIGSTOP)  # a decoder that never returns
    t0 = time.perf_counter()
    # 2 s per phase: far above what these files need (about 0.1 s)
    summary = run_batch(mixed_corpus["good1"].parent, tmp_path / "out", vad_config,
                        num_workers=1, progress=watcher,
                        limits=FileLimits(decode_s=2.0, base_s=2.0, per_audio_s=0.0))
    assert time.perf_counter() - t0 < 60
    errors = {Path(e.file).name: e for e in summary.errors}
    assert errors["good1.wav"].code == "timeout"
    assert errors["good1.wav"].error_class == "FileTimeout"
    assert "no result after 2 s" in errors["good1.wav"].message
    assert summary.n_analysed == 3  # the others went on in a fresh worker
    assert len(set(watcher.pids)) == 2


def test_models_load_failure_is_a_batch_error(tmp_path: Path, speech_wav: Path) -> None:
    with pytest.raises(BatchError, match="could not load the models"), \
            LocalPool("{not a config", num_workers=1) as pool:
        list(pool.run([FileTask(0, str(speech_wav))]))


# ------------------------------------------------------------------------------------ API
def test_process_files_dataframe_matches_single_files(mixed_corpus: dict[str, Path],
                                                      light_config) -> None:
    from fusion.engine.analyzer import Analyzer

    paths = [mixed_corpus[k] for k in ("good1", "empty", "good2", "silent")]
    analyzer = Analyzer(worker_config(light_config, 2)).load()
    expected = pd.concat([df for p in paths if p.name not in ("empty.wav", "silent.wav")
                          if len(df := analyzer.process_file(p).to_dataframe())])
    pooled = process_files_dataframe(paths, light_config, num_workers=2)
    pd.testing.assert_frame_equal(pooled, expected)
    assert pooled.index.names == ["file", "start", "end"]
    assert [e["code"] for e in pooled.attrs["errors"]] == ["empty_file"]
    # one worker with a loaded analyzer: in this process, same table
    in_process = process_files_dataframe(paths[:2], num_workers=1, analyzer=analyzer)
    pd.testing.assert_frame_equal(in_process, expected.loc[[str(paths[0])]])
    assert [e["code"] for e in in_process.attrs["errors"]] == ["empty_file"]
    empty = process_files_dataframe([], num_workers=1, analyzer=analyzer)
    assert len(empty) == 0 and empty.index.names == ["file", "start", "end"]


# ------------------------------------------------------------------------------------ Ray
RAY_SCRIPT = """
import sys
from fusion.batch.runner import run_batch
from fusion.config import load_config
cfg = load_config(overrides=sys.argv[3:])
s = run_batch(sys.argv[1], sys.argv[2], cfg, num_workers=2, engine="ray", ray_num_cpus=2)
print(s.n_analysed, s.n_failed)
"""


@pytest.mark.slow
def test_ray_engine_gives_the_local_tables(mixed_corpus: dict[str, Path], tmp_path: Path,
                                           light_config) -> None:
    pytest.importorskip("ray.data")
    root = mixed_corpus["good1"].parent
    local = run_batch(root, tmp_path / "local", light_config, num_workers=2)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-c", RAY_SCRIPT, str(root),
                             str(tmp_path / "ray"), *LIGHT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the Ray batch did not finish within 300 s")
    assert proc.returncode == 0, stderr
    assert stdout.split()[-2:] == [str(local.n_analysed), str(local.n_failed)]
    for table in ("segments", "sessions"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ray" / f"{table}.parquet"),
                                      pd.read_parquet(tmp_path / "local" / f"{table}.parquet"))
    assert (tmp_path / "ray" / "errors.csv").read_text() == (
        tmp_path / "local" / "errors.csv").read_text()
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["engine"] == "ray" and manifest["status"] == "complete"
