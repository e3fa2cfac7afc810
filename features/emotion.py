"""Acoustic emotion stream (wav2vec2 audio classifier). CONTRACT STUB — being implemented."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Emotion", "EmotionMeasures"]


class Emotion(StrEnum):
    """Canonical emotion labels every classifier's classes are mapped onto."""

    NEUTRAL = "neutral"
    CALM = "calm"
    HAPPY = "happy"
    SAD = "sad"
    ANGRY = "angry"
    FEARFUL = "fearful"
    DISGUST = "disgust"
    SURPRISED = "surprised"


class EmotionMeasures(BaseModel):
    """Emotion of one segment: class probabilities (canonical labels) and/or dimensions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    probabilities: dict[str, float] = Field(default_factory=dict,
                                            description="canonical label → probability")
    top_label: str | None = None
    entropy_bits: float | None = None
    arousal: float | None = None
    valence: float | None = None
    dominance: float | None = None
    n_windows: int = 0


class EmotionConfig(BaseModel):
    """Settings of the acoustic emotion stream (config section ``[emotion]``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    enabled: bool = True
    backend: str = Field("classifier", description="'classifier' or 'dimensional'")
    model: str = "superb/wav2vec2-base-superb-er"
    revision: str | None = None
    window_s: float = 8.0
    batch_size: int = 8
    allow_pickle_weights: bool = False
    embeddings: bool = False
