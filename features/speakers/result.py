"""Typed results of speaker diarization, and voiceprint comparison."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from features.errors import ParameterError

__all__ = ["SpeakerTurn", "SpeakerInfo", "SpeakersResult", "voiceprint_similarity"]


class SpeakerTurn(BaseModel):
    """A stretch of speech ``[start_s, end_s)`` by one speaker (no turn straddles two voices)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_s: float
    end_s: float
    speaker: str = Field(description="'S1', 'S2', … (auto/off) or 'ch0', 'ch1', … (channels)")
    overlap: bool = Field(False, description="two voices at once; left out of baselines")

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class SpeakerInfo(BaseModel):
    """One speaker: label, amount of speech, and (on request) the voiceprint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    speech_s: float = Field(description="speech time attributed to this speaker, overlap excluded")
    voiceprint: list[float] | None = Field(
        None, description="unit-norm mean GE2E embedding (256 values), when asked for")


class SpeakersResult(BaseModel):
    """Who speaks when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["auto", "channels", "off"]
    backend: str = Field(description="'resemblyzer', 'pyannote', 'channels' or 'none'")
    num_speakers: int
    count_estimated: bool = Field(description="False when speakers.num_speakers fixed it")
    turns: list[SpeakerTurn]
    speakers: list[SpeakerInfo]
    policy: str = Field(description="how turns were assigned, in one sentence")
    warnings: list[str] = Field(default_factory=list)

    def speaker_at(self, t_s: float) -> str | None:
        """Label of the speaker at time ``t_s`` (None outside speech)."""
        for turn in self.turns:
            if turn.start_s <= t_s < turn.end_s:
                return turn.speaker
        return None


def voiceprint_similarity(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
                          ) -> float:
    """Cosine similarity of two voiceprints (GE2E voiceprints give values in [0, 1]).

    Raises
    ------
    ParameterError
        When the shapes differ or a voiceprint is all zeros or not finite.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ParameterError(f"voiceprints must have the same non-zero length; got {x.size} "
                             f"and {y.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ParameterError("voiceprints must be finite")
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0:
        raise ParameterError("a voiceprint of all zeros has no direction")
    return float(np.dot(x, y) / (nx * ny))
