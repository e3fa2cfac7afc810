"""Session summary formulas against hand-computed values."""

from __future__ import annotations

import pytest
from _fusion_factory import make_segment

from fusion.schema import ScoreDetail, SegmentResult, SegmentScores
from fusion.scoring.summary import (
    session_summary,
    stream_coverage,
    summarize_score,
    weighted_quantile,
    weighted_slope,
)


def _scored(index: int, start: float, dur: float, stress: float | None,
            conf: float = 1.0, **kw) -> SegmentResult:
    seg = make_segment(index, start_s=start, duration_s=dur, **kw)
    detail = ScoreDetail(value=stress, logit=None, confidence=conf if stress is not None else 0)
    return seg.model_copy(update={"scores": SegmentScores(stress=detail, depression=detail)})


def test_summary_hand_computed() -> None:
    segs = [
        _scored(0, 0.0, 2.0, 0.2, conf=0.5),     # mid 1 s
        _scored(1, 3.0, 6.0, 0.6, conf=1.0),     # mid 6 s
        _scored(2, 10.0, 2.0, 0.9, conf=0.8),    # mid 11 s
        _scored(3, 13.0, 4.0, None),             # unscored: ignored
    ]
    s = summarize_score(segs, "stress", threshold=0.5)
    assert s.mean == pytest.approx((2 * 0.2 + 6 * 0.6 + 2 * 0.9) / 10)
    # cumulative time share by score: 0.2 → 0.2, 0.6 → 0.8, 0.9 → 1.0 → p90 = 0.9
    assert s.p90 == pytest.approx(0.9)
    assert s.peak == pytest.approx(0.9) and s.peak_segment == 2
    assert s.fraction_above_threshold == pytest.approx(8 / 10)
    assert s.mean_confidence == pytest.approx((2 * 0.5 + 6 * 1.0 + 2 * 0.8) / 10)
    # weighted least squares slope, x in minutes
    x = [1 / 60, 6 / 60, 11 / 60]
    w = [2.0, 6.0, 2.0]
    y = [0.2, 0.6, 0.9]
    xm = sum(a * b for a, b in zip(w, x, strict=True)) / 10
    ym = sum(a * b for a, b in zip(w, y, strict=True)) / 10
    slope = (sum(wi * (xi - xm) * (yi - ym) for wi, xi, yi in zip(w, x, y, strict=True))
             / sum(wi * (xi - xm) ** 2 for wi, xi in zip(w, x, strict=True)))
    assert s.trend_per_min == pytest.approx(slope)
    assert s.threshold == 0.5


def test_threshold_is_strictly_above() -> None:
    segs = [_scored(0, 0.0, 1.0, 0.5), _scored(1, 2.0, 1.0, 0.51)]
    assert summarize_score(segs, "stress", threshold=0.5).fraction_above_threshold == 0.5


def test_single_segment_has_no_trend_and_nothing_scored_is_none() -> None:
    s = summarize_score([_scored(0, 0.0, 3.0, 0.4)], "stress", threshold=0.5)
    assert s.trend_per_min is None and s.p90 == pytest.approx(0.4)
    assert summarize_score([_scored(0, 0.0, 3.0, None)], "stress", threshold=0.5) is None


def test_weighted_helpers() -> None:
    assert weighted_quantile([3.0, 1.0, 2.0], [1.0, 1.0, 1.0], 0.5) == 2.0
    assert weighted_quantile([0.1, 0.9], [9.0, 1.0], 0.9) == 0.1
    assert weighted_slope([0, 1, 2], [1, 3, 5], [1, 1, 1]) == pytest.approx(2.0)
    assert weighted_slope([1, 1], [0, 1], [1, 1]) is None
    with pytest.raises(ValueError):
        weighted_quantile([], [], 0.5)


def test_coverage_by_speech_time() -> None:
    segs = [make_segment(0, duration_s=3.0),
            make_segment(1, duration_s=1.0, emotion=False, sentiment=False)]
    cov = stream_coverage(segs, streams=["prosody", "emotion", "transcript", "sentiment",
                                         "lexical"])
    assert cov == {"prosody": 1.0, "emotion": 0.75, "transcript": 0.75, "sentiment": 0.75,
                   "lexical": 0.75}
    summ = session_summary(segs, threshold=0.5, streams=["prosody"], scored=False)
    assert summ.speech_s == pytest.approx(4.0) and summ.n_segments == 2
    assert summ.stress is None
