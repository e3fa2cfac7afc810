"""Words ↔ segments: assign timed items to the segment that holds their midpoint.

Whisper runs once on the whole file; its words carry times. Each word belongs to the segment
``[start_s, end_s)`` that contains its midpoint ``(start_s + end_s) / 2``. The interval is
half-open, as :class:`features.segments.vad.Segment` is: a midpoint exactly on the boundary of two
adjacent segments goes to the later one, and a midpoint exactly on the end of the last segment
(or of a segment followed by a gap) belongs to no segment. Items whose midpoint lies inside no
segment are returned separately (dropped), never attached to the nearest segment.

This module does nothing else: no clamping, no text handling.

Examples
--------
>>> from features.segments.vad import Segment
>>> from dataclasses import dataclass
>>> @dataclass
... class W:
...     start_s: float
...     end_s: float
>>> per_segment, dropped = assign_to_segments(
...     [W(0.1, 0.3), W(0.9, 1.3), W(2.5, 2.7)], [Segment(0.0, 1.0), Segment(1.0, 2.0)])
>>> [len(ws) for ws in per_segment], len(dropped)
([1, 1], 1)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Protocol, TypeVar

from features.errors import ParameterError
from features.segments.vad import Segment

__all__ = ["Timed", "midpoint_s", "segment_index_of", "assign_to_segments"]


class Timed(Protocol):
    """Anything with ``start_s`` and ``end_s`` in seconds (a transcript word, a token...)."""

    @property
    def start_s(self) -> float: ...

    @property
    def end_s(self) -> float: ...


T = TypeVar("T", bound=Timed)


def midpoint_s(item: Timed) -> float:
    """``(start_s + end_s) / 2`` in seconds; raises ``ParameterError`` on non-finite times."""
    start, end = float(item.start_s), float(item.end_s)
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ParameterError(f"item times must be finite; got start_s={start}, end_s={end}")
    return 0.5 * (start + end)


def _check_segments(segments: Sequence[Segment]) -> list[float]:
    starts: list[float] = []
    for k, seg in enumerate(segments):
        if k and seg.start_s < segments[k - 1].end_s:
            raise ParameterError(
                f"segments must be sorted and non-overlapping; segment {k} starts at "
                f"{seg.start_s:.3f} s, before segment {k - 1} ends at "
                f"{segments[k - 1].end_s:.3f} s")
        starts.append(seg.start_s)
    return starts


def segment_index_of(t_s: float, segments: Sequence[Segment],
                     _starts: list[float] | None = None) -> int | None:
    """Index of the segment ``[start_s, end_s)`` that contains time ``t_s``, or ``None``.

    Parameters
    ----------
    t_s : float
        Time in seconds.
    segments : sequence of Segment
        Sorted, non-overlapping (validated; ``ParameterError`` otherwise).
    """
    starts = _starts if _starts is not None else _check_segments(segments)
    k = bisect.bisect_right(starts, t_s) - 1
    if k < 0:
        return None
    return k if segments[k].contains(t_s) else None


def assign_to_segments(items: Sequence[T], segments: Sequence[Segment]
                       ) -> tuple[list[list[T]], list[T]]:
    """Group timed items by the segment that contains their midpoint.

    Parameters
    ----------
    items : sequence of objects with ``start_s`` and ``end_s`` (seconds)
        In any order; the order is kept within each segment.
    segments : sequence of Segment
        Sorted, non-overlapping half-open intervals ``[start_s, end_s)``.

    Returns
    -------
    per_segment : list of list
        ``per_segment[k]`` holds the items whose midpoint lies in ``segments[k]``; exactly one
        list per segment, empty where none.
    dropped : list
        Items whose midpoint lies inside no segment.
    """
    starts = _check_segments(segments)
    per_segment: list[list[T]] = [[] for _ in segments]
    dropped: list[T] = []
    for item in items:
        k = segment_index_of(midpoint_s(item), segments, starts)
        if k is None:
            dropped.append(item)
        else:
            per_segment[k].append(item)
    return per_segment, dropped
