"""Text sentiment stream (VADER, transformers) + lexical markers. CONTRACT STUB — being implemented."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SentimentMeasures"]


class SentimentMeasures(BaseModel):
    """Sentiment and lexical markers of one segment's words."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    negative: float
    neutral: float
    positive: float
    label: str
    compound: float | None = Field(None, description="VADER compound score in [-1, 1]")
    word_count: int = 0
    first_person_singular_rate: float | None = Field(None, description="fraction of words")
    absolutist_rate: float | None = None
    negative_emotion_word_rate: float | None = None


class SentimentConfig(BaseModel):
    """Settings of the sentiment stream (config section ``[sentiment]``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    enabled: bool = True
    backend: str = Field("vader", description="'vader' or 'transformers'")
    model: str | None = Field(None, description="HF id or local dir for 'transformers'")
