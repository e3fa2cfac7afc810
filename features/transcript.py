"""Transcript stream (Whisper backends). CONTRACT STUB — being implemented."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Word", "SegmentTranscript"]


class Word(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    start_s: float
    end_s: float
    probability: float | None = None
    interpolated: bool = Field(False, description="time interpolated: the model gave none")


class SegmentTranscript(BaseModel):
    """The words whose midpoint lies inside a segment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = ""
    words: list[Word] = Field(default_factory=list)
    word_count: int = 0
    words_per_min: float | None = None


class TranscriptConfig(BaseModel):
    """Settings of the transcript stream (config section ``[transcript]``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    enabled: bool = True
    backend: str = Field("faster-whisper", description="'faster-whisper' or 'openai-whisper'")
    model: str = Field("bundled:tiny.en", description="'bundled:tiny.en', a name, or a local dir")
    compute_type: str = "int8"
    beam_size: int = 5
    language: str | None = None
    condition_on_previous_text: bool = False
    no_speech_threshold: float = 0.6
    compression_ratio_threshold: float = 2.4
