"""features.segments.alignment: words ↔ segments by midpoint (pure logic, no audio)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from features.errors import ParameterError
from features.segments.alignment import assign_to_segments, midpoint_s, segment_index_of
from features.segments.vad import Segment


@dataclass(frozen=True)
class W:
    text: str
    start_s: float
    end_s: float


SEGS = [Segment(0.0, 1.0), Segment(1.0, 2.0), Segment(3.0, 4.0)]


def test_midpoint_assignment() -> None:
    words = [W("a", 0.1, 0.3), W("b", 0.8, 1.4), W("c", 0.4, 1.8), W("d", 3.2, 3.9)]
    per, dropped = assign_to_segments(words, SEGS)
    # "b" starts in segment 0 but its midpoint (1.1) is in segment 1; "c" midpoint 1.1 too
    assert [[w.text for w in ws] for ws in per] == [["a"], ["b", "c"], ["d"]]
    assert dropped == []


def test_midpoint_exactly_on_boundaries_half_open() -> None:
    words = [W("start0", 0.0, 0.0),    # midpoint 0.0 = start of segment 0 → segment 0
             W("edge01", 0.9, 1.1),    # midpoint 1.0 = end of 0 = start of 1 → segment 1
             W("end1", 1.9, 2.1),      # midpoint 2.0 = end of segment 1, gap follows → dropped
             W("start2", 2.9, 3.1),    # midpoint 3.0 = start of segment 2 → segment 2
             W("end2", 4.0, 4.0)]      # midpoint 4.0 = end of the last segment → dropped
    per, dropped = assign_to_segments(words, SEGS)
    assert [[w.text for w in ws] for ws in per] == [["start0"], ["edge01"], ["start2"]]
    assert [w.text for w in dropped] == ["end1", "end2"]


def test_words_outside_all_segments_are_dropped_not_moved() -> None:
    words = [W("before", -0.5, -0.1), W("gap", 2.2, 2.8), W("after", 5.0, 5.5),
             W("straddle", 1.5, 3.5)]  # midpoint 2.5: in the gap although it overlaps both
    per, dropped = assign_to_segments(words, SEGS)
    assert all(ws == [] for ws in per)
    assert [w.text for w in dropped] == ["before", "gap", "after", "straddle"]


def test_order_kept_and_one_list_per_segment() -> None:
    words = [W(str(i), 3.0 + i / 10, 3.05 + i / 10) for i in range(9)]
    per, dropped = assign_to_segments(words, SEGS)
    assert len(per) == len(SEGS)
    assert [w.text for w in per[2]] == [str(i) for i in range(9)]
    assert not dropped


def test_empty_inputs() -> None:
    assert assign_to_segments([], SEGS) == ([[], [], []], [])
    per, dropped = assign_to_segments([W("a", 0.1, 0.2)], [])
    assert per == [] and [w.text for w in dropped] == ["a"]


def test_segment_index_of() -> None:
    assert segment_index_of(0.5, SEGS) == 0
    assert segment_index_of(1.0, SEGS) == 1
    assert segment_index_of(2.5, SEGS) is None
    assert segment_index_of(-1.0, SEGS) is None
    assert segment_index_of(4.0, SEGS) is None


def test_unsorted_or_overlapping_segments_rejected() -> None:
    with pytest.raises(ParameterError, match="sorted and non-overlapping"):
        assign_to_segments([], [Segment(1.0, 2.0), Segment(0.0, 1.5)])


def test_non_finite_word_time_rejected() -> None:
    with pytest.raises(ParameterError, match="finite"):
        midpoint_s(W("x", math.nan, 1.0))
