"""Human names for measures, streams and fusion features, and number formatting for display.

The report shows the JSON field names (which carry their units, e.g. ``f0_mean_hz``) beside
these plain names, so a reader can find every number in the saved result.
"""

from __future__ import annotations

import json
import math
from typing import Any

from features.registry import stream_specs

__all__ = [
    "STREAM_TITLES",
    "STREAM_SHORT",
    "stream_titles",
    "MEASURE_LABELS",
    "CONTRIBUTION_TITLES",
    "measure_label",
    "feature_label",
    "feature_label_parts",
    "display_number",
    "json_number",
]

def stream_titles() -> dict[str, tuple[str, str]]:
    """Registered stream → (title, short title), in registry order (read on every call, so a
    stream registered after import is shown too)."""
    return {spec.name: (spec.title, spec.short_title) for spec in stream_specs()}


#: the streams' report titles as registered at import (see :func:`stream_titles`)
STREAM_TITLES = {name: t for name, (t, _) in stream_titles().items()}
STREAM_SHORT = {name: short for name, (_, short) in stream_titles().items()}

#: column key → plain name (units stay in the key, which the table shows beside the name)
MEASURE_LABELS: dict[str, str] = {
    "segment": "Segment",
    "start_s": "Start",
    "end_s": "End",
    "duration_s": "Duration",
    "f0_mean_hz": "F0 mean",
    "f0_median_hz": "F0 median",
    "f0_sd_hz": "F0 SD",
    "f0_mean_st": "F0 mean (semitones)",
    "f0_sd_st": "F0 SD (semitones)",
    "f0_p5_hz": "F0 5th pct.",
    "f0_p95_hz": "F0 95th pct.",
    "f0_range_st": "F0 range (semitones)",
    "jitter_local_pct": "Jitter (local)",
    "jitter_rap_pct": "Jitter (RAP)",
    "jitter_ppq5_pct": "Jitter (PPQ5)",
    "shimmer_local_pct": "Shimmer (local)",
    "shimmer_local_db": "Shimmer (local)",
    "shimmer_apq3_pct": "Shimmer (APQ3)",
    "shimmer_apq5_pct": "Shimmer (APQ5)",
    "hnr_db": "Harmonics-to-noise",
    "cpps_db": "CPPS",
    "intensity_mean_db": "Intensity mean",
    "intensity_sd_db": "Intensity SD",
    "voiced_fraction": "Voiced fraction",
    "syllable_count": "Syllables",
    "speech_rate_syl_per_s": "Speech rate",
    "articulation_rate_syl_per_s": "Articulation rate",
    "pause_count": "Pauses",
    "pause_ratio": "Pause ratio",
    "mean_pause_s": "Mean pause",
    "pitch_floor_hz": "Pitch floor",
    "pitch_ceiling_hz": "Pitch ceiling",
    "emotion_top": "Top emotion",
    "emotion_entropy_bits": "Emotion entropy",
    "emotion_arousal": "Arousal",
    "emotion_valence": "Valence",
    "emotion_dominance": "Dominance",
    "text": "Text",
    "word_count": "Words",
    "words_per_min": "Word rate",
    "sentiment_negative": "Negative",
    "sentiment_neutral": "Neutral",
    "sentiment_positive": "Positive",
    "sentiment_label": "Sentiment",
    "sentiment_compound": "Compound",
    "sentiment_first_person_singular_rate": "1st-person singular",
    "sentiment_absolutist_rate": "Absolutist words",
    "sentiment_negative_emotion_word_rate": "Negative-emotion words",
    "stress": "Stress index",
    "stress_confidence": "Stress confidence",
    "depression_probability": "Depression",
    "depression_confidence": "Depression confidence",
}

#: groups that explain the fused scores (``ScoreDetail.contributions`` keys)
CONTRIBUTION_TITLES = {
    "prosody": "Prosody",
    "emotion": "Acoustic emotion",
    "sentiment": "Text sentiment",
    "lexical": "Word use",
    "transcript": "Transcript",
    "intercept": "Intercept",
}

_NORMS = {"speaker_z": "own baseline", "population_z": "population"}
_STREAM_PREFIXES = ("prosody", "emotion", "transcript", "sentiment", "lexical", "text", "audio")


def measure_label(key: str) -> str:
    """Plain name of a segment-table column."""
    if key in MEASURE_LABELS:
        return MEASURE_LABELS[key]
    if key.startswith("emotion_"):
        return "P(" + key[len("emotion_"):].replace("_", " ") + ")"
    return key.replace("_", " ").capitalize()


def _base_feature_label(base: str) -> str:
    if base.startswith("sentiment_"):
        field = base[len("sentiment_"):]
        if field in ("negative", "neutral", "positive"):
            return f"{field.capitalize()} sentiment"
        return MEASURE_LABELS.get(base, "Sentiment " + field.replace("_", " "))
    if base.startswith("emotion_"):
        label = base[len("emotion_"):]
        if base in MEASURE_LABELS:
            return MEASURE_LABELS[base]
        return "Emotion: " + label.replace("_", " ")
    if base in MEASURE_LABELS:
        return MEASURE_LABELS[base]
    if f"sentiment_{base}" in MEASURE_LABELS:  # lexical rates
        return MEASURE_LABELS[f"sentiment_{base}"]
    text = base.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else base


def feature_label_parts(name: str) -> tuple[str, str | None]:
    """``(plain name, reference)`` of a fusion feature; the reference is what the feature was
    z-scored against (``'own baseline'`` / ``'population'``) or ``None``."""
    prefix, dot, rest = name.partition(".")
    if dot and prefix in _NORMS:
        return _base_feature_label(rest), _NORMS[prefix]
    if dot and prefix in _STREAM_PREFIXES:
        if prefix == "emotion" and not rest.startswith("emotion_"):
            rest = "emotion_" + rest
        if prefix == "sentiment" and rest in ("negative", "neutral", "positive", "compound"):
            rest = "sentiment_" + rest
        return _base_feature_label(rest), None
    return _base_feature_label(name), None


def feature_label(name: str) -> str:
    """Plain name of a fusion feature.

    ``'speaker_z.f0_mean_st'`` → ``'F0 mean (semitones) · own baseline'``;
    ``'population_z.sentiment_negative'`` → ``'Negative sentiment · population'``.
    """
    label, ref = feature_label_parts(name)
    return f"{label} · {ref}" if ref else label


def json_number(v: Any) -> str:
    """The value exactly as the JSON result holds it (``null`` for missing)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    return json.dumps(v, ensure_ascii=False)


def display_number(v: Any, key: str = "") -> str:
    """A rounded, readable rendering; ``—`` for missing. The exact value goes in a tooltip."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if not isinstance(v, float):
        return str(v)
    a = abs(v)
    if key.endswith("_s") and a < 10_000:
        return f"{v:.2f}"
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 10:
        return f"{v:.2f}"
    return f"{v:.3f}"
