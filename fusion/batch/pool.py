"""A pool of worker processes that each load the models once and analyse one file at a time.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: when one of its workers dies (a decoder
that segfaults, the kernel's OOM killer) every pending future fails with ``BrokenProcessPool``
and nothing says which file killed it; and a task that hangs cannot be stopped without killing
the whole pool. Here the parent knows which file each worker holds and since when, so

* a worker that dies costs exactly the file it held (recorded as ``WorkerDied``), and a fresh
  worker takes its place;
* a file that runs past its deadline gets its worker killed and replaced (``FileTimeout``);
* nothing else is redone.

Each worker is a fresh interpreter, ``python -m fusion.batch.worker``, started, killed and
reaped by :class:`features.supervisor.Child` (its own process group; never a ``multiprocessing``
child, so the user's ``__main__`` is not re-imported and a pool starts from daemonic processes
too). Messages are JSON lines over its stdin/stdout; a reader thread per worker turns them into
events on one queue. The child's entry point, :func:`fusion.batch.worker.worker_main`, plays the
part of an executor "initializer": it loads an :class:`~fusion.engine.analyzer.Analyzer` once
per process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from features.errors import VocalfusionError
from features.supervisor import Child, describe_exit
from fusion.batch.worker import THREAD_ENV_VARS

__all__ = ["BatchError", "FileTask", "FileOutcome", "FileLimits", "LocalPool"]

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


class _Worker:
    """One child process and what it is doing."""

    def __init__(self, config_json: str, num_threads: int,
                 events: queue.Queue[tuple[_Worker, list[Any] | None]]) -> None:
        threads = {var: str(num_threads) for var in THREAD_ENV_VARS}
        self.child = Child("fusion.batch.worker", [str(num_threads)], env=threads)
        self.pid: int | None = self.child.pid
        self.ready = False
        self.task: FileTask | None = None
        self.started = 0.0
        self.deadline: float | None = None
        self.audio_s: float | None = None
        self._events = events
        self._reader = threading.Thread(target=self._read, name=f"batch-worker-{self.pid}",
                                        daemon=True)
        try:
            self._send(config_json)
        except OSError:
            self.child.close()
            raise
        self._reader.start()

    def _send(self, msg: Any) -> None:
        self.child.stdin.write(json.dumps(msg).encode() + b"\n")
        self.child.stdin.flush()

    def _read(self) -> None:
        """Each message as an event; ``None`` when the child's output ends (it exited)."""
        try:
            for line in self.child.stdout:
                try:
                    msg = json.loads(line)
                except ValueError:
                    log.warning("batch worker %s sent a malformed line; ignored", self.pid)
                    continue
                self._events.put((self, msg))
        except (OSError, ValueError):
            pass
        self._events.put((self, None))

    def assign(self, task: FileTask, limits: FileLimits) -> None:
        self.task = task
        self.started = time.monotonic()
        self.deadline = None if limits.decode_s is None else self.started + limits.decode_s
        self.audio_s = None
        self._send([task.index, task.path])

    def finish(self) -> tuple[FileTask, float]:
        assert self.task is not None
        task, elapsed = self.task, time.monotonic() - self.started
        self.task, self.deadline = None, None
        return task, elapsed

    def kill(self) -> None:
        self.child.close()  # kill the group, reap, close the pipes
        self._reader.join(timeout=5.0)

    def stop(self) -> None:
        """Ask an idle worker to exit (end of stdin); escalate if it does not within seconds."""
        self.child.stop(grace_s=5.0)
        self._reader.join(timeout=5.0)


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
        self._workers: list[_Worker] = []
        self._events: queue.Queue[tuple[_Worker, list[Any] | None]] = queue.Queue()
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
        idle = [w for w in self._workers if w.task is None and w.child.alive()]
        for w in idle:  # all asked at once: their interpreters shut down side by side
            with contextlib.suppress(OSError, ValueError):
                w.child.stdin.close()
        for w in self._workers:
            if w in idle:
                w.stop()
            else:
                w.kill()
        self._workers.clear()

    def _spawn(self) -> _Worker:
        try:
            w = _Worker(self.config_json, self.threads_per_worker, self._events)
        except OSError as exc:
            raise BatchError(f"cannot start a batch worker process ({exc})") from exc
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
        pending = deque(tasks)
        if not self._workers:
            self.start()
        busy = 0
        while pending or busy:
            for w in self._workers:
                if w.ready and w.task is None and pending:
                    task = pending.popleft()
                    try:
                        w.assign(task, self.limits)
                    except (BrokenPipeError, OSError):  # died while idle: retry elsewhere
                        pending.appendleft(task)
                        w.task = None
                        continue
                    busy += 1
                    if self.on_start is not None:
                        self.on_start(task, w.pid)
            for w, msg in self._next_events():
                if w not in self._workers:  # what a replaced worker said last
                    continue
                for outcome in self._handle(w, msg):
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

    def _next_events(self) -> list[tuple[_Worker, list[Any] | None]]:
        """The events that arrive before the next deadline (at most a second's wait)."""
        try:
            events = [self._events.get(timeout=self._next_timeout())]
        except queue.Empty:
            return []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def _handle(self, w: _Worker, msg: list[Any] | None) -> Iterator[FileOutcome]:
        """One message from ``w`` (``None``: its output ended, it died or exited)."""
        if msg is None:
            yield from self._died(w)
            return
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

    def _died(self, w: _Worker) -> Iterator[FileOutcome]:
        """``w``'s output ended: record the file it held, start a replacement."""
        try:
            code: int | None = w.child.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:  # closed its stdout but still runs: stop it
            w.kill()
            code = w.child.returncode
        if not w.ready:
            raise BatchError(f"a batch worker process died while loading the models "
                             f"({describe_exit(code)}); run `vocalfusion analyze` on one file "
                             f"to see the error")
        if w.task is not None:
            task, elapsed = w.finish()
            log.warning("%s: worker %s died (%s); starting a new one", task.path, w.pid,
                        describe_exit(code))
            yield FileOutcome(
                index=task.index, path=task.path, status="error", error_class="WorkerDied",
                code="worker_died",
                message=f"{task.path}: the worker process died while "
                        f"{'decoding' if w.audio_s is None else 'analysing'} this file "
                        f"({describe_exit(code)})",
                elapsed_s=round(elapsed, 3), audio_s=w.audio_s, worker_pid=w.pid)
        self._replace(w)
