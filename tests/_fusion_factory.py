"""Builders of SegmentResult objects for the fusion tests (fast: no audio, no models).

The numbers are hand-chosen measurement values, not model output; tests that need real
measurements use the pipeline on espeak-ng speech (test_fusion_e2e.py).
"""

from __future__ import annotations

from typing import Any

from features.emotion.stream import EmotionMeasures
from features.prosody.stream import ProsodyMeasures
from features.sentiment.stream import SentimentMeasures
from features.transcript.stream import SegmentTranscript
from fusion.schema import SegmentResult

BASE_PROSODY: dict[str, Any] = {
    "f0_mean_st": 8.0, "f0_sd_st": 2.5, "f0_range_st": 8.0, "jitter_local_pct": 1.5,
    "shimmer_local_pct": 8.0, "hnr_db": 12.0, "cpps_db": 11.0, "intensity_mean_db": 65.0,
    "intensity_sd_db": 8.0, "voiced_fraction": 0.6, "speech_rate_syl_per_s": 4.0,
    "articulation_rate_syl_per_s": 5.0, "pause_count": 2, "pause_ratio": 0.15,
    "mean_pause_s": 0.5,
}
BASE_EMOTION: dict[str, float] = {"neutral": 0.4, "happy": 0.2, "sad": 0.2, "angry": 0.1,
                                  "fearful": 0.1}
BASE_SENTIMENT: dict[str, Any] = {
    "negative": 0.1, "neutral": 0.75, "positive": 0.15, "label": "neutral", "compound": 0.1,
    "word_count": 12, "first_person_singular_rate": 0.05, "absolutist_rate": 0.01,
    "negative_emotion_word_rate": 0.02,
}


def make_segment(index: int, *, start_s: float | None = None, duration_s: float = 4.0,
                 prosody: dict[str, Any] | None | bool = True,
                 emotion: dict[str, float] | None | bool = True,
                 arousal: float | None = 0.5,
                 sentiment: dict[str, Any] | None | bool = True) -> SegmentResult:
    """A segment with baseline values; pass dicts to override fields, False to drop a stream."""
    start = index * (duration_s + 1.0) if start_s is None else start_s
    pr = em = se = tr = None
    if prosody is not False and prosody is not None:
        pr = ProsodyMeasures(**{**BASE_PROSODY, **(prosody if isinstance(prosody, dict) else {})})
    if emotion is not False and emotion is not None:
        probs = {**BASE_EMOTION, **(emotion if isinstance(emotion, dict) else {})}
        em = EmotionMeasures(probabilities=probs, top_label=max(probs, key=probs.get),
                             arousal=arousal, n_windows=1)
    if sentiment is not False and sentiment is not None:
        s = {**BASE_SENTIMENT, **(sentiment if isinstance(sentiment, dict) else {})}
        se = SentimentMeasures(**s)
        tr = SegmentTranscript(text="w " * s["word_count"], word_count=s["word_count"])
    return SegmentResult(index=index, start_s=start, end_s=start + duration_s, prosody=pr,
                         emotion=em, transcript=tr, sentiment=se)


def make_session(n: int = 6, **kw: Any) -> list[SegmentResult]:
    """``n`` segments with slightly varying baseline values (deterministic)."""
    segs = []
    for i in range(n):
        wobble = (i % 3 - 1) * 0.2
        pr = {k: (v + wobble if isinstance(v, float) and k not in ("voiced_fraction",
                                                                    "pause_ratio") else v)
              for k, v in BASE_PROSODY.items()}
        pr.update(kw.get("prosody", {}) if isinstance(kw.get("prosody"), dict) else {})
        segs.append(make_segment(i, prosody=pr if kw.get("prosody", True) is not False else False,
                                 emotion=kw.get("emotion", True),
                                 sentiment=kw.get("sentiment", True)))
    return segs
