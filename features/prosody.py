"""Prosody stream: Praat measures through Parselmouth (in process). CONTRACT STUB — being implemented."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ProsodyMeasures"]


class ProsodyMeasures(BaseModel):
    """Praat prosody and voice-quality measures of one segment. ``None`` = not measurable
    (the reason is in ``missing``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    f0_mean_hz: float | None = None
    f0_median_hz: float | None = None
    f0_sd_hz: float | None = None
    f0_mean_st: float | None = Field(None, description="F0 mean in semitones re 100 Hz")
    f0_sd_st: float | None = None
    f0_p5_hz: float | None = None
    f0_p95_hz: float | None = None
    f0_range_st: float | None = Field(None, description="p5–p95 F0 range in semitones")
    jitter_local_pct: float | None = None
    jitter_rap_pct: float | None = None
    jitter_ppq5_pct: float | None = None
    shimmer_local_pct: float | None = None
    shimmer_local_db: float | None = None
    shimmer_apq3_pct: float | None = None
    shimmer_apq5_pct: float | None = None
    hnr_db: float | None = None
    cpps_db: float | None = None
    intensity_mean_db: float | None = None
    intensity_sd_db: float | None = None
    voiced_fraction: float | None = None
    syllable_count: int | None = None
    speech_rate_syl_per_s: float | None = None
    articulation_rate_syl_per_s: float | None = None
    pause_count: int | None = None
    pause_ratio: float | None = None
    mean_pause_s: float | None = None
    pitch_floor_hz: float | None = None
    pitch_ceiling_hz: float | None = None
    missing: dict[str, str] = Field(default_factory=dict,
                                    description="measure name → reason it is None")


class ProsodyConfig(BaseModel):
    """Settings of the prosody stream (config section ``[prosody]``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    pitch_floor_hz: float | None = Field(None, description="None = two-pass, speaker-adapted")
    pitch_ceiling_hz: float | None = Field(None, description="None = two-pass, speaker-adapted")
    min_pause_s: float = Field(0.25, description="silences at least this long count as pauses")
