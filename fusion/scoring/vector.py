"""Raw per-segment features for fusion, read from a :class:`~fusion.schema.SegmentResult`.

Every feature the fusion models may use is listed once in :data:`FEATURES` with its stream,
unit and how it is read. A feature a segment does not have is ``None`` — never 0: a stream
that did not run, a measure Praat could not make, an emotion label the classifier does not
have, or a lexical rate over fewer than ``min_words`` words are all *absent*, and the models
leave absent features out of the score (see :mod:`fusion.scoring.head`).

Streams, as the fused scores report them: ``prosody`` (Praat), ``emotion`` (acoustic emotion
classifier), ``sentiment`` (text sentiment probabilities) and ``lexical`` (word-category rates
from the transcript; computed by the sentiment stream).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fusion.schema import SegmentResult

__all__ = [
    "FUSION_STREAMS",
    "FeatureSpec",
    "FEATURES",
    "raw_features",
    "stream_measured",
    "SPEAKER_PREFIX",
    "POPULATION_PREFIX",
    "fused_name",
    "split_fused_name",
    "all_fused_names",
]

#: the groups the fused scores are explained by (``ScoreDetail.contributions`` keys)
FUSION_STREAMS: tuple[str, ...] = ("prosody", "emotion", "sentiment", "lexical")

SPEAKER_PREFIX = "speaker_z"
POPULATION_PREFIX = "population_z"


@dataclass(frozen=True)
class FeatureSpec:
    """One raw fusion feature.

    Attributes
    ----------
    name : str
        Stable name (the prosody field name, ``emotion_<label>``, ``sentiment_<field>`` or the
        lexical rate's field name).
    stream : str
        One of :data:`FUSION_STREAMS`.
    unit : str
    get : callable
        ``SegmentResult -> float | None``.
    """

    name: str
    stream: str
    unit: str
    get: Callable[[SegmentResult], float | None]


def _finite(v: object) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _prosody(field: str) -> Callable[[SegmentResult], float | None]:
    def get(seg: SegmentResult) -> float | None:
        return None if seg.prosody is None else _finite(getattr(seg.prosody, field, None))

    return get


def _emotion_prob(label: str) -> Callable[[SegmentResult], float | None]:
    def get(seg: SegmentResult) -> float | None:
        if seg.emotion is None:
            return None
        return _finite(seg.emotion.probabilities.get(label))

    return get


def _emotion_dim(dim: str) -> Callable[[SegmentResult], float | None]:
    def get(seg: SegmentResult) -> float | None:
        return None if seg.emotion is None else _finite(getattr(seg.emotion, dim, None))

    return get


def _sentiment(field: str) -> Callable[[SegmentResult], float | None]:
    def get(seg: SegmentResult) -> float | None:
        return None if seg.sentiment is None else _finite(getattr(seg.sentiment, field, None))

    return get


_PROSODY = [
    ("f0_mean_st", "semitones re 100 Hz"),
    ("f0_sd_st", "semitones"),
    ("f0_range_st", "semitones"),
    ("jitter_local_pct", "%"),
    ("shimmer_local_pct", "%"),
    ("hnr_db", "dB"),
    ("cpps_db", "dB"),
    ("intensity_mean_db", "dB"),
    ("intensity_sd_db", "dB"),
    ("voiced_fraction", "fraction"),
    ("speech_rate_syl_per_s", "syllables/s"),
    ("articulation_rate_syl_per_s", "syllables/s"),
    ("pause_count", "count"),
    ("pause_ratio", "fraction"),
    ("mean_pause_s", "s"),
]
_EMOTION_LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
_EMOTION_DIMS = ["arousal", "valence", "dominance"]
_SENTIMENT = [("negative", "probability"), ("positive", "probability"),
              ("compound", "VADER compound")]
_LEXICAL = ["first_person_singular_rate", "absolutist_rate", "negative_emotion_word_rate"]


def _build() -> dict[str, FeatureSpec]:
    specs: list[FeatureSpec] = []
    specs += [FeatureSpec(n, "prosody", u, _prosody(n)) for n, u in _PROSODY]
    specs += [FeatureSpec(f"emotion_{lab}", "emotion", "probability", _emotion_prob(lab))
              for lab in _EMOTION_LABELS]
    specs += [FeatureSpec(f"emotion_{d}", "emotion", "model scale", _emotion_dim(d))
              for d in _EMOTION_DIMS]
    specs += [FeatureSpec(f"sentiment_{f}", "sentiment", u, _sentiment(f)) for f, u in _SENTIMENT]
    specs += [FeatureSpec(n, "lexical", "fraction of words", _sentiment(n)) for n in _LEXICAL]
    return {s.name: s for s in specs}


#: every raw feature fusion knows, by name
FEATURES: dict[str, FeatureSpec] = _build()


def _word_count(seg: SegmentResult) -> int:
    if seg.sentiment is not None:
        return int(seg.sentiment.word_count)
    if seg.transcript is not None:
        return int(seg.transcript.word_count)
    return 0


def raw_features(seg: SegmentResult, *, min_words: int = 5) -> dict[str, float | None]:
    """All :data:`FEATURES` of one segment; absent ones are ``None``.

    Parameters
    ----------
    seg : SegmentResult
    min_words : int
        Sentiment and lexical features of a segment with fewer transcribed words are ``None``.

    Returns
    -------
    dict
        Feature name → value (finite float) or ``None``.
    """
    enough_words = _word_count(seg) >= min_words
    out: dict[str, float | None] = {}
    for name, spec in FEATURES.items():
        if spec.stream in ("sentiment", "lexical") and not enough_words:
            out[name] = None
            continue
        out[name] = spec.get(seg)
    return out


def stream_measured(seg: SegmentResult, *, min_words: int = 5) -> dict[str, bool]:
    """Whether each stream measured this segment (used for session coverage).

    ``prosody``: a prosody row with at least one measure; ``emotion``: probabilities or a
    dimension; ``transcript``: a transcript row with at least one word; ``sentiment`` and
    ``lexical``: at least ``min_words`` words with sentiment probabilities / lexical rates.
    """
    feats = raw_features(seg, min_words=min_words)
    by_stream: dict[str, bool] = {s: False for s in FUSION_STREAMS}
    for name, value in feats.items():
        if value is not None:
            by_stream[FEATURES[name].stream] = True
    by_stream["transcript"] = seg.transcript is not None and seg.transcript.word_count > 0
    return by_stream


def fused_name(feature: str, normalisation: str) -> str:
    """``("f0_mean_st", "speaker") -> "speaker_z.f0_mean_st"``."""
    if normalisation == "speaker":
        return f"{SPEAKER_PREFIX}.{feature}"
    if normalisation == "population":
        return f"{POPULATION_PREFIX}.{feature}"
    raise ValueError(f"normalisation must be 'speaker' or 'population', got {normalisation!r}")


def split_fused_name(name: str) -> tuple[str, str]:
    """``"speaker_z.f0_mean_st" -> ("f0_mean_st", "speaker")``; raises ``KeyError`` if unknown."""
    prefix, _, feature = name.partition(".")
    norm = {SPEAKER_PREFIX: "speaker", POPULATION_PREFIX: "population"}.get(prefix)
    if norm is None or feature not in FEATURES:
        raise KeyError(name)
    return feature, norm


def all_fused_names(features: Sequence[str] | None = None) -> list[str]:
    """Both normalisations of every feature (or of ``features``), speaker first."""
    names = list(features) if features is not None else list(FEATURES)
    return [fused_name(f, "speaker") for f in names] + [fused_name(f, "population") for f in names]
