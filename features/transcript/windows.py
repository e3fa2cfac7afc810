"""How the transcript stream cuts the file's speech for Whisper: windows and spans.

Whisper hears 30-s windows. The transcript stream gives it only the speech clips that the
speech gate lets through (:func:`features.transcript.stream.speech_clips`), and cuts those clips in
two ways:

* **windows** (:func:`speech_windows`): pieces of at most 30 s, cut only at the boundaries of
  our segments (never inside a segment unless the segment itself is longer than 30 s), each
  inside one clip. The batched decoder (faster-whisper ``BatchedInferencePipeline``) decodes
  several windows at once.
* **spans** (:func:`transcription_spans`): consecutive windows grouped into parts of the file
  of at most ``max_span_s`` seconds. The stream transcribes one span at a time, so the
  log-mel spectrogram and the decoder's inputs are computed for a few minutes of audio at a
  time and memory does not grow with the length of the file.

All functions are pure: times in seconds in, times in seconds out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["WHISPER_WINDOW_S", "Span", "speech_windows", "transcription_spans", "clips_in_span"]

#: the length of Whisper's input window (s)
WHISPER_WINDOW_S = 30.0
#: pieces shorter than this are left out (less than a few mel frames)
_MIN_PIECE_S = 0.1


@dataclass(frozen=True)
class Span:
    """A part of the file transcribed in one call, with the windows and clips inside it.

    ``start_s``/``end_s`` bound the windows; the audio handed to Whisper is cut with a margin
    (see :func:`transcription_spans`).
    """

    start_s: float
    end_s: float
    windows: tuple[tuple[float, float], ...]


def _pieces(clip: tuple[float, float], cuts: Sequence[float],
            max_s: float) -> list[tuple[float, float]]:
    """``clip`` split at the segment boundaries inside it, then into parts ≤ ``max_s``."""
    a, b = clip
    inner = sorted(t for t in set(cuts) if a < t < b)
    out: list[tuple[float, float]] = []
    for p, q in zip([a, *inner], [*inner, b], strict=True):
        n = max(1, math.ceil((q - p) / max_s - 1e-9))
        step = (q - p) / n
        out.extend((p + i * step, p + (i + 1) * step) for i in range(n))
    return out


def speech_windows(
    clips: Sequence[tuple[float, float]],
    segment_bounds: Sequence[tuple[float, float]],
    *,
    max_s: float = WHISPER_WINDOW_S,
) -> list[tuple[float, float]]:
    """Cut speech clips into windows Whisper can decode whole.

    Parameters
    ----------
    clips : sequence of (start_s, end_s)
        Sorted, non-overlapping speech clips.
    segment_bounds : sequence of (start_s, end_s)
        Our analysis segments; their boundaries are the only places a clip is cut (a segment
        longer than ``max_s`` is cut into equal parts).
    max_s : float
        Longest window (Whisper's 30 s).

    Returns
    -------
    list of (start_s, end_s)
        Sorted, non-overlapping windows, each inside one clip and at most ``max_s`` long;
        together they cover every clip (less pieces shorter than 0.1 s).

    Examples
    --------
    >>> speech_windows([(0.0, 50.0)], [(0.0, 20.0), (20.5, 40.0), (40.5, 50.0)])
    [(0.0, 20.5), (20.5, 50.0)]
    """
    if max_s <= _MIN_PIECE_S:
        raise ValueError(f"max_s must exceed {_MIN_PIECE_S} s; got {max_s}")
    cuts = [t for bounds in segment_bounds for t in bounds]
    windows: list[tuple[float, float]] = []
    for clip in clips:
        current: list[float] | None = None
        for p, q in _pieces(clip, cuts, max_s):
            if current is not None and q - current[0] <= max_s + 1e-9:
                current[1] = q
                continue
            if current is not None:
                windows.append((current[0], current[1]))
            current = [p, q]
        if current is not None:
            windows.append((current[0], current[1]))
    return [(round(a, 3), round(b, 3)) for a, b in windows if b - a >= _MIN_PIECE_S]


def transcription_spans(
    windows: Sequence[tuple[float, float]],
    *,
    max_span_s: float,
) -> list[Span]:
    """Group consecutive windows into spans of at most ``max_span_s`` seconds.

    A span runs from its first window's start to its last window's end; a window longer than
    ``max_span_s`` (only possible when ``max_span_s`` < 30 s) is a span of its own.

    Examples
    --------
    >>> [(s.start_s, s.end_s, len(s.windows)) for s in transcription_spans(
    ...     [(0, 30), (31, 60), (70, 95)], max_span_s=65)]
    [(0, 60, 2), (70, 95, 1)]
    """
    spans: list[Span] = []
    group: list[tuple[float, float]] = []
    for w in windows:
        if group and w[1] - group[0][0] > max_span_s:
            spans.append(Span(group[0][0], group[-1][1], tuple(group)))
            group = []
        group.append((w[0], w[1]))
    if group:
        spans.append(Span(group[0][0], group[-1][1], tuple(group)))
    return spans


def clips_in_span(clips: Sequence[tuple[float, float]], span: Span) -> list[tuple[float, float]]:
    """The parts of ``clips`` that lie inside ``span`` (for sequential decoding of a span).

    Examples
    --------
    >>> clips_in_span([(0.0, 50.0), (55.0, 70.0)], Span(20.0, 60.0, ((20.0, 50.0), (55.0, 60.0))))
    [(20.0, 50.0), (55.0, 60.0)]
    """
    out = []
    for a, b in clips:
        lo, hi = max(a, span.start_s), min(b, span.end_s)
        if hi - lo >= _MIN_PIECE_S:
            out.append((lo, hi))
    return out
