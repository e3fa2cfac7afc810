"""Child process that runs the prosody stream's Praat work (see :mod:`features.prosody.worker`).

Started as ``python -m features.prosody._praat_worker``; serves requests until its stdin closes.

Protocol (stdin → stdout), one request at a time:

* request: one JSON line ``{"task": NAME, "sr": int, "settings": {...}, "sizes": [n, ...]}``
  followed by ``sum(sizes)`` little-endian float32 samples (the clips, one after the other);
* answer: one JSON line ``{"ok": true, "items": [...], "array_sizes": [m or null, ...]}``
  followed by the float64 arrays of the items that are arrays, or ``{"ok": false, "error":
  "..."}`` when the task raised (the parent fails the stream for that file with this text).

Tasks (:data:`TASKS`): ``ping`` (answers ``[pid]``), ``first_pass`` (voiced F0 of each clip,
arrays), ``measure`` (``{"row": ProsodyMeasures as a dict, "error": str | None}`` per clip),
``contours`` (only when the caller asked for contours: the frame values of each clip, a flat
array of :data:`features.prosody.contours.CONTOUR_COLUMNS` rows; settings ``pitch_floor_hz``,
``pitch_ceiling_hz``).
Nothing here is loaded from a user: the only input is samples and numbers from the parent.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any, BinaryIO

import numpy as np

from features.supervisor import child_streams

#: an item per clip: a JSON-able value, or an array (sent as float64 after the header)
Items = list[Any]


def _ping(clips: Sequence[np.ndarray], sr: int, settings: dict[str, Any]) -> Items:
    return [os.getpid()]


def _first_pass(clips: Sequence[np.ndarray], sr: int, settings: dict[str, Any]) -> Items:
    from features.prosody.stream import first_pass_f0

    return list(first_pass_f0(clips, sr))


def _measure(clips: Sequence[np.ndarray], sr: int, settings: dict[str, Any]) -> Items:
    from features.prosody.stream import measure_clips

    return [{"row": row.model_dump(mode="json"), "error": error}
            for row, error in measure_clips(clips, sr, settings)]


def _contours(clips: Sequence[np.ndarray], sr: int, settings: dict[str, Any]) -> Items:
    from features.prosody.contours import clip_contours

    lo, hi = float(settings["pitch_floor_hz"]), float(settings["pitch_ceiling_hz"])
    return [clip_contours(clip, sr, lo, hi).ravel() for clip in clips]


TASKS: dict[str, Callable[[Sequence[np.ndarray], int, dict[str, Any]], Items]] = {
    "ping": _ping, "first_pass": _first_pass, "measure": _measure, "contours": _contours}


def run_task(task: str, clips: Sequence[np.ndarray], sr: int,
             settings: dict[str, Any]) -> Items:
    """Run ``task`` here (the parent uses this too when Praat runs in its own process)."""
    return TASKS[task](clips, sr, settings)


def read_exact(stream: IO[bytes], n: int) -> bytes:
    """Exactly ``n`` bytes from ``stream``; ``EOFError`` when it ends first (both sides)."""
    data = stream.read(n)
    if len(data) != n:
        raise EOFError(f"expected {n} bytes, got {len(data)}")
    return data


def write_answer(out: BinaryIO, items: Items) -> None:
    """The answer line and the arrays after it."""
    sizes = [int(x.size) if isinstance(x, np.ndarray) else None for x in items]
    values = [None if isinstance(x, np.ndarray) else x for x in items]
    out.write(json.dumps({"ok": True, "items": values, "array_sizes": sizes}).encode() + b"\n")
    for x in items:
        if isinstance(x, np.ndarray):
            out.write(np.ascontiguousarray(x, dtype="<f8").data.cast("B"))
    out.flush()


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """Answer requests until ``inp`` ends."""
    while True:
        line = inp.readline()
        if not line:
            return
        header = json.loads(line)
        sizes = [int(n) for n in header.get("sizes", [])]
        samples = np.frombuffer(read_exact(inp, 4 * sum(sizes)), dtype="<f4")
        clips = np.split(samples, np.cumsum(sizes)[:-1]) if sizes else []
        try:
            items = run_task(str(header["task"]), clips, int(header.get("sr", 0)),
                             dict(header.get("settings", {})))
        except Exception as exc:  # a bug, not a crash: say so and keep serving
            out.write(json.dumps({"ok": False,
                                  "error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
            out.flush()
            continue
        write_answer(out, items)


def main() -> int:
    # SIGINT ignored, exit on the parent's death, answers on a private copy of stdout
    requests, answers = child_streams()
    serve(requests, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
