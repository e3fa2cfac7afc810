"""Bounded resources of the HTTP service: admission gate, private temp dirs, job store.

Everything here is bounded and thread-safe (releases happen from worker threads):

* :class:`WorkGate` admits at most ``workers + queue`` requests at a time; the rest get 429.
  A slot is held until the analysis has really finished (not merely until the client stopped
  waiting), so timeouts and cancelled clients cannot pile up work behind the gate.
* :class:`TempDirs` makes one private directory (mode 0700) per request under a per-process
  root and removes it when the request's work is over; the root is removed at shutdown.
* :class:`JobStore` keeps at most ``max_jobs`` jobs; a finished job's result is kept until its
  ``expires_at`` (``ttl_s`` after it finished), never evicted earlier: a full store refuses new
  jobs instead.
"""

from __future__ import annotations

import math
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fusion.schema import SessionResult
from fusion.server.api_models import ErrorBody, JobInfo, JobState

__all__ = ["WorkGate", "TempDirs", "Job", "JobStore"]


class WorkGate:
    """At most ``workers`` analyses running and ``queue`` more waiting; others are refused.

    Parameters
    ----------
    workers : int
        Analyses that run at the same time (the executor's size).
    queue : int
        Admitted requests that may wait for a worker.
    """

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.queue = queue
        self._in_flight = 0
        self._lock = threading.Lock()
        self._mean_s = 5.0  # exponential moving average of one analysis' duration

    @property
    def capacity(self) -> int:
        return self.workers + self.queue

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def try_acquire(self) -> bool:
        with self._lock:
            if self._in_flight >= self.capacity:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def record_duration(self, seconds: float) -> None:
        with self._lock:
            self._mean_s = 0.8 * self._mean_s + 0.2 * max(0.0, seconds)

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: the expected time to drain the queue."""
        with self._lock:
            waves = max(1, self._in_flight) / max(1, self.workers)
            return int(min(120, max(1, round(waves * self._mean_s))))


class TempDirs:
    """Private per-request directories under one per-process root (all mode 0700)."""

    def __init__(self, parent: str | Path | None = None) -> None:
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="vocalfusion-server-",
                                          dir=str(parent) if parent is not None else None))
        self._lock = threading.Lock()
        self._live: set[Path] = set()

    def create(self) -> Path:
        d = Path(tempfile.mkdtemp(prefix="req-", dir=self.root))  # mkdtemp: mode 0700
        with self._lock:
            self._live.add(d)
        return d

    def remove(self, d: Path) -> None:
        shutil.rmtree(d, ignore_errors=True)
        with self._lock:
            self._live.discard(d)

    @property
    def live(self) -> int:
        with self._lock:
            return len(self._live)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        with self._lock:
            self._live.clear()


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Job:
    id: str
    filename: str
    created_at: datetime = field(default_factory=_now)
    status: JobState = JobState.QUEUED
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    result: SessionResult | None = None
    error: ErrorBody | None = None
    error_status: int | None = None
    finished_mono: float | None = None

    def info(self) -> JobInfo:
        return JobInfo(
            id=self.id, status=self.status, filename=self.filename, created_at=self.created_at,
            started_at=self.started_at, finished_at=self.finished_at, expires_at=self.expires_at,
            error=self.error,
            result_url=f"/v1/jobs/{self.id}/result" if self.status == JobState.SUCCEEDED
            else None)


class JobStore:
    """In-memory jobs, at most ``max_jobs``; finished ones expire ``ttl_s`` after finishing.

    A job is only ever removed when its ``expires_at`` has passed or when it is deleted: the
    ``expires_at`` a client was told is a promise. When the store is full of unexpired jobs,
    :meth:`add` returns ``None`` (the caller answers 429 with :meth:`retry_after_s`).
    """

    def __init__(self, max_jobs: int, ttl_s: float) -> None:
        self.max_jobs = max_jobs
        self.ttl_s = ttl_s
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def _sweep(self) -> None:
        now = time.monotonic()
        for jid in [j.id for j in self._jobs.values()
                    if j.finished_mono is not None and now - j.finished_mono > self.ttl_s]:
            del self._jobs[jid]

    def add(self, filename: str) -> Job | None:
        with self._lock:
            self._sweep()
            if len(self._jobs) >= self.max_jobs:
                return None
            job = Job(id=secrets.token_urlsafe(16), filename=filename)
            self._jobs[job.id] = job
            return job

    def retry_after_s(self) -> int | None:
        """Whole seconds until the first finished job expires (frees a place); None if no
        job has finished."""
        with self._lock:
            finished = [j.finished_mono for j in self._jobs.values()
                        if j.finished_mono is not None]
            if not finished:
                return None
            left = min(finished) + self.ttl_s - time.monotonic()
            return max(1, math.ceil(left))

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._sweep()
            return self._jobs.get(job_id)

    def delete(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.pop(job_id, None)

    def mark_running(self, job: Job) -> None:
        with self._lock:
            job.status = JobState.RUNNING
            job.started_at = _now()

    def finish(self, job: Job, *, result: SessionResult | None = None,
               error: ErrorBody | None = None, error_status: int | None = None) -> None:
        with self._lock:
            job.finished_at = _now()
            job.finished_mono = time.monotonic()
            job.expires_at = job.finished_at + timedelta(seconds=self.ttl_s)
            if result is not None:
                job.status, job.result = JobState.SUCCEEDED, result
            else:
                job.status, job.error, job.error_status = JobState.FAILED, error, error_status
