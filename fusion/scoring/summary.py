"""Segment scores → session summary.

Definitions (all over *scored* segments, i.e. those whose score value is not ``None``;
weights are segment durations in seconds):

mean
    Duration-weighted mean ``Σ d_i v_i / Σ d_i``.
p90
    Duration-weighted 90th percentile: the smallest score ``v`` such that the segments with
    score ``<= v`` hold at least 90 % of the scored time.
peak, peak_segment
    The largest segment score and that segment's index (first one on ties).
fraction_above_threshold
    Scored time with ``value > threshold`` divided by scored time; only where the summary's
    ``reference`` is ``profile`` or ``population`` (against the session's own baseline about
    half of any session lies above the middle by construction, so the figure would say
    nothing): ``None`` for ``session``.
reference
    The ``reference`` of most scored time (``None`` when the segments carry none).
trend_per_min
    Weighted least-squares slope of score against segment midpoint (minutes), weights =
    durations; ``None`` with fewer than 2 scored segments.
mean_confidence
    Duration-weighted mean confidence of the scored segments.
coverage
    Per stream, the fraction of speech time (all segments) that stream measured
    (:func:`fusion.scoring.vector.stream_measured`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from fusion.schema import ScoreSummary, SegmentResult, SessionSummary
from fusion.scoring.vector import stream_measured

__all__ = [
    "weighted_quantile",
    "weighted_slope",
    "summarize_score",
    "stream_coverage",
    "session_summary",
]


def weighted_quantile(values: npt.ArrayLike, weights: npt.ArrayLike, q: float) -> float:
    """Smallest value whose cumulative weight share reaches ``q`` (inverted weighted CDF).

    Examples
    --------
    >>> weighted_quantile([0.1, 0.9], [9.0, 1.0], 0.9)
    0.1
    >>> weighted_quantile([0.1, 0.9], [8.0, 2.0], 0.9)
    0.9
    """
    v = np.asarray(values, dtype=float)
    w = np.asarray(weights, dtype=float)
    if v.size == 0 or v.shape != w.shape or np.any(w < 0) or not w.sum() > 0:
        raise ValueError("weighted_quantile needs equal-length values and non-negative weights "
                         "with a positive sum")
    order = np.argsort(v, kind="stable")
    cw = np.cumsum(w[order]) / w.sum()
    i = int(np.searchsorted(cw, q - 1e-12, side="left"))
    return float(v[order][min(i, v.size - 1)])


def weighted_slope(x: npt.ArrayLike, y: npt.ArrayLike, w: npt.ArrayLike) -> float | None:
    """Weighted least-squares slope of ``y`` on ``x``; ``None`` if ``x`` has no spread."""
    xa, ya, wa = (np.asarray(a, dtype=float) for a in (x, y, w))
    if xa.size < 2 or not wa.sum() > 0:
        return None
    xm = np.average(xa, weights=wa)
    ym = np.average(ya, weights=wa)
    sxx = float(np.sum(wa * (xa - xm) ** 2))
    if not sxx > 1e-15:
        return None
    return float(np.sum(wa * (xa - xm) * (ya - ym)) / sxx)


def summarize_score(segments: Sequence[SegmentResult], target: str, *,
                    threshold: float) -> ScoreSummary | None:
    """Summary of one score (``"stress"`` or ``"depression"``); ``None`` if nothing scored."""
    rows = []
    for seg in segments:
        if seg.scores is None:
            continue
        detail = getattr(seg.scores, target)
        if detail.value is None or seg.duration_s <= 0:
            continue
        rows.append((seg, float(detail.value), float(detail.confidence)))
    if not rows:
        return None
    ref_time: dict[str, float] = {}
    for seg, _, _ in rows:
        ref = getattr(getattr(seg.scores, target), "reference", None)
        if ref is not None:
            ref_time[ref] = ref_time.get(ref, 0.0) + seg.duration_s
    reference = max(ref_time, key=lambda r: ref_time[r]) if ref_time else None
    d = np.array([s.duration_s for s, _, _ in rows])
    v = np.array([val for _, val, _ in rows])
    c = np.array([conf for _, _, conf in rows])
    mid_min = np.array([(s.start_s + s.end_s) / 2.0 / 60.0 for s, _, _ in rows])
    peak_i = int(np.argmax(v))
    return ScoreSummary(
        mean=float(np.average(v, weights=d)),
        p90=weighted_quantile(v, d, 0.9),
        peak=float(v[peak_i]),
        peak_segment=rows[peak_i][0].index,
        fraction_above_threshold=(None if reference == "session"
                                  else float(d[v > threshold].sum() / d.sum())),
        threshold=threshold,
        trend_per_min=weighted_slope(mid_min, v, d),
        mean_confidence=float(np.average(c, weights=d)),
        reference=reference,  # type: ignore[arg-type]
    )


def stream_coverage(segments: Iterable[SegmentResult], *, streams: Iterable[str],
                    min_words: int = 5) -> dict[str, float]:
    """Fraction of speech time each of ``streams`` measured (see module docstring)."""
    segs = list(segments)
    total = sum(s.duration_s for s in segs)
    names = list(dict.fromkeys(streams))
    if total <= 0:
        return {}
    covered = dict.fromkeys(names, 0.0)
    for seg in segs:
        measured = stream_measured(seg, min_words=min_words)
        for name in names:
            if measured.get(name, False):
                covered[name] += seg.duration_s
    return {name: round(covered[name] / total, 6) for name in names}


def session_summary(segments: Sequence[SegmentResult], *, threshold: float,
                    streams: Iterable[str], min_words: int = 5,
                    scored: bool = True) -> SessionSummary:
    """The :class:`~fusion.schema.SessionSummary` of a session's segments.

    With ``scored=False`` (insufficient speech) only ``n_segments``, ``speech_s`` and
    ``coverage`` are filled; the score summaries are ``None``.
    """
    speech_s = float(sum(s.duration_s for s in segments))
    return SessionSummary(
        speech_s=round(speech_s, 6),
        n_segments=len(segments),
        stress=summarize_score(segments, "stress", threshold=threshold) if scored else None,
        depression=(summarize_score(segments, "depression", threshold=threshold)
                    if scored else None),
        coverage=stream_coverage(segments, streams=streams, min_words=min_words),
    )
