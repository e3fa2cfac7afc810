"""Corpus processing: many files, one result per file, resumable, on one machine or a Ray cluster.

:func:`run_batch` analyses every audio file of a folder or a list and writes into ``out_dir``::

    results/<relative path>.json   one SessionResult per input file (e.g. results/spk1/a.wav.json)
    segments.parquet               one row per segment: SessionResult.to_dataframe() of every
                                   file, concatenated (MultiIndex file, start, end)
    sessions.parquet               one row per file: SessionResult.session_record()
    errors.csv                     file, error_class, code, message: one row per failed file
    manifest.json                  config hash, package version, engine, counts, timings

Guarantees
----------
* **One bad file costs that file only.** Decode errors, analysis errors, a worker process that
  dies (a crashing decoder, the OOM killer) and a file that runs past its deadline are each
  recorded in ``errors.csv``; a dead or stopped worker is replaced.
* **Atomic writes.** Every output is written to a temporary file beside its target and renamed
  over it, so a killed run leaves complete files or none.
* **Resumable.** A file is skipped when ``results/<name>.json`` holds a result for the same
  path, the same input bytes (sha256), the same config hash, the same package version, the
  same content of every file the result depends on (fusion model, speaker profile, population
  norms: ``depends_on``) and the same effective backend, model and revision of every stream
  (see :mod:`fusion.batch.state`). The
  Parquet tables and ``errors.csv`` are rebuilt at the end of every run from the per-file
  JSONs, so they are complete after a resumed run. Failed files are retried on a rerun.
* **Models load once per worker**, not once per file.
* **One run per folder.** A run holds ``OUT/.vocalfusion.lock``; a second run into the same
  folder refuses, naming the first (pid, host, start time); a stale lock is taken over.
* **Write failures are reported, not raised.** An output folder that cannot be written (or
  is a file) stops the run before any work, with one line (:class:`BatchError`). A result that
  cannot be written is a failed file (code ``write_failed``); tables that cannot be written
  end the run with :class:`BatchWriteError`, and the manifest says ``failed`` and what was
  not written.

Engines: ``"local"`` (a pool of worker processes, :mod:`fusion.batch.pool`) and ``"ray"``
(Ray Data with an actor pool, :mod:`fusion.batch.ray_data`; ``pip install "vocalfusion[ray]"``).
Both run the same worker code and give the same tables.

Examples
--------
>>> from fusion.batch.runner import run_batch
>>> summary = run_batch("corpus/", "out/", num_workers=2)   # doctest: +SKIP
>>> summary.n_failed, summary.exit_code                     # doctest: +SKIP
(1, 1)
>>> import pandas as pd
>>> segments = pd.read_parquet("out/segments.parquet")      # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from features.audio.load import file_sha256
from features.errors import AudioError
from fusion.batch.pool import BatchError, FileLimits, FileOutcome, FileTask, LocalPool
from fusion.batch.state import (
    acquire_lock,
    dependency_hashes,
    result_stream_signature,
    signatures_match,
    stream_signature,
)
from fusion.config import Config, load_config
from fusion.engine.many import analyze_files_in_process, concat_segments, segments_table
from fusion.files import (
    AUDIO_SUFFIXES,
    atomic_write_bytes,
    atomic_write_text,
    find_audio_files,
    read_path_list,
)
from fusion.schema import dumps_strict

if TYPE_CHECKING:
    import pandas as pd

    from fusion.engine.analyzer import Analyzer

__all__ = [
    "BatchError",
    "BatchWriteError",
    "BatchErrorRecord",
    "BatchObserver",
    "BatchSummary",
    "FileLimits",
    "FileOutcome",
    "FileTask",
    "Engine",
    "collect_inputs",
    "default_num_workers",
    "worker_config",
    "run_batch",
    "iter_outcomes",
    "process_files_dataframe",
    "build_tables",
    "RESULTS_DIR",
    "MANIFEST_SCHEMA",
]

log = logging.getLogger("vocalfusion.batch")

Engine = Literal["local", "ray"]

#: sub-folder of ``out_dir`` that holds the per-file JSON results
RESULTS_DIR = "results"
#: ``manifest.json`` format identifier
MANIFEST_SCHEMA = "vocalfusion-batch/1"
ERROR_COLUMNS = ("file", "error_class", "code", "message")


class BatchWriteError(BatchError):
    """The batch's tables or manifest could not be written (full disk, read-only folder)."""


# ---------------------------------------------------------------------------- result models
class BatchErrorRecord(BaseModel):
    """One failed file (a row of ``errors.csv``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    error_class: str = Field(description="exception class, or WorkerDied / FileTimeout")
    code: str = Field(description="machine code, e.g. corrupt_audio, worker_died, timeout")
    message: str


class BatchSummary(BaseModel):
    """What a :func:`run_batch` call did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    out_dir: str
    engine: Engine
    num_workers: int = Field(description="worker processes (local) or actors (ray)")
    threads_per_worker: int
    config_hash: str = Field(description="hash of the effective worker config")
    package_version: str
    n_files: int
    n_analysed: int = Field(description="analysed in this run")
    n_cached: int = Field(description="skipped: an up-to-date result was already on disk")
    n_failed: int
    n_insufficient_speech: int = Field(
        description="results (analysed or cached) with status 'insufficient speech'")
    n_worker_processes: int = Field(
        description="worker processes that handled files in this run, replacements included")
    elapsed_s: float
    audio_s: float = Field(description="audio analysed in this run, seconds")
    files_per_min: float | None = Field(description="files analysed (or failed) per minute of "
                                        "wall-clock time in this run")
    errors: list[BatchErrorRecord] = Field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 every file has a result; 1 some failed; 3 every file failed."""
        if self.n_failed == 0:
            return 0
        return 3 if self.n_failed == self.n_files else 1


class BatchObserver(Protocol):
    """Receives progress events (see :mod:`fusion.batch.progress` for a terminal display)."""

    def begin(self, *, total: int, cached: int, engine: str, num_workers: int) -> None: ...

    def file_started(self, task: FileTask, pid: int | None) -> None: ...

    def file_finished(self, outcome: FileOutcome) -> None: ...

    def end(self, summary: BatchSummary) -> None: ...


# ---------------------------------------------------------------------------- inputs
def collect_inputs(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
                   ) -> tuple[list[Path], Path | None]:
    """The audio files a batch should analyse, and the folder output names are relative to.

    Parameters
    ----------
    source : path or sequence of paths
        A folder (searched recursively for audio suffixes, hidden files skipped), a text file
        with one path per line (``#`` comments; relative paths are relative to the list's
        folder), a single audio file, or a sequence of file paths.

    Returns
    -------
    paths : list of Path
        Absolute paths (not symlink-resolved), duplicates removed, order kept.
    root : Path or None
        The folder (or list file's folder) given, or None for a sequence.
    """
    pairs, root = _collect(source)
    return [a for a, _ in pairs], root


def _collect(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
             ) -> tuple[list[tuple[Path, str]], Path | None]:
    """:func:`collect_inputs` with each absolute path paired with the path as the user gave
    it (the folder or list file's folder as given, joined with the file's name in it): the
    ``file`` value of the tables."""
    if isinstance(source, (str, os.PathLike)):
        src = Path(source)
        if str(source) == "-":
            raise BatchError("batch does not read standard input (`-`); use "
                             "`vocalfusion analyze -` for one file, or a list file")
        if src.is_dir():
            paths, root = find_audio_files(src), src
        elif src.suffix.lower() in AUDIO_SUFFIXES:
            paths, root = [src], src.parent
        elif src.is_file():
            paths, root = read_path_list(src), src.parent
        else:
            raise BatchError(f"{src}: no such folder or list file")
    else:
        paths, root = [Path(p) for p in source], None
    seen: set[str] = set()
    unique: list[tuple[Path, str]] = []
    for p in paths:
        a = os.path.abspath(p)
        if a not in seen:
            seen.add(a)
            unique.append((Path(a), str(p)))
    return unique, (Path(os.path.abspath(root)) if root is not None else None)


def output_names(paths: Sequence[Path], root: Path | None) -> list[str]:
    """Unique relative output names: the path relative to ``root`` (or to the paths' common
    folder), keeping the suffix, so ``a.wav`` and ``a.flac`` never collide."""
    if not paths:
        return []
    base: str | None = str(root) if root is not None else None
    if base is None or not all(_is_under(p, base) for p in paths):
        try:
            base = os.path.commonpath([str(p.parent) for p in paths])
        except ValueError:  # different drives (Windows): fall back to file names
            base = None
    if base is None:
        names, seen = [], dict[str, int]()
        for p in paths:
            n = seen.get(p.name, 0)
            seen[p.name] = n + 1
            names.append(p.name if n == 0 else f"{p.stem}-{n}{p.suffix}")
        return names
    return [Path(os.path.relpath(p, base)).as_posix() for p in paths]


def _is_under(p: Path, base: str) -> bool:
    try:
        return os.path.commonpath([str(p), base]) == base
    except ValueError:
        return False


def default_num_workers(config: Config) -> int:
    """One worker per thread of the budget, at most one per CPU core."""
    return max(1, min(os.cpu_count() or 1, config.runtime.num_threads))


def worker_config(config: Config, num_workers: int) -> Config:
    """The effective config of one worker: the thread budget split between the workers.

    ``runtime.num_threads`` becomes ``max(1, budget // num_workers)``; everything else is
    unchanged. Results carry this effective config and its hash.
    """
    threads = max(1, config.runtime.num_threads // max(1, num_workers))
    if threads == config.runtime.num_threads:
        return config
    return config.with_overrides({"runtime.num_threads": threads})


def _remove_stale_parts(out: Path) -> None:
    """Delete temp files (``.<name>.<random>.part``) left by a run killed while writing."""
    if not out.is_dir():
        return
    for part in [*out.glob(".*.part"), *(out / RESULTS_DIR).rglob(".*.part")]:
        part.unlink(missing_ok=True)


def _up_to_date(json_path: Path, path: str, config_hash: str, version: str,
                recorded_path: str | None = None) -> bool:
    """Whether ``json_path`` holds the result of this exact input under this config
    (``recorded_path``: the path as the result records it, when privacy rewrites it)."""
    try:
        data = json.loads(json_path.read_bytes())
        src = data["source"]
        if (data["config_hash"] != config_hash or data["package_version"] != version
                or src["path"] != (recorded_path or path) or not src.get("sha256")):
            return False
        # file_sha256 reads regular files only (a FIFO would block): anything else is redone
        return bool(src["sha256"] == file_sha256(path))
    except (OSError, ValueError, KeyError, TypeError, AudioError):
        return False


def _depends_on_matches(json_path: Path, deps: dict[str, str]) -> bool:
    """Whether the result in ``json_path`` was made with these dependency file contents."""
    try:
        return bool(json.loads(json_path.read_bytes()).get("depends_on", {}) == deps)
    except (OSError, ValueError, AttributeError):
        return False


def current_stream_signature(config: Config) -> dict[str, str]:
    """The effective backend/model/revision of every stream on this machine (the models are
    loaded in this process, then released)."""
    from fusion.engine.analyzer import Analyzer

    analyzer = Analyzer(config)
    try:
        return stream_signature(analyzer.stream_infos())
    finally:
        del analyzer


def _stamp(result_json: str, deps: dict[str, str]) -> str:
    """The worker's result with the dependency hashes of this batch recorded."""
    from fusion.schema import result_models

    result = result_models()[1].model_validate_json(result_json)
    return result.model_copy(update={"depends_on": dict(deps)}).to_json()


def _prepare_out_dir(out: Path) -> None:
    """Create ``out`` or refuse in one line (a file in the way, a read-only parent)."""
    if out.exists() and not out.is_dir():
        raise BatchError(f"-o {out}: exists and is not a folder; name a folder for the "
                         "batch's outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchError(f"cannot create the output folder {out}: "
                         f"{exc.strerror or exc}") from None


def _write_or_record(path: Path, write: Callable[[], None], failed: list[str]) -> None:
    try:
        write()
    except OSError as exc:
        failed.append(f"{path.name} ({exc.strerror or exc})")


def _final_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Best effort: a manifest that says how the run ended, never a stale ``running`` one.
    When even that cannot be written (full disk), the old manifest is removed."""
    try:
        atomic_write_text(path, dumps_strict(manifest))
    except OSError:
        try:
            path.unlink(missing_ok=True)  # frees its blocks: the short form may fit
            atomic_write_text(path, dumps_strict({k: manifest[k] for k in (
                "schema", "status", "package_version", "config_hash", "write_errors")
                if k in manifest}))
        except OSError:
            log.error("%s: cannot write the manifest", path)


# ---------------------------------------------------------------------------- engines
def iter_outcomes(
    tasks: Sequence[FileTask],
    config: Config,
    *,
    num_workers: int,
    engine: Engine = "local",
    limits: FileLimits | None = None,
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
    on_start: Callable[[FileTask, int | None], None] | None = None,
) -> Iterator[FileOutcome]:
    """Analyse ``tasks`` with ``num_workers`` workers; yield outcomes as they finish.

    ``config`` is the *effective* worker config (see :func:`worker_config`).
    """
    if not tasks:
        return
    limits = limits or FileLimits(decode_s=config.audio.decode_timeout_s + 60.0)
    config_json = config.model_dump_json()
    threads = config.runtime.num_threads
    # largest files first: the slowest file should not start last (better balance at the end)
    ordered = sorted(tasks, key=lambda t: _size(t.path), reverse=True)
    if engine == "local":
        with LocalPool(config_json, num_workers=min(num_workers, len(tasks)),
                       threads_per_worker=threads, limits=limits, on_start=on_start) as pool:
            yield from pool.run(ordered)
    elif engine == "ray":
        from fusion.batch.ray_data import run_ray

        yield from run_ray(ordered, config_json, num_workers=min(num_workers, len(tasks)),
                           threads_per_worker=threads, limits=limits, address=ray_address,
                           num_cpus=ray_num_cpus)
    else:
        raise BatchError(f"unknown engine {engine!r}; valid: local, ray")


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


# ---------------------------------------------------------------------------- run_batch
def run_batch(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    config: Config | None = None,
    *,
    num_workers: int | None = None,
    engine: Engine = "local",
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
    limits: FileLimits | None = None,
    progress: BatchObserver | None = None,
) -> BatchSummary:
    """Analyse a corpus into ``out_dir`` (see the module docstring for the layout).

    Parameters
    ----------
    inputs : path or sequence of paths
        A folder, a text file listing one path per line, or a sequence of files
        (see :func:`collect_inputs`).
    out_dir : path
        Output folder (created). Rerunning into the same folder resumes.
    config : Config, optional
        Default ``configs/default.toml``. Its ``runtime.num_threads`` is the thread budget of
        the whole batch, split between the workers.
    num_workers : int, optional
        Worker processes (``engine="local"``) or Ray actors; default
        :func:`default_num_workers`.
    engine : {"local", "ray"}
    ray_address : str, optional
        Address of a running Ray cluster (``"auto"``, ``"ray://host:10001"``); default: start
        a local Ray instance.
    ray_num_cpus : int, optional
        CPUs of the local Ray instance started when ``ray_address`` is None.
    limits : FileLimits, optional
        Per-file deadlines; default: decoding ``audio.decode_timeout_s + 60`` s, analysis
        ``300 s + 5 × audio duration``.
    progress : BatchObserver, optional
        Progress events (:class:`fusion.batch.progress.RichProgress`, ``LogLines``).

    Returns
    -------
    BatchSummary
        Counts, timings and the error records; ``summary.exit_code`` is 0, 1 (some files
        failed) or 3 (all failed).

    Raises
    ------
    BatchError
        No inputs found, or the workers cannot load their models.
    """
    from fusion._version import package_version

    t0 = time.perf_counter()
    started_at = datetime.now(UTC)
    cfg = config if config is not None else load_config()
    n_workers = num_workers if num_workers is not None else default_num_workers(cfg)
    if engine not in ("local", "ray"):
        raise BatchError(f"unknown engine {engine!r}; valid: local, ray")
    if n_workers < 1:
        raise BatchError(f"num_workers must be at least 1; got {n_workers}")
    wcfg = worker_config(cfg, n_workers)
    config_hash = wcfg.config_hash()
    version = package_version()

    pairs, root = _collect(inputs)
    paths = [a for a, _ in pairs]
    given = [g for _, g in pairs]
    if not paths:
        raise BatchError(f"no audio files found in {inputs}")
    deps = dependency_hashes(wcfg)
    out = Path(out_dir)
    _prepare_out_dir(out)
    with acquire_lock(out):
        return _run_locked(
            paths, given, root, out, wcfg, inputs=inputs, deps=deps, config_hash=config_hash,
            version=version, engine=engine, n_workers=n_workers, limits=limits,
            ray_address=ray_address, ray_num_cpus=ray_num_cpus, progress=progress, t0=t0,
            started_at=started_at)


def _run_locked(
    paths: list[Path], given: list[str], root: Path | None, out: Path, wcfg: Config, *,
    inputs: Any, deps: dict[str, str], config_hash: str, version: str, engine: Engine,
    n_workers: int, limits: FileLimits | None, ray_address: str | None,
    ray_num_cpus: int | None, progress: BatchObserver | None, t0: float, started_at: datetime,
) -> BatchSummary:
    """:func:`run_batch` once the output folder's lock is held."""
    from fusion.schema import public_path

    results_dir = out / RESULTS_DIR
    json_paths = [results_dir / f"{n}.json" for n in output_names(paths, root)]

    _remove_stale_parts(out)
    tasks: list[FileTask] = []
    cached: list[int] = []
    for i, (p, jp) in enumerate(zip(paths, json_paths, strict=True)):
        if (jp.is_file() and _up_to_date(jp, str(p), config_hash, version,
                                         public_path(str(p), wcfg.privacy.paths))
                and _depends_on_matches(jp, deps)):
            cached.append(i)
        else:
            tasks.append(FileTask(index=i, path=str(p)))
    if cached:
        # a result made by another backend or model revision (a stream that fell back, or
        # was missing, on another machine) is not comparable: analyse it again
        current = current_stream_signature(wcfg)
        stale = [i for i in cached
                 if not signatures_match(_signature_of(json_paths[i]), current)]
        if stale:
            log.warning("%d cached result(s) were made with other stream backends or model "
                        "revisions; analysing them again", len(stale))
            cached = [i for i in cached if i not in set(stale)]
            tasks.extend(FileTask(index=i, path=str(paths[i])) for i in stale)

    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA, "status": "running", "package_version": version,
        "config_hash": config_hash, "depends_on": deps, "config": wcfg.to_dict(),
        "engine": engine, "num_workers": n_workers,
        "threads_per_worker": wcfg.runtime.num_threads,
        "inputs": [public_path(str(x), wcfg.privacy.paths) for x in inputs]
        if not isinstance(inputs, (str, os.PathLike))
        else public_path(str(inputs), wcfg.privacy.paths),
        "started_at": started_at.isoformat(), "n_files": len(paths),
        "n_cached": len(cached),
    }
    try:
        atomic_write_text(out / "manifest.json", dumps_strict(manifest))
    except OSError as exc:
        raise BatchError(f"cannot write to the output folder {out}: "
                         f"{exc.strerror or exc}") from None
    if progress is not None:
        progress.begin(total=len(paths), cached=len(cached), engine=engine,
                       num_workers=n_workers)

    errors: dict[int, BatchErrorRecord] = {}
    analysed: set[int] = set()
    audio_s = 0.0
    pids: set[int] = set()
    on_start = progress.file_started if progress is not None else None
    try:
        for outcome in iter_outcomes(tasks, wcfg, num_workers=n_workers, engine=engine,
                                     limits=limits, ray_address=ray_address,
                                     ray_num_cpus=ray_num_cpus, on_start=on_start):
            if outcome.worker_pid is not None:
                pids.add(outcome.worker_pid)
            jp = json_paths[outcome.index]
            if outcome.status == "ok" and outcome.result_json is not None:
                try:
                    atomic_write_text(jp, _stamp(outcome.result_json, deps))
                except OSError as exc:
                    outcome = FileOutcome(
                        index=outcome.index, path=outcome.path, status="error",
                        error_class=type(exc).__name__, code="write_failed",
                        message=f"{outcome.path}: cannot write {jp}: {exc.strerror or exc}",
                        elapsed_s=outcome.elapsed_s, audio_s=outcome.audio_s,
                        worker_pid=outcome.worker_pid)
            if outcome.status == "ok":
                analysed.add(outcome.index)
                audio_s += outcome.audio_s or 0.0
            else:
                # a result on disk that no longer matches this input must not enter the tables
                jp.unlink(missing_ok=True)
                shown = public_path(outcome.path, wcfg.privacy.paths)  # privacy.paths
                errors[outcome.index] = BatchErrorRecord(
                    file=shown, error_class=outcome.error_class or "Error",
                    code=outcome.code or "error",
                    message=(outcome.message or "").replace(outcome.path, shown))
            if progress is not None:
                progress.file_finished(outcome)
    except BaseException:
        manifest.update(status="interrupted", finished_at=datetime.now(UTC).isoformat(),
                        n_analysed=len(analysed), n_failed=len(errors))
        _final_manifest(out / "manifest.json", manifest)
        raise

    elapsed = time.perf_counter() - t0
    done_ok = sorted([*cached, *analysed])
    segments, sessions = build_tables([json_paths[i] for i in done_ok],
                                      files=[given[i] for i in done_ok])
    not_written: list[str] = []
    _write_or_record(out / "segments.parquet",
                     lambda: _write_parquet(out / "segments.parquet", segments, index=True),
                     not_written)
    _write_or_record(out / "sessions.parquet",
                     lambda: _write_parquet(out / "sessions.parquet", sessions, index=False),
                     not_written)
    error_list = [errors[i] for i in sorted(errors)]
    _write_or_record(out / "errors.csv", lambda: _write_errors_csv(out / "errors.csv",
                                                                   error_list), not_written)
    n_insufficient = int((sessions["status"] == "insufficient speech").sum()) if len(
        sessions) else 0
    n_processed = len(analysed) + len(errors)
    summary = BatchSummary(
        out_dir=str(out), engine=engine, num_workers=n_workers,
        threads_per_worker=wcfg.runtime.num_threads, config_hash=config_hash,
        package_version=version, n_files=len(paths), n_analysed=len(analysed),
        n_cached=len(cached), n_failed=len(errors), n_insufficient_speech=n_insufficient,
        n_worker_processes=len(pids), elapsed_s=round(elapsed, 3),
        audio_s=round(audio_s, 3),
        files_per_min=round(60.0 * n_processed / elapsed, 3) if n_processed else None,
        errors=error_list)
    manifest.update(status="failed" if not_written else "complete",
                    finished_at=datetime.now(UTC).isoformat(),
                    **summary.model_dump(include={"n_analysed", "n_failed",
                                                  "n_insufficient_speech", "elapsed_s",
                                                  "audio_s", "files_per_min"}),
                    outputs={"results": RESULTS_DIR, "segments": "segments.parquet",
                             "sessions": "sessions.parquet", "errors": "errors.csv"})
    n_write_failed = sum(e.code == "write_failed" for e in error_list)
    if not_written or n_write_failed:
        manifest["write_errors"] = [*not_written, *(
            f"{e.file}: result not written" for e in error_list if e.code == "write_failed")]
    _final_manifest(out / "manifest.json", manifest)
    if not_written:
        raise BatchWriteError(f"{out}: could not write {', '.join(not_written)}; "
                              f"{len(done_ok)} result(s) are in {results_dir}")
    if progress is not None:
        progress.end(summary)
    return summary


def _signature_of(json_path: Path) -> dict[str, str] | None:
    try:
        return result_stream_signature(json_path.read_bytes())
    except OSError:
        return None


# ---------------------------------------------------------------------------- tables
def build_tables(json_paths: Iterable[Path], files: Sequence[str] | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Segment and session tables from per-file result JSONs (in the order given).

    Parameters
    ----------
    json_paths : iterable of Path
        Per-file result JSONs.
    files : sequence of str, optional
        The ``file`` value of each result (the input path as the user gave it); default the
        result's ``source.path``. ``path_abs`` holds the absolute path either way.

    Returns
    -------
    segments : DataFrame
        ``SessionResult.to_dataframe()`` of every file, concatenated: MultiIndex
        ``(file, start, end)`` with Timedelta levels, columns the union over files (NaN where
        a file lacks a column, e.g. a stream that was skipped).
    sessions : DataFrame
        One row per file: ``SessionResult.session_record()``.
    """
    import pandas as pd

    from fusion.schema import SessionResult

    frames = []
    records = []
    for i, jp in enumerate(json_paths):
        result = SessionResult.from_json(jp.read_bytes())
        file = files[i] if files is not None else None
        frames.append(result.to_dataframe(file))
        records.append(result.session_record(file))
    return concat_segments(frames), pd.DataFrame.from_records(records)


def _write_parquet(path: Path, df: pd.DataFrame, *, index: bool) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=index)
    atomic_write_bytes(path, buf.getvalue())


def _write_errors_csv(path: Path, errors: Sequence[BatchErrorRecord]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ERROR_COLUMNS)
    for e in errors:
        writer.writerow([e.file, e.error_class, e.code, e.message])
    atomic_write_text(path, buf.getvalue())


# ---------------------------------------------------------------------------- DataFrame API
def process_files_dataframe(
    paths: Iterable[str | os.PathLike[str]],
    config: Config | None = None,
    *,
    num_workers: int = 1,
    engine: Engine = "local",
    analyzer: Analyzer | None = None,
    limits: FileLimits | None = None,
    ray_address: str | None = None,
) -> pd.DataFrame:
    """Analyse many files into one segment table, the shape of ``process_file(p).to_dataframe()``.

    Parameters
    ----------
    paths : iterable of path
        Files; the ``file`` index level holds each path as given.
    config : Config, optional
        Default: ``analyzer.config_`` if an analyzer is given, else ``configs/default.toml``.
    num_workers : int
        1 with an ``analyzer``: analyse in this process with its loaded models (no per-file
        timeout or crash isolation). Otherwise a worker pool (``engine``) with the thread
        budget split between the workers.
    analyzer : Analyzer, optional
        A loaded analyzer to reuse when ``num_workers == 1``.

    Returns
    -------
    DataFrame
        MultiIndex ``(file, start, end)`` (Timedelta levels), files in input order. Files that
        failed are left out, logged, and listed in ``df.attrs["errors"]`` (dicts with
        ``file, error_class, code, message``).
    """
    from fusion.schema import SessionResult

    items = [str(p) for p in paths]
    cfg = config if config is not None else (analyzer.config_ if analyzer is not None
                                             else load_config())
    if analyzer is not None and analyzer.streams is not None:
        # an Analyzer restricted to some streams: the workers run the same ones
        from features.registry import stream_names

        off = {f"{name}.enabled": False for name in stream_names()
               if name not in analyzer.streams}
        cfg = cfg.with_overrides(off) if off else cfg
    if num_workers == 1 and engine == "local" and analyzer is not None:
        return analyze_files_in_process(analyzer, items)
    results: dict[int, SessionResult] = {}
    errors: dict[int, dict[str, str]] = {}
    wcfg = worker_config(cfg, num_workers)
    tasks = [FileTask(index=i, path=p) for i, p in enumerate(items)]
    for o in iter_outcomes(tasks, wcfg, num_workers=num_workers, engine=engine,
                           limits=limits, ray_address=ray_address):
        if o.status == "ok" and o.result_json is not None:
            results[o.index] = SessionResult.from_json(o.result_json)
        else:
            errors[o.index] = {"file": o.path, "error_class": o.error_class or "Error",
                               "code": o.code or "error", "message": o.message or ""}
    return segments_table(results, errors, items)
