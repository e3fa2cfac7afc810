"""Judge Whisper's segments against the audio: invented text, or words over speech?

Whisper's own gates look at its output only: the no-speech probability of a 30-s window, the
average log-probability and the gzip compression ratio of the window's text. Each can be
fooled. A 100-Hz hum gave tiny.en "I'm going to go ahead and do that." at
``no_speech_prob`` 0.93 with an average log-probability of -0.95, just above the -1.0 gate,
so Whisper kept it; a reading in which every sentence is spoken twice compresses like a
repetition loop (ratio > 2.4), so Whisper's gate threw away real speech. This module adds
the evidence those gates lack: **is there speech under the words?** (Silero VAD regions),
and how sure was Whisper of the words themselves (mean word probability).

A segment is *suspect* when it is repetitive (compression ratio above the threshold),
Whisper thinks its window holds no speech (``no_speech_prob`` above the threshold), or its
mean word probability is low. A suspect segment whose words lie mostly outside speech is a
hallucination and is dropped. A repetitive segment over speech is decoded again in shorter
windows (there, a sentence said twice no longer compresses like a loop); if it is still
repetitive afterwards it is kept when Whisper was sure of its words and dropped otherwise,
and the seconds of speech that lose their words that way are reported.

All functions are pure: raw segments and times in seconds in, verdicts out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Verdict", "DropReport", "word_span", "mean_word_probability", "speech_seconds",
           "speech_fraction", "is_suspect", "judge_segment", "merge_intervals"]

Verdict = Literal["keep", "redecode", "hallucination", "repetitive"]

#: a suspect segment needs speech under at least this fraction of its words' span
MIN_SPEECH_FRACTION = 0.5
#: mean word probability below this makes a segment suspect (and a final repetitive one dropped)
MIN_WORD_PROBABILITY = 0.5
#: spans shorter than this are widened to it before the speech fraction is taken (s)
_MIN_SPAN_S = 0.2


class _Segment(Protocol):
    start: float
    end: float
    words: list[tuple[str, float | None, float | None, float | None]] | None
    no_speech_prob: float | None
    compression_ratio: float | None


class DropReport(BaseModel):
    """What the hallucination guards removed from a transcript (session fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_segments_dropped_repetitive: int = Field(
        0, ge=0, description="Whisper segments still repetitive after shorter re-decoding "
                             "and unsure of their words, or repetitive over no speech")
    n_segments_dropped_no_speech: int = Field(
        0, ge=0, description="suspect Whisper segments whose words lie outside speech")
    n_ranges_redecoded: int = Field(
        0, ge=0, description="repetitive stretches over speech decoded again in shorter windows")
    dropped_speech_s: float = Field(
        0.0, ge=0.0, description="seconds of speech (Silero VAD) under dropped segments: "
                                 "speech that lost its words")


def word_span(seg: _Segment) -> tuple[float, float]:
    """The time span of a segment's words (finite times), else the segment's own bounds."""
    times = [t for w in (seg.words or []) for t in (w[1], w[2])
             if t is not None and math.isfinite(t)]
    if not times:
        return float(seg.start), float(seg.end)
    return float(min(times)), float(max(times))


def mean_word_probability(seg: _Segment) -> float | None:
    """Mean of the segment's finite word probabilities; ``None`` when it has none."""
    probs = [float(w[3]) for w in (seg.words or [])
             if w[3] is not None and math.isfinite(w[3])]
    return sum(probs) / len(probs) if probs else None


def merge_intervals(intervals: Sequence[tuple[float, float]],
                    gap_s: float = 0.0) -> list[tuple[float, float]]:
    """Sorted union of intervals; neighbours closer than ``gap_s`` are joined.

    Examples
    --------
    >>> merge_intervals([(3.0, 4.0), (0.0, 1.0), (0.5, 2.0)])
    [(0.0, 2.0), (3.0, 4.0)]
    """
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a - out[-1][1] <= gap_s:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def speech_seconds(start_s: float, end_s: float,
                   regions: Sequence[tuple[float, float]]) -> float:
    """Seconds of ``[start_s, end_s]`` covered by the (non-overlapping) speech ``regions``.

    Examples
    --------
    >>> speech_seconds(1.0, 4.0, [(0.0, 1.5), (3.0, 5.0)])
    1.5
    """
    return float(sum(max(0.0, min(end_s, b) - max(start_s, a)) for a, b in regions))


def speech_fraction(seg: _Segment, regions: Sequence[tuple[float, float]]) -> float:
    """Fraction of the words' own time spans that lies in speech ``regions``.

    Each word (or, without word times, the segment) counts with its span widened to at least
    0.2 s around its middle, so zero-length words piled up at a window's end still count.

    Examples
    --------
    >>> from types import SimpleNamespace as S
    >>> seg = S(start=0.0, end=4.0, words=[("a", 0.0, 1.0, 0.9), ("b", 3.0, 4.0, 0.9)])
    >>> speech_fraction(seg, [(0.0, 1.0)])
    0.5
    """
    spans = [(float(w[1]), float(w[2])) for w in (seg.words or [])
             if w[1] is not None and w[2] is not None and math.isfinite(w[1])
             and math.isfinite(w[2]) and w[2] >= w[1]] or [word_span(seg)]
    total = covered = 0.0
    for a, b in spans:
        if b - a < _MIN_SPAN_S:
            mid = (a + b) / 2
            a, b = mid - _MIN_SPAN_S / 2, mid + _MIN_SPAN_S / 2
        total += b - a
        covered += speech_seconds(a, b, regions)
    return covered / total if total > 0 else 0.0


def is_suspect(seg: _Segment, *, compression_ratio_threshold: float,
               no_speech_threshold: float,
               min_word_probability: float = MIN_WORD_PROBABILITY) -> bool:
    """Whether a Whisper segment needs the audio's evidence: repetitive, in a window Whisper
    thinks holds no speech, or with a low mean word probability."""
    repetitive = seg.compression_ratio is not None and \
        seg.compression_ratio > compression_ratio_threshold
    mean_p = mean_word_probability(seg)
    unsure = mean_p is not None and mean_p < min_word_probability
    no_speech = seg.no_speech_prob is not None and seg.no_speech_prob > no_speech_threshold
    return repetitive or unsure or no_speech


def judge_segment(
    seg: _Segment,
    regions: Sequence[tuple[float, float]],
    *,
    compression_ratio_threshold: float,
    no_speech_threshold: float,
    final: bool,
    min_speech_fraction: float = MIN_SPEECH_FRACTION,
    min_word_probability: float = MIN_WORD_PROBABILITY,
) -> Verdict:
    """Decide what to do with one Whisper segment.

    Parameters
    ----------
    seg : raw Whisper segment
        With ``start``, ``end``, ``words`` (text, start, end, probability),
        ``no_speech_prob`` and ``compression_ratio``.
    regions : sequence of (start_s, end_s)
        Speech regions of the file (Silero VAD), sorted and non-overlapping.
    compression_ratio_threshold, no_speech_threshold : float
        Whisper's gates (``transcript.*``).
    final : bool
        ``False`` on the first pass (a repetitive segment over speech may be decoded again in
        shorter windows); ``True`` for segments of that shorter decoding.
    min_speech_fraction, min_word_probability : float
        See the module docstring.

    Returns
    -------
    {"keep", "redecode", "hallucination", "repetitive"}
        ``hallucination`` and ``repetitive`` mean: drop the segment.

    Examples
    --------
    >>> from types import SimpleNamespace as S
    >>> hum = S(start=18.6, end=20.0, words=[("I'm", 18.6, 19.98, 0.11), ("going", 19.98,
    ...         19.98, 0.14)], no_speech_prob=0.93, compression_ratio=2.3)
    >>> judge_segment(hum, [], compression_ratio_threshold=2.4, no_speech_threshold=0.6,
    ...               final=False)
    'hallucination'
    """
    if not is_suspect(seg, compression_ratio_threshold=compression_ratio_threshold,
                      no_speech_threshold=no_speech_threshold,
                      min_word_probability=min_word_probability):
        return "keep"
    repetitive = seg.compression_ratio is not None and \
        seg.compression_ratio > compression_ratio_threshold
    mean_p = mean_word_probability(seg)
    unsure = mean_p is not None and mean_p < min_word_probability
    no_speech = seg.no_speech_prob is not None and seg.no_speech_prob > no_speech_threshold
    if speech_fraction(seg, regions) < min_speech_fraction:
        return "repetitive" if repetitive and not no_speech else "hallucination"
    if repetitive:
        if not final:
            return "redecode"
        return "repetitive" if (mean_p is None or unsure) else "keep"
    return "keep"
