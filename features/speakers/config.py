"""Settings of speaker diarization (config section ``[speakers]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SpeakersConfig", "MAX_SPEAKERS", "MAX_CHANNELS"]

#: most speakers the count estimate considers (and ``num_speakers`` accepts)
MAX_SPEAKERS = 10
#: most channels ``mode = "channels"`` accepts (one speaker each)
MAX_CHANNELS = 8


class SpeakersConfig(BaseModel):
    """Settings of speaker diarization.

    ``mode``: ``auto`` finds the speakers and their count from the voices; ``channels`` makes
    each channel of a multi-channel file one speaker; ``off`` keeps one speaker.

    The two thresholds of ``auto`` (``merge_similarity`` and ``overlap_margin``) were set on
    synthetic espeak-ng voices and ``jfk.flac``, never on the LibriSpeech voices the accuracy
    targets are measured on (see ``docs/speakers.md``).
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "channels", "off"] = "auto"
    num_speakers: int | None = Field(
        None, ge=1, le=MAX_SPEAKERS, description="fixed speaker count; None = estimate it")
    max_speakers: int = Field(6, ge=1, le=MAX_SPEAKERS, description="upper bound of the estimate")
    backend: Literal["resemblyzer", "pyannote"] = "resemblyzer"
    model: str | None = Field(
        None, description="pyannote pipeline: local directory or hub id (backend 'pyannote')")
    allow_pickle_weights: bool = Field(
        False, description="accept pickle weights (pyannote checkpoints); off by default")
    window_s: float = Field(1.2, ge=0.5, le=3.0, description="embedding window length")
    hop_s: float = Field(1.0, ge=0.1, le=3.0, description="embedding window hop")
    merge_similarity: float = Field(
        0.75, gt=0.0, lt=1.0,
        description="clusters whose voiceprints have a cosine above this are one speaker")
    min_speaker_s: float = Field(
        3.0, ge=0.0, description="an estimated speaker with less speech joins the nearest one")
    min_turn_s: float = Field(
        1.0, ge=0.0, description="shorter speaker turns are absorbed by their neighbours")
    overlap_margin: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="mark a window as overlapping speech when its second-best speaker is "
                    "within this cosine of the best and above merge_similarity - 0.1; "
                    "0 turns overlap marking off")
    focus: Literal["all", "longest", "profile"] = Field(
        "longest",
        description="whose scores the session summary and the report lead with: 'longest' "
                    "(most speech), 'profile' (the speaker matching fusion.speaker_profile, "
                    "else the longest), 'all' (every speaker pooled)")
    voiceprints: bool = Field(
        False, description="attach each speaker's voiceprint (biometric data) to the result")
    match_similarity: float = Field(
        0.80, gt=0.0, lt=1.0,
        description="a speaker whose voiceprint has a cosine above this with the profile's "
                    "voiceprint is the profile's speaker")
    channel_dominance_db: float = Field(
        6.0, ge=0.0, le=40.0,
        description="channels mode: a window belongs to the loudest channel; when a second "
                    "channel is within this many dB it is marked as overlap")

    @model_validator(mode="after")
    def _check(self) -> SpeakersConfig:
        if self.hop_s > self.window_s:
            raise ValueError(
                f"speakers.hop_s ({self.hop_s}) must not exceed speakers.window_s "
                f"({self.window_s})")
        if self.num_speakers is not None and self.num_speakers > self.max_speakers:
            # a fixed count is the user's knowledge; widen the bound rather than refuse
            object.__setattr__(self, "max_speakers", self.num_speakers)
        if self.backend == "pyannote" and not self.model:
            raise ValueError("speakers.backend = 'pyannote' needs speakers.model "
                             "(a local pipeline directory or a hub id)")
        return self
