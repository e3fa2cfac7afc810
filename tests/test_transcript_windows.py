"""Windows and spans: how the transcript stream cuts speech clips for Whisper (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.transcript.windows import (
    WHISPER_WINDOW_S,
    Span,
    clips_in_span,
    speech_windows,
    transcription_spans,
)


def test_windows_cut_only_at_segment_boundaries() -> None:
    segs = [(0.0, 12.0), (12.4, 25.0), (25.3, 33.0), (40.0, 41.0)]
    clips = [(0.0, 33.0), (40.0, 41.0)]
    wins = speech_windows(clips, segs)
    assert wins == [(0.0, 25.3), (25.3, 33.0), (40.0, 41.0)]
    cuts = {t for s in segs for t in s}
    inner = [w[0] for w in wins if w[0] not in (c[0] for c in clips)]
    assert all(t in cuts for t in inner)


def test_a_segment_longer_than_a_window_is_cut_into_equal_parts() -> None:
    wins = speech_windows([(10.0, 85.0)], [(10.0, 85.0)])
    assert wins == [(10.0, 35.0), (35.0, 60.0), (60.0, 85.0)]


def test_window_length_validated() -> None:
    with pytest.raises(ValueError, match="max_s"):
        speech_windows([(0.0, 1.0)], [(0.0, 1.0)], max_s=0.05)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.05, 40.0), st.floats(0.0, 5.0)), min_size=1,
                max_size=30),
       st.floats(0.0, 3.0))
def test_windows_tile_the_clips(parts: list[tuple[float, float]], merge_gap: float) -> None:
    """Property: every window lies in one clip, is ≤ 30 s, and windows cover the clips."""
    segs, t = [], 0.0
    for length, gap in parts:
        segs.append((round(t, 3), round(t + length, 3)))
        t += length + gap
    clips: list[list[float]] = []  # segments merged across gaps ≤ merge_gap, like speech_clips
    for a, b in segs:
        if clips and a - clips[-1][1] <= merge_gap:
            clips[-1][1] = b
        else:
            clips.append([a, b])
    clip_t = [(a, b) for a, b in clips]
    wins = speech_windows(clip_t, segs)
    assert wins == sorted(wins)
    for (_, b), (c, _) in zip(wins, wins[1:], strict=False):
        assert b <= c + 1e-9
    for a, b in wins:
        assert b - a <= WHISPER_WINDOW_S + 1e-3
        assert any(ca - 1e-3 <= a and b <= cb + 1e-3 for ca, cb in clip_t)
    covered = sum(b - a for a, b in wins)
    total = sum(b - a for a, b in clip_t)
    assert covered == pytest.approx(total, abs=0.1 * len(segs) + 1e-3)


def test_spans_bound_the_audio_per_call() -> None:
    wins = [(0.0, 30.0), (30.0, 55.0), (70.0, 95.0), (200.0, 229.0), (229.0, 250.0)]
    spans = transcription_spans(wins, max_span_s=100.0)
    assert [(s.start_s, s.end_s) for s in spans] == [(0.0, 95.0), (200.0, 250.0)]
    assert [w for s in spans for w in s.windows] == wins  # every window once, in order
    assert all(s.end_s - s.start_s <= 100.0 for s in spans)
    one = transcription_spans(wins, max_span_s=1e9)
    assert len(one) == 1 and one[0].windows == tuple(wins)
    assert transcription_spans([], max_span_s=60.0) == []


def test_clips_are_cut_to_their_span() -> None:
    span = Span(20.0, 80.0, ((20.0, 50.0), (50.0, 80.0)))
    assert clips_in_span([(0.0, 100.0)], span) == [(20.0, 80.0)]
    assert clips_in_span([(0.0, 10.0), (19.95, 20.05), (30.0, 40.0)], span) == [(30.0, 40.0)]


def test_examples_in_docstrings_hold() -> None:
    import doctest

    import features.transcript.windows as module

    assert doctest.testmod(module).failed == 0
