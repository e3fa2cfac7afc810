"""A pool of worker processes that each load the models once and analyse one file at a time.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: when one of its workers dies (a decoder
that segfaults, the kernel's OOM killer) every pending future fails with ``BrokenProcessPool``
and nothing says which file killed it; and a task that hangs cannot be stopped without killing
the whole pool. Here the parent knows which file each worker holds and since when, so

* a worker that dies costs exactly the file it held (recorded as ``WorkerDied``), and a fresh
  worker takes its place;
* a file that runs past its deadline gets its worker killed and replaced (``FileTimeout``);
* nothing else is redone.

Workers are started with the ``forkserver`` context where the platform has it (``spawn``
elsewhere), never plain ``fork`` (forking a process that holds thread pools is unsafe). Their
entry point, :func:`fusion.batch.worker.worker_main`, plays the part of an executor
"initializer": it loads an :class:`~fusion.engine.analyzer.Analyzer` once per process.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Literal

from features.errors import VocalfusionError
from fusion.batch.worker import worker_main

__all__ = ["BatchError", "FileTask", "FileOutcome", "FileLimits", "LocalPool",
           "mp_context"]

log = logging.getLogger("vocalfusion.batch")


class BatchError(VocalfusionError):
    """The batch as a whole cannot run (e.g. the workers cannot load their models)."""


@dataclass(frozen=True)
class FileTask:
    """One input file of a batch; ``index`` is its position in the input list."""

    index: int
    path: str


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file: analysed (``result_json``), failed (``error_*``) or cached."""

    index: int
    path: str
    status: Literal["ok", "error", "cached"]
    result_json: str | None = None
    session_status: str | None = None
    error_class: str | None = None
    code: str | None = None
    message: str | None = None
    elapsed_s: float = 0.0
    audio_s: float | None = None
    worker_pid: int | None = None


@dataclass(frozen=True)
class FileLimits:
    """Per-file wall-clock limits.

    A file may take ``decode_s`` seconds to decode, then ``base_s + per_audio_s × duration``
    seconds to analyse (duration of the decoded audio in seconds). ``None`` disables a limit.
    """

    decode_s: float | None = 180.0
    base_s: float | None = 300.0
    per_audio_s: float = 5.0

    def analysis_s(self, audio_s: float) -> float | None:
        if self.base_s is None:
            return None
        return self.base_s + self.per_audio_s * max(0.0, audio_s)


def mp_context() -> Any:
    """``forkserver`` where available (Linux, macOS), else ``spawn``."""
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


class _Worker:
    """One child process and what it is doing."""

    def __init__(self, ctx: Any, config_json: str, num_threads: int, serial: int) -> None:
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=worker_main, args=(child_conn, config_json, num_threads),
                                name=f"vocalfusion-worker-{serial}", daemon=True)
        self.proc.start()
        child_conn.close()
        self.pid: int | None = self.proc.pid
        self.ready = False
        self.task: FileTask | None = None
        self.started = 0.0
        self.deadline: float | None = None
        self.audio_s: float | None = None

    def assign(self, task: FileTask, limits: FileLimits) -> None:
        self.task = task
        self.started = time.monotonic()
        self.deadline = None if limits.decode_s is None else self.started + limits.decode_s
        self.audio_s = None
        self.conn.send((task.index, task.path))

    def finish(self) -> tuple[FileTask, float]:
        assert self.task is not None
        task, elapsed = self.task, time.monotonic() - self.started
        self.task, self.deadline = None, None
        return task, elapsed

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5.0)
        self.conn.close()

    def stop(self) -> None:
        """Ask an idle worker to exit; kill it if it does not within a few seconds."""
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(None)
        self.proc.join(timeout=5.0)
        self.kill()


class LocalPool:
    """``num_workers`` processes, each with its own loaded
    :class:`~fusion.engine.analyzer.Analyzer`.

    Parameters
    ----------
    config_json : str
        The configuration as JSON (``Config.model_dump_json()``).
    num_workers : int
        Worker processes (≥ 1).
    threads_per_worker : int
        Thread budget of each worker (``runtime.num_threads`` in its effective config).
    limits : FileLimits, optional
        Per-file deadlines.
    on_start : callable, optional
        ``on_start(task, pid)`` when a worker takes a file (progress displays, tests).

    Use as a context manager; :meth:`run` may be called several times (models stay loaded).
    """

    def __init__(self, config_json: str, *, num_workers: int = 1, threads_per_worker: int = 1,
                 limits: FileLimits | None = None,
                 on_start: Callable[[FileTask, int | None], None] | None = None) -> None:
        if num_workers < 1:
            raise BatchError(f"num_workers must be at least 1; got {num_workers}")
        self.config_json = config_json
        self.num_workers = num_workers
        self.threads_per_worker = threads_per_worker
        self.limits = limits or FileLimits()
        self.on_start = on_start
        self._ctx = mp_context()
        self._workers: list[_Worker] = []
        self._serial = 0
        #: worker processes started so far (replacements included)
        self.workers_started = 0

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> LocalPool:
        while len(self._workers) < self.num_workers:
            self._spawn()
        return self

    def close(self) -> None:
        for w in self._workers:
            if w.task is None and w.proc.is_alive():
                w.stop()
            else:
                w.kill()
        self._workers.clear()

    def _spawn(self) -> _Worker:
        self._serial += 1
        w = _Worker(self._ctx, self.config_json, self.threads_per_worker, self._serial)
        self._workers.append(w)
        self.workers_started += 1
        return w

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self._workers.remove(w)
        self._spawn()

    # ---------------------------------------------------------------- work
    def run(self, tasks: Iterable[FileTask]) -> Iterator[FileOutcome]:
        """Analyse ``tasks``; yield one outcome per task as it finishes (not in input order)."""
        queue = deque(tasks)
        if not self._workers:
            self.start()
        busy = 0
        while queue or busy:
            for w in self._workers:
                if w.ready and w.task is None and queue:
                    task = queue.popleft()
                    try:
                        w.assign(task, self.limits)
                    except (BrokenPipeError, OSError):  # died while idle: retry elsewhere
                        queue.appendleft(task)
                        w.task = None
                        continue
                    busy += 1
                    if self.on_start is not None:
                        self.on_start(task, w.pid)
            timeout = self._next_timeout()
            handles: list[Any] = [w.conn for w in self._workers]
            handles += [w.proc.sentinel for w in self._workers]
            ready = set(wait(handles, timeout=timeout))
            for w in list(self._workers):
                if w.conn in ready or w.proc.sentinel in ready:
                    for outcome in self._drain(w):
                        busy -= 1
                        yield outcome
            now = time.monotonic()
            for w in list(self._workers):
                if w.task is not None and w.deadline is not None and now > w.deadline:
                    task, elapsed = w.finish()
                    busy -= 1
                    phase = ("decoding" if w.audio_s is None
                             else f"analysing {w.audio_s:.1f} s of audio")
                    log.warning("%s: no result after %.0f s (%s); worker %s killed",
                                task.path, elapsed, phase, w.pid)
                    self._replace(w)
                    yield FileOutcome(
                        index=task.index, path=task.path, status="error",
                        error_class="FileTimeout", code="timeout",
                        message=f"{task.path}: no result after {elapsed:.0f} s while {phase} "
                                f"(per-file limit); the worker was stopped",
                        elapsed_s=round(elapsed, 3), audio_s=w.audio_s, worker_pid=w.pid)

    def _next_timeout(self) -> float:
        deadlines = [w.deadline for w in self._workers if w.deadline is not None]
        if not deadlines:
            return 1.0
        return max(0.01, min(1.0, min(deadlines) - time.monotonic()))

    def _drain(self, w: _Worker) -> Iterator[FileOutcome]:
        """Read every message the worker has sent; handle its death if it died."""
        while True:
            try:
                if not w.conn.poll():
                    break
                msg = w.conn.recv()
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == "ready":
                w.ready, w.pid = True, msg[1]
            elif kind == "load_failed":
                raise BatchError(f"a batch worker could not load the models: {msg[1]}")
            elif kind == "decoded":
                w.audio_s = msg[2]
                allowed = self.limits.analysis_s(msg[2])
                w.deadline = None if allowed is None else time.monotonic() + allowed
            elif kind in ("done", "error") and w.task is not None and msg[1] == w.task.index:
                task, elapsed = w.finish()
                if kind == "done":
                    yield FileOutcome(index=task.index, path=task.path, status="ok",
                                      result_json=msg[2], session_status=msg[3],
                                      elapsed_s=round(elapsed, 3),
                                      audio_s=w.audio_s, worker_pid=w.pid)
                else:
                    yield FileOutcome(index=task.index, path=task.path, status="error",
                                      error_class=msg[2], code=msg[3], message=msg[4],
                                      elapsed_s=round(elapsed, 3), audio_s=w.audio_s,
                                      worker_pid=w.pid)
        if w.proc.is_alive():
            return
        w.proc.join(timeout=1.0)
        code = w.proc.exitcode
        if not w.ready:
            raise BatchError(f"a batch worker process died while loading the models "
                             f"({_describe_exit(code)}); run `vocalfusion analyze` on one file "
                             f"to see the error")
        if w.task is not None:
            task, elapsed = w.finish()
            log.warning("%s: worker %s died (%s); starting a new one", task.path, w.pid,
                        _describe_exit(code))
            yield FileOutcome(
                index=task.index, path=task.path, status="error", error_class="WorkerDied",
                code="worker_died",
                message=f"{task.path}: the worker process died while "
                        f"{'decoding' if w.audio_s is None else 'analysing'} this file "
                        f"({_describe_exit(code)})",
                elapsed_s=round(elapsed, 3), audio_s=w.audio_s, worker_pid=w.pid)
        self._replace(w)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        import signal

        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
