"""The prosody stream's Praat work in a child process, so it does not stall the other streams.

Why a process: Parselmouth holds Python's global interpreter lock (GIL) for the whole of every
Praat call, so while the prosody stream measures a segment no other Python thread of the
analysis runs: the transcript stream's Python code between CTranslate2 calls waits, and
Whisper's cores idle. Measured on the 2-core build machine (idle, 10-min synthetic file): the
default pipeline at real-time factor 0.066 with Praat in a thread, 0.054 with Praat in a child
process (``docs/performance.md``). The values are the same: the child runs the same functions
on the same float32 samples (tested).

The child is a fresh interpreter, ``python -m features.prosody._praat_worker`` (not a
``multiprocessing`` process: those re-import the user's ``__main__`` module, which runs an
unguarded script twice, and may not be started from daemonic processes). One worker per
Python process, shared by every :class:`~features.prosody.stream.ProsodyStream` in it
(server threads
take turns chunk by chunk); started on first use and again after it dies. Work goes to it in
chunks of at most :data:`CHUNK_AUDIO_S` seconds of audio (the segments' own samples, never the
whole file), so the file is never copied whole. The protocol is in
:mod:`features.prosody._praat_worker`; it carries samples and numbers only (JSON and raw floats, no
pickle).

A worker that dies (a crash inside Praat, the out-of-memory killer) costs only what it was
measuring: its chunk is measured again one segment per request in a fresh worker, and a segment
that kills that worker too gets the caller's "lost" value (every measure ``None`` with
:data:`LOST_REASON`); the rest of the file goes on.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from features.prosody._praat_worker import read_exact
from features.supervisor import Supervisor

__all__ = ["CHUNK_AUDIO_S", "LOST_REASON", "PraatWorker", "WorkerDied", "shared_worker"]

log = logging.getLogger(__name__)

#: seconds of audio sent to the worker per request
CHUNK_AUDIO_S = 30.0

LOST_REASON = ("the Praat worker process died while measuring this segment (a crash inside "
               "Praat, or the process was killed, e.g. out of memory)")

R = TypeVar("R")


class WorkerDied(RuntimeError):
    """The worker process ended (or could not be reached) before it answered."""


def _chunks(clips: Sequence[np.ndarray], sr: int,
            max_s: float) -> list[tuple[int, list[np.ndarray]]]:
    """Consecutive clips grouped into chunks of ≤ ``max_s`` s (a longer clip is alone)."""
    out: list[tuple[int, list[np.ndarray]]] = []
    start, total = 0, 0
    group: list[np.ndarray] = []
    limit = max_s * sr
    for i, clip in enumerate(clips):
        if group and total + clip.size > limit:
            out.append((start, group))
            start, group, total = i, [], 0
        group.append(clip)
        total += clip.size
    if group:
        out.append((start, group))
    return out


class PraatWorker:
    """One child process that runs Praat tasks; restarted when it dies. Thread-safe.

    The process itself (start, kill, reap, restart) is a :class:`~features.supervisor.Supervisor`'s.

    Parameters
    ----------
    argv : list of str, optional
        Command that starts the child (default ``python -m features.prosody._praat_worker``).
    """

    def __init__(self, argv: Sequence[str] | None = None) -> None:
        self._sup = Supervisor("features.prosody._praat_worker", argv=argv, name="Praat worker")
        self._lock = threading.Lock()

    @property
    def restarts(self) -> int:
        """Children replaced after they died."""
        return self._sup.restarts

    @property
    def pid(self) -> int | None:
        """Process id of the running child, if any."""
        return self._sup.pid

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the child if it is not running and wait until it answers.

        Raises ``OSError`` or :class:`WorkerDied` when it cannot be started or does not answer
        within ``timeout_s`` (then it is killed: e.g. a ``sys.executable`` that is not a plain
        Python, as in some embedded servers).
        """
        with self._lock:
            child = self._sup.child()
        with child.deadline(timeout_s):
            self.request("ping", [], 0, {})

    def shutdown(self) -> None:
        """Stop the child (a later request starts a new one)."""
        with self._lock:
            self._sup.shutdown()

    def request(self, task: str, clips: Sequence[np.ndarray], sr: int,
                settings: dict[str, Any]) -> list[Any]:
        """One request: ``task`` over ``clips``; one item per clip (JSON value or array).

        Raises :class:`WorkerDied` when the child ends before answering (it is then
        replaced on the next request) and ``RuntimeError`` when the task raised in the child.
        """
        with self._lock:
            child = self._sup.child()
            header = {"task": task, "sr": int(sr), "settings": settings,
                      "sizes": [int(c.size) for c in clips]}
            try:
                child.stdin.write(json.dumps(header).encode() + b"\n")
                for clip in clips:
                    child.stdin.write(np.ascontiguousarray(clip, dtype="<f4").data.cast("B"))
                child.stdin.flush()
                line = child.stdout.readline()
                if not line:
                    raise WorkerDied("the worker closed its output")
                answer = json.loads(line)
                if not answer.get("ok"):
                    raise RuntimeError(f"prosody worker: {answer.get('error')}")
                items = list(answer["items"])
                for i, n in enumerate(answer["array_sizes"]):
                    if n is not None:
                        items[i] = np.frombuffer(read_exact(child.stdout, 8 * int(n)),
                                                 dtype="<f8").copy()
                return items
            except (OSError, ValueError, EOFError, WorkerDied) as exc:
                code = self._sup.discard()
                log.warning("the Praat worker process died (exit status %s): %s", code, exc)
                raise WorkerDied(f"exit status {code}: {exc}") from exc

    def run_per_clip(self, task: str, clips: Sequence[np.ndarray], sr: int,
                     settings: dict[str, Any], lost: Callable[[int], R]) -> list[Any]:
        """``task`` over ``clips`` in the child, chunk by chunk; one item per clip, in order.

        A chunk whose worker dies is measured again clip by clip in fresh workers; a clip
        that kills the worker on its own gets ``lost(i)``.
        """
        results: list[Any] = [None] * len(clips)
        for i0, group in _chunks(clips, sr, CHUNK_AUDIO_S):
            try:
                results[i0:i0 + len(group)] = self.request(task, group, sr, settings)
            except WorkerDied:
                for j, clip in enumerate(group):  # alone, to find the clip that kills it
                    try:
                        results[i0 + j] = self.request(task, [clip], sr, settings)[0]
                    except WorkerDied:
                        results[i0 + j] = lost(i0 + j)
        return results


_SHARED: PraatWorker | None = None
_SHARED_LOCK = threading.Lock()


def shared_worker() -> PraatWorker:
    """The process's one :class:`PraatWorker` (created, not yet started, on first call)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = PraatWorker()
        return _SHARED
