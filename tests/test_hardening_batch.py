"""Hardening of batch and analyze outputs (issue 18, classes 5 and 6).

Class 5, write failures: an output folder that is a file or read-only, a disk that fills up.
Each gives one line and the README's exit code, leaves nothing half-written, and a batch
records what it could not write. Read-only folders and full disks are real: a tmpfs mounted
read-only or with a few kilobytes (root), or a folder without write permission (non-root).

Class 6, concurrent and stale batch state: a second run into a folder in use refuses, naming
the first; a stale lock is taken over; resume redoes results whose dependency files (fusion
model, population norms) changed in place or whose streams ran another backend.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fusion.batch.runner import BatchError, run_batch
from fusion.cli.main import main
from fusion.config import config_dir, load_config
from fusion.files import atomic_write_bytes

SR = 16_000
#: segmentation and fusion only: these tests are about outputs, not streams
FAST = ["transcript.enabled=false", "emotion.enabled=false", "sentiment.enabled=false",
        "prosody.enabled=false"]
SET_ARGS = [a for o in FAST for a in ("--set", o)]
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def _voice(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A voiced, syllable-modulated harmonic signal with a little noise (speech-like)."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) * (np.sin(2 * np.pi * 0.25 * t) > -0.5)
    return (0.2 * y * env + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def _corpus(d: Path, n: int = 3, seconds: float = 4.0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(d / f"f{i}.wav", _voice(seconds, 110 + 40 * i, i), SR)
    return d


def _one_error_line(err: str) -> None:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err


def _no_parts(folder: Path) -> None:
    assert not list(folder.rglob("*.part")), list(folder.rglob("*.part"))


# ------------------------------------------------------------------------------ mounts
def _mount_tmpfs(target: Path, size_kb: int, *, read_only: bool = False) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    opts = f"size={size_kb}k" + (",ro" if read_only else "")
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], capture_output=True, timeout=20)


@pytest.fixture()
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """An existing folder nothing can be written into."""
    d = tmp_path / "ro"
    if ROOT:
        if not _mount_tmpfs(d, 64, read_only=True):
            pytest.skip("cannot mount a read-only tmpfs here")
        try:
            yield d
        finally:
            _umount(d)
    else:
        d.mkdir()
        d.chmod(0o555)
        try:
            yield d
        finally:
            d.chmod(0o755)


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256-KiB tmpfs (needs root; skipped elsewhere)."""
    d = tmp_path / "tiny"
    if not ROOT or not _mount_tmpfs(d, 256):
        pytest.skip("a small tmpfs needs root")
    try:
        yield d
    finally:
        _umount(d)


def _fill(disk: Path, leave_bytes: int) -> Path:
    """Fill ``disk`` with a file until about ``leave_bytes`` remain free."""
    filler = disk / "filler.bin"
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))
    return filler


# ------------------------------------------------------------------------------ class 5
def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_no_temp(tiny_disk: Path) -> None:
    target = tiny_disk / "result.json"
    target.write_text('{"old": true}')
    _fill(tiny_disk, 8192)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(target, b"x" * 200_000)
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == '{"old": true}'
    _no_parts(tiny_disk)


def test_batch_out_naming_an_existing_file(tmp_path: Path, capsys) -> None:
    corpus = _corpus(tmp_path / "c", n=1)
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    rc = main(["batch", str(corpus), "-o", str(out), "-q", *SET_ARGS])
    err = capsys.readouterr().err
    assert rc == 2
    _one_error_line(err)
    assert "out.txt" in err and "not a folder" in err
    assert out.read_text() == "keep me"


def test_analyze_out_naming_an_existing_file(tmp_path: Path, capsys) -> None:
    corpus = _corpus(tmp_path / "c", n=1)
    out = tmp_path / "results.json"
    out.write_text("keep me")
    rc = main(["analyze", str(corpus / "f0.wav"), "-o", str(out), "-q", *SET_ARGS])
    err = capsys.readouterr().err
    assert rc == 2
    _one_error_line(err)
    assert "results.json" in err and "not a folder" in err
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("inside", [False, True], ids=["folder-itself", "new-subfolder"])
def test_batch_into_a_read_only_folder(tmp_path: Path, readonly_dir: Path, inside: bool,
                                       capsys) -> None:
    corpus = _corpus(tmp_path / "c", n=2)
    out = readonly_dir / "out" if inside else readonly_dir
    rc = main(["batch", str(corpus), "-o", str(out), "-q", *SET_ARGS])
    err = capsys.readouterr().err
    assert rc == 2
    _one_error_line(err)
    assert str(out) in err and "cannot" in err
    assert not list(readonly_dir.iterdir())


def test_analyze_into_a_read_only_folder(tmp_path: Path, readonly_dir: Path, capsys) -> None:
    corpus = _corpus(tmp_path / "c", n=1)
    rc = main(["analyze", str(corpus / "f0.wav"), "-o", str(readonly_dir), "-q", *SET_ARGS])
    err = capsys.readouterr().err
    assert rc == 2
    _one_error_line(err)
    assert str(readonly_dir) in err
    assert not list(readonly_dir.iterdir())


def test_analyze_onto_a_full_disk(tmp_path: Path, tiny_disk: Path, capsys) -> None:
    corpus = _corpus(tmp_path / "c", n=2)
    out = tiny_disk / "out"
    out.mkdir()
    _fill(tiny_disk, 2048)  # room for the write check, not for a result
    rc = main(["analyze", str(corpus), "-o", str(out), "--format", "csv", *SET_ARGS])
    err = capsys.readouterr().err
    assert rc == 3  # nothing could be written
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 2 and all("cannot write" in ln for ln in lines), err
    assert not list(out.iterdir())  # no result, no table, no temp file


@pytest.mark.parametrize("free_bytes", [20_000, 44_000], ids=["results-fail", "tables-fail"])
def test_batch_onto_a_full_disk_records_what_it_could_not_write(tmp_path: Path,
                                                                tiny_disk: Path,
                                                                free_bytes: int,
                                                                capsys) -> None:
    corpus = _corpus(tmp_path / "c", n=3)
    out = tiny_disk / "out"
    # room for the lock and the manifest; then for some results (20 kB) or for the results
    # but not the tables (44 kB): a result is ~5 kB, sessions.parquet ~16 kB
    filler = _fill(tiny_disk, free_bytes)
    rc = main(["batch", str(corpus), "-o", str(out), "-q", *SET_ARGS])
    err = capsys.readouterr().err
    assert rc in (1, 3)
    assert "Traceback" not in err
    _no_parts(out)
    written = sorted(p.name for p in (out / "results").rglob("*.json")) \
        if (out / "results").is_dir() else []
    for p in (out / "results").rglob("*.json") if written else []:
        json.loads(p.read_bytes())  # complete, never half-written
    manifest = json.loads((out / "manifest.json").read_bytes())
    if free_bytes < 30_000:
        assert len(written) < 3  # results that did not fit are failed files
    else:
        assert manifest["status"] == "failed"  # the tables did not fit
    if manifest["status"] == "failed":
        assert rc == 3 and "could not write" in err
    assert manifest["status"] in ("failed", "complete")  # never left "running"
    assert manifest["status"] == "failed" or len(written) + manifest["n_failed"] == 3
    assert manifest.get("write_errors"), manifest
    if (out / "errors.csv").is_file():
        text = (out / "errors.csv").read_text()
        assert text.count("write_failed") == 3 - len(written)
    assert not (out / ".vocalfusion.lock").exists()
    # room again: the rerun completes the batch
    filler.unlink()
    rc = main(["batch", str(corpus), "-o", str(out), "-q", *SET_ARGS])
    assert rc == 0
    assert len(list((out / "results").rglob("*.json"))) == 3
    assert json.loads((out / "manifest.json").read_bytes())["status"] == "complete"


# ------------------------------------------------------------------------------ class 6
def test_a_second_run_into_a_folder_in_use_refuses(tmp_path: Path, capsys) -> None:
    corpus = _corpus(tmp_path / "c", n=4, seconds=30.0)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    first = subprocess.Popen(
        [sys.executable, "-m", "fusion.cli.main", "batch", str(corpus), "-o", str(out),
         "-q", "-w", "1", "--set", "transcript.enabled=false", "--set",
         "emotion.enabled=false", "--set", "sentiment.enabled=false"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        running = False
        while time.monotonic() < deadline and first.poll() is None:
            try:
                running = json.loads((out / "manifest.json").read_bytes())["status"] == \
                    "running"
            except (OSError, ValueError, KeyError):
                running = False
            if running:
                break
            time.sleep(0.05)
        assert running, "the first run never showed a running manifest"
        rc = main(["batch", str(corpus), "-o", str(out), "-q", *SET_ARGS])
        err = capsys.readouterr().err
        assert first.poll() is None, "the first run ended before the second was refused"
        assert rc == 2
        _one_error_line(err)
        assert f"pid {first.pid}" in err and socket.gethostname() in err
        assert "in use" in err
    finally:
        _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err.decode()[-2000:]
    manifest = json.loads((out / "manifest.json").read_bytes())
    # the tables are the first run's alone (its config: prosody on)
    assert manifest["status"] == "complete" and manifest["config"]["prosody"]["enabled"]
    assert not (out / ".vocalfusion.lock").exists()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path: Path, caplog) -> None:
    corpus = _corpus(tmp_path / "c", n=1)
    out = tmp_path / "out"
    out.mkdir()
    pid = _dead_pid()
    (out / ".vocalfusion.lock").write_text(json.dumps(
        {"pid": pid, "host": socket.gethostname(), "started_at": "2026-01-01T00:00:00+00:00"}))
    with caplog.at_level(logging.WARNING, logger="vocalfusion.batch"):
        summary = run_batch(corpus, out, load_config(overrides=FAST), num_workers=1)
    assert summary.exit_code == 0 and summary.n_analysed == 1
    assert any("stale" in r.getMessage() and f"pid {pid}" in r.getMessage()
               for r in caplog.records), caplog.text
    assert not (out / ".vocalfusion.lock").exists()


@pytest.mark.parametrize("holder", ["other-host", "this-process"])
def test_a_live_or_foreign_lock_is_respected(tmp_path: Path, holder: str) -> None:
    corpus = _corpus(tmp_path / "c", n=1)
    out = tmp_path / "out"
    out.mkdir()
    host = "lab-node-7" if holder == "other-host" else socket.gethostname()
    lock = {"pid": os.getpid(), "host": host, "started_at": "2026-01-01T00:00:00+00:00"}
    (out / ".vocalfusion.lock").write_text(json.dumps(lock))
    with pytest.raises(BatchError) as info:
        run_batch(corpus, out, load_config(overrides=FAST), num_workers=1)
    msg = str(info.value)
    assert f"pid {os.getpid()}" in msg and host in msg and "2026-01-01" in msg
    assert json.loads((out / ".vocalfusion.lock").read_text()) == lock  # left alone
    assert not (out / "results").exists()


def test_resume_redoes_results_when_a_dependency_file_is_edited_in_place(
        tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "c", n=2)
    out = tmp_path / "out"
    norms = tmp_path / "norms.json"
    model = tmp_path / "model.json"
    shutil.copy(config_dir() / "population_norms.json", norms)
    shutil.copy(config_dir() / "fusion_prior.json", model)
    cfg = load_config(overrides=[*FAST, f"fusion.population_norms={json.dumps(str(norms))}",
                                 f"fusion.model={json.dumps(str(model))}"])
    first = run_batch(corpus, out, cfg, num_workers=1)
    assert (first.n_analysed, first.n_cached) == (2, 0)
    result = json.loads(next((out / "results").rglob("*.json")).read_bytes())
    import hashlib

    assert result["depends_on"]["fusion.population_norms"] == \
        hashlib.sha256(norms.read_bytes()).hexdigest()
    assert result["depends_on"]["fusion.model"] == hashlib.sha256(model.read_bytes()).hexdigest()
    again = run_batch(corpus, out, cfg, num_workers=1)
    assert (again.n_analysed, again.n_cached) == (0, 2)
    # same path, same config: only the file's content changes
    norms.write_text(json.dumps(json.loads(norms.read_text()), indent=1))
    edited = run_batch(corpus, out, cfg, num_workers=1)
    assert (edited.n_analysed, edited.n_cached) == (2, 0)
    model.write_text(json.dumps(json.loads(model.read_text()), indent=3))
    edited = run_batch(corpus, out, cfg, num_workers=1)
    assert (edited.n_analysed, edited.n_cached) == (2, 0)


def test_resume_redoes_a_result_made_with_another_stream_backend(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "c", n=3)
    out = tmp_path / "out"
    cfg = load_config(overrides=FAST)
    assert run_batch(corpus, out, cfg, num_workers=1).n_analysed == 3
    # one result as another machine made it: its emotion stream ran (another backend there)
    jp = out / "results" / "f1.wav.json"
    data = json.loads(jp.read_bytes())
    data["streams"]["emotion"]["provenance"] = {
        "backend": "transformers", "model_id": "superb/wav2vec2-base-superb-er",
        "revision": "0123456789abcdef", "library_version": "4.0", "options": {}}
    jp.write_text(json.dumps(data))
    again = run_batch(corpus, out, cfg, num_workers=1)
    assert (again.n_analysed, again.n_cached) == (1, 2)
    redone = json.loads(jp.read_bytes())
    assert redone["streams"]["emotion"]["provenance"] != data["streams"]["emotion"]["provenance"]


def test_dependency_hashes_cover_the_speaker_profile_and_refuse_special_files(
        tmp_path: Path) -> None:
    import hashlib

    from fusion.batch.state import dependency_hashes

    profile = tmp_path / "speaker.json"
    profile.write_text('{"any": "content: only its bytes are hashed here"}')
    cfg = load_config(overrides=[*FAST, f"fusion.speaker_profile={json.dumps(str(profile))}"])
    deps = dependency_hashes(cfg)
    assert deps["fusion.speaker_profile"] == hashlib.sha256(profile.read_bytes()).hexdigest()
    assert deps["fusion.model"] == hashlib.sha256(
        (config_dir() / "fusion_prior.json").read_bytes()).hexdigest()
    assert set(deps) == {"fusion.model", "fusion.population_norms", "fusion.speaker_profile"}
    assert dependency_hashes(load_config(overrides=[*FAST, "fusion.enabled=false"])) == {}
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(BatchError, match="fusion.speaker_profile.*not a regular file"):
        dependency_hashes(load_config(
            overrides=[*FAST, f"fusion.speaker_profile={json.dumps(str(fifo))}"]))
    assert time.monotonic() - t0 < 5  # never blocks on a FIFO without a writer
