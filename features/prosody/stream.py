"""Prosody stream: Praat measures of every segment through Parselmouth.

Per segment (its own samples, DC offset removed; one ``parselmouth.Sound`` built from the
array, no temp files, no Praat executable). The Praat calls run in a child process of
:mod:`features.prosody.worker` by default, because Parselmouth holds Python's global lock
during each call and would stall the other streams (``prosody.run_praat_in``):

=========================  ================================================================
measure                    method (Praat 6.1 via Parselmouth; arguments in ``provenance``)
=========================  ================================================================
F0 (Hz, semitones)         ``To Pitch (ac)`` with Praat's standard arguments and the speaker's
                           pitch range; statistics over voiced frames (Boersma 1993). Semitones
                           are re 100 Hz; ``f0_range_st`` = 12·log2(p95/p5).
jitter (%)                 local, RAP, PPQ5 of the pulses from ``Sound & Pitch: To PointProcess
                           (cc)`` with period floor 0.0001 s, ceiling 0.02 s, max period factor
                           1.3 (Praat's voice report). ``Sound: To PointProcess (periodic, cc)``
                           is exactly this with a default ``To Pitch (ac)``; we reuse the pitch.
shimmer (%, dB)            local (% and dB), APQ3, APQ5 on the same pulses, max amplitude factor
                           1.6.
HNR (dB)                   ``To Harmonicity (cc)``: 0.01 s, pitch floor, 0.1, 1.0 period per
                           window; mean over voiced frames (Boersma 1993).
CPPS (dB)                  ``To PowerCepstrogram: 60 Hz, 0.002 s, 5000 Hz, 50 Hz`` + ``Get CPPS:
                           no, 0.01 s, 0.001 s, 60–330 Hz, 0.05, parabolic, 0.001–0 s,
                           straight, robust`` (Maryn & Weenink 2015), over the whole segment
                           (running speech, voiced and unvoiced frames; Hillenbrand & Houde
                           1996). Praat resamples the segment (``Resample``, 10 kHz); the
                           cepstrogram frames and ``Get CPPS`` run vectorised in
                           :mod:`features.prosody.cpps`, tested equal to Praat's own
                           ``To PowerCepstrogram`` and ``Get CPPS`` (to ~1e-8 dB).
intensity (dB)             ``To Intensity: 50 Hz, 0.016 s, subtract mean`` (de Jong & Wempe
                           2009 settings); mean by energy averaging (Praat's default), SD over
                           frames; frames of digital silence (−300 dB) are left out. dB re
                           2·10⁻⁵ with full scale = 1 Pa: relative, not calibrated SPL.
voiced fraction            voiced pitch frames / all pitch frames.
syllables, rates           syllable nuclei after de Jong & Wempe (2009), see
                           :mod:`features.prosody.syllables`: intensity peaks above the silence
                           threshold (0.99 quantile − 25 dB) that stand > 2 dB above the
                           surrounding minima on both sides (the scripts check one side; the
                           reason and the evidence are in that module), voiced in the segment's
                           pitch track, inside sounding intervals. Speech rate = syllables /
                           segment duration; articulation rate = syllables / phonation time.
pauses                     silent intervals ≥ ``min_pause_s`` (same threshold) with speech on
                           both sides; ratio = pause time / segment duration.
jitter ddp, shimmer        ``Get jitter (ddp)``, ``Get shimmer (apq11)``, ``(dda)`` on the same
apq11/dda (%)              pulses and arguments as the other jitter/shimmer values.
standard HNR, jitter       ``hnr_db_standard``, ``jitter_local_pct_standard``: as above but at
                           Praat's standard 75 Hz floor / 75–600 Hz range, beside published
                           numbers.
formants (Hz)              F1–F3 mean, SD, mean bandwidth over voiced frames, one ``To Formant
                           (burg)`` (:mod:`features.prosody.formants`).
spectral balance, band,    alpha ratio, Hammarberg index, slopes 0–500/500–1500 Hz (eGeMAPS),
SNR                        ``bandwidth_hz``, ``snr_db`` (:mod:`features.prosody.spectral`);
                           measures the band cannot support are ``None`` with a
                           ``band-limited:`` reason. Every column: ``docs/measures.md``.
=========================  ================================================================

Pitch range. Unless ``pitch_floor_hz``/``pitch_ceiling_hz`` are configured, the range is
adapted to the speaker by the two-pass method: a first, cheap pass (``To Pitch (ac)`` at 0.01 s
steps, 60–700 Hz) over all segments of one speaker, then floor = 0.75 × q25 and ceiling =
1.5 × q75 of its voiced F0 values (Hirst 2011, after De Looze & Hirst 2008). One range per
speaker: the engine's speakers stage passes each segment's speaker in the stream context
(key ``"speakers"``); without it the file is one speaker. A segment whose own first-pass
1.5 × q75 lies above the speaker's ceiling (raised speech) gets that higher ceiling
(:func:`segment_ceiling`; validated against pyin in ``benchmarks/pitch_range.py``).

Degenerate input: a segment shorter than ``min_segment_s`` (default 0.25 s), empty,
non-finite or digitally silent gets every measure ``None``; otherwise each measure Praat
refuses (too short for its window) or cannot define (unvoiced, too few periods) is ``None``.
In every case ``missing[measure]`` says why; rows are always present and no value is ever
NaN or infinite.

References
----------
Boersma, P. (1993). Accurate short-term analysis of the fundamental frequency and the
harmonics-to-noise ratio of a sampled sound. *IFA Proceedings* 17, 97–110.
de Jong, N. H., & Wempe, T. (2009). Praat script to detect syllable nuclei and measure speech
rate automatically. *Behavior Research Methods* 41(2), 385–390.
De Looze, C., & Hirst, D. (2008). Detecting changes in key and range for the automatic
modelling and coding of intonation. *Proc. Speech Prosody 2008*, 135–138.
Hillenbrand, J., & Houde, R. A. (1996). Acoustic correlates of breathy vocal quality.
*J. Speech Hear. Res.* 39(2), 311–321.
Hirst, D. (2011). The analysis by synthesis of speech melody: from data to models. *Journal
of Speech Sciences* 1(1), 55–83.
Jadoul, Y., Thompson, B., & de Boer, B. (2018). Introducing Parselmouth: a Python interface
to Praat. *Journal of Phonetics* 71, 1–15.
Maryn, Y., & Weenink, D. (2015). Objective dysphonia measures in the program Praat: smoothed
cepstral peak prominence and acoustic voice quality index. *J. Voice* 29(1), 35–43.

Examples
--------
>>> from features.audio.load import load_audio  # doctest: +SKIP
>>> from features.segments.vad import segment_audio  # doctest: +SKIP
>>> audio = load_audio("examples/jfk.flac")  # doctest: +SKIP
>>> segments = segment_audio(audio.y, audio.sr)  # doctest: +SKIP
>>> out = ProsodyStream(ProsodyConfig()).run(audio, segments, {})  # doctest: +SKIP
>>> 90 < out.rows[0].f0_median_hz < 200  # doctest: +SKIP
True
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.errors import ModelUnavailable, ParameterError
from features.prosody import syllables as syl
from features.prosody._praat_worker import run_task
from features.prosody.contours import CONTOUR_STEP_S, Contours, assemble_contours, grid_start
from features.prosody.formants import FORMANT_ARGS, FORMANT_NAMES, formant_measures, voiced_at
from features.prosody.spectral import (
    BAND_NEEDS_HZ,
    band_measures,
    bandwidth_hz,
    snr_db,
    spectral_frames,
)
from features.prosody.worker import LOST_REASON, PraatWorker, shared_worker
from features.stream import Provenance, StreamOutput

if TYPE_CHECKING:  # pragma: no cover
    from features.audio.load import Audio
    from features.segments.vad import Segment

__all__ = [
    "ProsodyMeasures",
    "ProsodyConfig",
    "ProsodyStream",
    "PitchRange",
    "MEASURES",
    "measure_segment",
    "speaker_pitch_range",
    "pitch_range_two_pass",
    "PRAAT_ARGS",
    "first_pass_f0",
    "measure_clips",
    "pitch_range_from_f0",
]

log = logging.getLogger(__name__)

#: reference of the semitone scale
_ST_REF_HZ = 100.0
#: Praat's default range, used when the two-pass method finds too little voicing
DEFAULT_PITCH_FLOOR_HZ = 75.0
DEFAULT_PITCH_CEILING_HZ = 600.0
#: first pass of the two-pass method (wide range; Hirst 2011 uses 60–750 Hz)
FIRST_PASS_FLOOR_HZ = 60.0
FIRST_PASS_CEILING_HZ = 700.0
FIRST_PASS_TIME_STEP_S = 0.01
#: the two-pass range needs at least this many voiced first-pass frames (0.3 s of voicing)
FIRST_PASS_MIN_VOICED_FRAMES = 30
#: de Jong & Wempe (2009): intensity analysis and minimum sounding interval
_INTENSITY_MIN_PITCH_HZ = 50.0
_INTENSITY_TIME_STEP_S = 0.016
_MIN_SOUNDING_S = 0.1
_DIGITAL_SILENCE_DB = -299.0
#: a segment whose peak (after DC removal) is below this (−180 dBFS) is digital silence
_SILENT_PEAK = 1e-9

#: Praat arguments used for each measure (reported in the stream's provenance)
PRAAT_ARGS: dict[str, Any] = {
    "pitch": {"command": "To Pitch (ac)", "time_step_s": "0 (= 0.75 / floor)",
              "max_candidates": 15, "very_accurate": False, "silence_threshold": 0.03,
              "voicing_threshold": 0.45, "octave_cost": 0.01, "octave_jump_cost": 0.35,
              "voiced_unvoiced_cost": 0.14},
    "point_process": {"command": "Sound & Pitch: To PointProcess (cc)"},
    "jitter": {"period_floor_s": 0.0001, "period_ceiling_s": 0.02, "max_period_factor": 1.3},
    "shimmer": {"period_floor_s": 0.0001, "period_ceiling_s": 0.02, "max_period_factor": 1.3,
                "max_amplitude_factor": 1.6},
    "harmonicity": {"command": "To Harmonicity (cc)", "time_step_s": 0.01,
                    "minimum_pitch": "pitch floor", "silence_threshold": 0.1,
                    "periods_per_window": 1.0},
    "cpps": {"command": "To PowerCepstrogram + Get CPPS (numpy after Praat's Resample; "
                        "equal to Praat's commands, tested)",
             "args": "60, 0.002, 5000, 50; no, 0.01, 0.001, 60, 330, 0.05, Parabolic, 0.001, "
                     "0, Straight, Robust"},
    "intensity": {"command": "To Intensity", "minimum_pitch_hz": _INTENSITY_MIN_PITCH_HZ,
                  "time_step_s": _INTENSITY_TIME_STEP_S, "subtract_mean": True,
                  "mean": "energy averaging"},
    "syllables": {"method": "de Jong & Wempe (2009)", "min_sounding_s": _MIN_SOUNDING_S},
    "standard": {"pitch_range_hz": [DEFAULT_PITCH_FLOOR_HZ, DEFAULT_PITCH_CEILING_HZ],
                 "hnr_db_standard": "To Harmonicity (cc): 0.01, 75, 0.1, 1.0; Get mean",
                 "jitter_local_pct_standard": "To Pitch (ac) 75-600 Hz; To PointProcess (cc); "
                                              "Get jitter (local) 0, 0, 0.0001, 0.02, 1.3"},
    "formants": FORMANT_ARGS,
    "spectral": {"method": "numpy; 20 ms Hamming frames, 10 ms hop; voiced frames; "
                           "eGeMAPS definitions (Eyben et al. 2016)"},
    "pitch_range": {"method": "two-pass (Hirst 2011; De Looze & Hirst 2008)",
                    "first_pass_hz": [FIRST_PASS_FLOOR_HZ, FIRST_PASS_CEILING_HZ],
                    "first_pass_time_step_s": FIRST_PASS_TIME_STEP_S,
                    "floor": "0.75 * q25", "ceiling": "1.5 * q75"},
}


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
    phonation_time_s: float | None = Field(
        None, description="total duration of sounding (non-silent) intervals")
    jitter_ddp_pct: float | None = Field(None, description="Praat Get jitter (ddp), %")
    shimmer_apq11_pct: float | None = Field(None, description="Praat Get shimmer (apq11), %")
    shimmer_dda_pct: float | None = Field(None, description="Praat Get shimmer (dda), %")
    hnr_db_standard: float | None = Field(
        None, description="HNR (dB) at Praat's standard 75 Hz floor, for published values")
    jitter_local_pct_standard: float | None = Field(
        None, description="local jitter (%) with Praat's standard 75–600 Hz pitch range")
    f1_mean_hz: float | None = Field(None, description="F1 mean over voiced frames (Burg)")
    f1_sd_hz: float | None = None
    f1_bw_hz: float | None = Field(None, description="F1 mean bandwidth over voiced frames")
    f2_mean_hz: float | None = None
    f2_sd_hz: float | None = None
    f2_bw_hz: float | None = None
    f3_mean_hz: float | None = None
    f3_sd_hz: float | None = None
    f3_bw_hz: float | None = None
    alpha_ratio_db: float | None = Field(
        None, description="energy 1–5 kHz / 50–1000 Hz (dB; openSMILE's orientation), "
        "mean over voiced frames")
    hammarberg_index_db: float | None = Field(
        None, description="max energy 0–2 kHz / max 2–5 kHz (dB), mean over voiced frames")
    spectral_slope_0_500: float | None = Field(
        None, description="slope of the dB power spectrum 0–500 Hz (dB/Hz), voiced frames")
    spectral_slope_500_1500: float | None = Field(
        None, description="slope of the dB power spectrum 500–1500 Hz (dB/Hz), voiced frames")
    bandwidth_hz: float | None = Field(
        None, description="effective band of the segment (Hz; Nyquist when not band-limited)")
    snr_db: float | None = Field(None, description="blind SNR estimate from frame powers (dB)")
    pitch_floor_hz: float | None = None
    pitch_ceiling_hz: float | None = None
    missing: dict[str, str] = Field(default_factory=dict,
                                    description="measure name → reason it is None")


#: the measures of a row (everything except the pitch range used and ``missing``)
MEASURES: tuple[str, ...] = tuple(
    n for n in ProsodyMeasures.model_fields
    if n not in ("missing", "pitch_floor_hz", "pitch_ceiling_hz"))

_F0 = ("f0_mean_hz", "f0_median_hz", "f0_sd_hz", "f0_mean_st", "f0_sd_st", "f0_p5_hz",
       "f0_p95_hz", "f0_range_st")
_JITTER = ("jitter_local_pct", "jitter_rap_pct", "jitter_ppq5_pct")
_SHIMMER = ("shimmer_local_pct", "shimmer_local_db", "shimmer_apq3_pct", "shimmer_apq5_pct")
_RATE = ("syllable_count", "speech_rate_syl_per_s", "articulation_rate_syl_per_s")
_PAUSE = ("pause_count", "pause_ratio", "mean_pause_s", "phonation_time_s")
_PERTURB_MORE = ("jitter_ddp_pct", "shimmer_apq11_pct", "shimmer_dda_pct")
_STANDARD = ("hnr_db_standard", "jitter_local_pct_standard")
_SPECTRAL = tuple(BAND_NEEDS_HZ)
#: a measure's reason in ``missing`` starts with this when the segment's band cannot support it
BAND_LIMITED = "band-limited: "


class ProsodyConfig(BaseModel):
    """Settings of the prosody stream (config section ``[prosody]``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    pitch_floor_hz: float | None = Field(
        None, gt=0, lt=2000, description="None = two-pass, speaker-adapted")
    pitch_ceiling_hz: float | None = Field(
        None, gt=0, lt=8000, description="None = two-pass, speaker-adapted")
    min_pause_s: float = Field(
        0.25, gt=0, description="silences at least this long count as pauses")
    min_segment_s: float = Field(
        0.25, ge=0, description="shorter segments get no prosody measures (too few periods "
        "and at most one syllable)")
    silence_threshold_db: float = Field(
        -25.0, lt=0, description="silence threshold re the 0.99 quantile of intensity "
        "(de Jong & Wempe 2009)")
    min_dip_db: float = Field(
        2.0, ge=0, description="intensity dip between syllable peaks (de Jong & Wempe 2009)")
    run_praat_in: Literal["auto", "child-process", "this-process"] = Field(
        "auto", description="where the Praat calls run: 'child-process' keeps them from "
        "holding the other streams' global interpreter lock (same values, faster when streams "
        "run in parallel); 'auto' = a child process, or this process when none can be "
        "started; speed only, not part of the config hash")

    @model_validator(mode="after")
    def _check_range(self) -> ProsodyConfig:
        f, c = self.pitch_floor_hz, self.pitch_ceiling_hz
        if f is not None and c is not None and f >= c:
            raise ValueError(
                f"prosody.pitch_floor_hz ({f}) must be below prosody.pitch_ceiling_hz ({c})")
        return self


# --------------------------------------------------------------------------------------------
# pitch range (two-pass)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PitchRange:
    """Pitch range for a file and where it came from.

    Attributes
    ----------
    floor_hz, ceiling_hz : float
        Range used for every segment.
    source : {"two-pass", "config", "default"}
        ``default`` = Praat's 75–600 Hz, because the first pass found too little voicing.
    voiced_frames : int
        Voiced frames of the first pass (0 when it did not run).
    q25_hz, q75_hz : float or None
        First-pass quartiles of F0.
    """

    floor_hz: float
    ceiling_hz: float
    source: Literal["two-pass", "config", "default"]
    voiced_frames: int = 0
    q25_hz: float | None = None
    q75_hz: float | None = None


def _crop(y: np.ndarray, sr: int, start_s: float, end_s: float) -> np.ndarray:
    i0 = max(0, int(round(start_s * sr)))
    i1 = min(len(y), int(round(end_s * sr)))
    return y[i0:max(i0, i1)]


def first_pass_f0(clips: Sequence[np.ndarray], sr: int) -> list[np.ndarray]:
    """Voiced F0 values (Hz) of the two-pass method's first pass, one array per clip.

    ``To Pitch (ac)`` at 0.01 s steps, 60–700 Hz. A clip too short for the analysis window,
    with non-finite samples, silent, or refused by Praat gives an empty array.
    """
    import parselmouth

    voiced: list[np.ndarray] = []
    min_len = int(math.ceil(3.0 / FIRST_PASS_FLOOR_HZ * sr)) + 1
    for clip in clips:
        voiced.append(np.zeros(0))
        if clip.size < min_len or not np.all(np.isfinite(clip)):
            continue
        x = clip.astype(np.float64) - float(np.mean(clip))
        if not np.any(x):
            continue
        try:
            pitch = parselmouth.Sound(x, sampling_frequency=sr).to_pitch_ac(
                time_step=FIRST_PASS_TIME_STEP_S, pitch_floor=FIRST_PASS_FLOOR_HZ,
                pitch_ceiling=FIRST_PASS_CEILING_HZ)
        except parselmouth.PraatError:
            continue
        f = pitch.selected_array["frequency"]
        voiced[-1] = f[f > 0]
    return voiced


def _clips(y: np.ndarray, sr: int, segments: Sequence[Segment] | None) -> list[np.ndarray]:
    spans = [(s.start_s, s.end_s) for s in segments] if segments is not None \
        else [(0.0, len(y) / sr)]
    return [_crop(y, sr, a, b) for a, b in spans]


def pitch_range_two_pass(
    y: np.ndarray,
    sr: int,
    segments: Sequence[Segment] | None = None,
    *,
    pitch_floor_hz: float | None = None,
    pitch_ceiling_hz: float | None = None,
) -> PitchRange:
    """The speaker's pitch range by the two-pass method (Hirst 2011; De Looze & Hirst 2008).

    Pass 1: ``To Pitch (ac)`` at 0.01 s steps with a wide range (60–700 Hz) over every segment.
    Then floor = 0.75 × q25 and ceiling = 1.5 × q75 of the voiced F0 values (Hirst 2011,
    "The analysis by synthesis of speech melody", section on automatic range detection).

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono signal.
    sr : int
        Sample rate (Hz).
    segments : sequence of Segment, optional
        Speech segments; ``None`` = the whole signal.
    pitch_floor_hz, pitch_ceiling_hz : float, optional
        Fixed values that override the two-pass estimate (either or both).

    Returns
    -------
    PitchRange
        Praat's default 75–600 Hz with ``source="default"`` when fewer than 30 voiced frames
        (0.3 s) are found.
    """
    if pitch_floor_hz is not None and pitch_ceiling_hz is not None:
        return PitchRange(float(pitch_floor_hz), float(pitch_ceiling_hz), "config")
    voiced = first_pass_f0(_clips(np.asarray(y), int(sr), segments), int(sr))
    return pitch_range_from_f0(np.concatenate(voiced), pitch_floor_hz=pitch_floor_hz,
                               pitch_ceiling_hz=pitch_ceiling_hz)


def pitch_range_from_f0(f0: np.ndarray, *, pitch_floor_hz: float | None = None,
                        pitch_ceiling_hz: float | None = None) -> PitchRange:
    """The two-pass range from the first pass's voiced F0 values (see
    :func:`pitch_range_two_pass`); configured values override the estimate."""
    if pitch_floor_hz is not None and pitch_ceiling_hz is not None:
        return PitchRange(float(pitch_floor_hz), float(pitch_ceiling_hz), "config")
    if f0.size < FIRST_PASS_MIN_VOICED_FRAMES:
        floor, ceiling, source = DEFAULT_PITCH_FLOOR_HZ, DEFAULT_PITCH_CEILING_HZ, "default"
        q25 = q75 = None
    else:
        q25, q75 = (float(v) for v in np.quantile(f0, [0.25, 0.75]))
        floor, ceiling, source = 0.75 * q25, 1.5 * q75, "two-pass"
    if pitch_floor_hz is not None:
        floor, source = float(pitch_floor_hz), "config"
        ceiling = max(ceiling, 2.0 * floor)
    if pitch_ceiling_hz is not None:
        ceiling, source = float(pitch_ceiling_hz), "config"
        floor = min(floor, 0.5 * ceiling)
    return PitchRange(round(floor, 3), round(ceiling, 3), source,  # type: ignore[arg-type]
                      int(f0.size), q25, q75)


def speaker_pitch_range(y: np.ndarray, sr: int,
                        segments: Sequence[Segment] | None = None) -> tuple[float, float]:
    """``(floor_hz, ceiling_hz)`` of the speaker by the two-pass method.

    See :func:`pitch_range_two_pass` (which also says where the range came from).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> y = np.sin(2 * np.pi * 120 * t) + 0.5 * np.sin(2 * np.pi * 240 * t)
    >>> floor, ceiling = speaker_pitch_range(y, 16000)
    >>> round(floor), round(ceiling)
    (90, 180)
    """
    r = pitch_range_two_pass(y, sr, segments)
    return r.floor_hz, r.ceiling_hz


# --------------------------------------------------------------------------------------------
# one segment
# --------------------------------------------------------------------------------------------

#: a segment's own first-pass F0 raises its ceiling only with at least this many voiced frames
SEGMENT_CEILING_MIN_FRAMES = 30


def segment_ceiling(ceiling_hz: float, segment_f0: np.ndarray) -> float:
    """The pitch ceiling for one segment: the speaker's ``ceiling_hz``, raised to 1.5 × q75
    of the segment's own first-pass F0 where that is higher (and the segment has at least
    :data:`SEGMENT_CEILING_MIN_FRAMES` voiced frames), so raised speech is not clipped by a
    ceiling set on the speaker's calm speech."""
    f = np.asarray(segment_f0, dtype=np.float64)
    if f.size < SEGMENT_CEILING_MIN_FRAMES:
        return float(ceiling_hz)
    own = 1.5 * float(np.quantile(f, 0.75))
    return float(min(max(ceiling_hz, own), FIRST_PASS_CEILING_HZ))


#: context key of the engine's per-segment speaker labels (a ``StreamOutput`` whose rows are
#: the labels); absent → one speaker
SPEAKERS_CONTEXT = "speakers"


def _speaker_labels(context: dict[str, StreamOutput], n: int) -> list[str]:
    """Each segment's speaker from the context, or one speaker for all."""
    out = context.get(SPEAKERS_CONTEXT)
    rows = list(out.rows) if out is not None else []
    if len(rows) != n:
        return [""] * n
    return [str(r) if r is not None else "" for r in rows]


class _Row:
    """Collects values and reasons; turns NaN/Inf into ``None`` + reason."""

    def __init__(self, floor: float, ceiling: float) -> None:
        self.values: dict[str, Any] = {"pitch_floor_hz": floor, "pitch_ceiling_hz": ceiling}
        self.missing: dict[str, str] = {}

    def put(self, name: str, value: float | int | None, reason: str) -> None:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            self.missing.setdefault(name, reason or "the computation gave no finite value")
            self.values[name] = None
        else:
            self.values[name] = value

    def fail(self, names: Sequence[str], reason: str) -> None:
        for n in names:
            self.put(n, None, reason)

    def build(self) -> ProsodyMeasures:
        for n in MEASURES:  # anything not set is missing for a stated reason
            if n not in self.values:
                self.put(n, None, "not computed")
        return ProsodyMeasures(**self.values, missing=self.missing)


def _praat_reason(exc: Exception, analysis: str, duration_s: float) -> str:
    """Why Praat refused, naming the analysis and the segment length."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    msg = lines[0] if lines else type(exc).__name__
    return f"Praat refused the {analysis} of this {duration_s:.3f} s segment: {msg}"


def _dur(snd: Any) -> float:
    return float(snd.xmax - snd.xmin)


def _quantile(v: np.ndarray, q: float) -> float:
    return syl.praat_quantile(v, q)


def _f0_measures(row: _Row, f0: np.ndarray) -> None:
    v = f0[f0 > 0]
    if v.size == 0:
        row.fail(_F0, "no voiced frames")
        return
    st = 12.0 * np.log2(v / _ST_REF_HZ)
    row.put("f0_mean_hz", float(np.mean(v)), "")
    row.put("f0_median_hz", _quantile(v, 0.5), "")
    row.put("f0_mean_st", float(np.mean(st)), "")
    p5, p95 = _quantile(v, 0.05), _quantile(v, 0.95)
    row.put("f0_p5_hz", p5, "")
    row.put("f0_p95_hz", p95, "")
    if v.size < 2:
        row.fail(("f0_sd_hz", "f0_sd_st", "f0_range_st"), "only 1 voiced frame")
        return
    row.put("f0_sd_hz", float(np.std(v, ddof=1)), "")
    row.put("f0_sd_st", float(np.std(st, ddof=1)), "")
    row.put("f0_range_st", float(12.0 * math.log2(p95 / p5)), "")


def _perturbation(row: _Row, snd: Any, pitch: Any, n_voiced: int) -> None:
    import parselmouth
    from parselmouth.praat import call

    if n_voiced == 0:
        row.fail(_JITTER + _SHIMMER + _PERTURB_MORE, "no voiced frames")
        return
    try:
        pp = call([snd, pitch], "To PointProcess (cc)")
    except parselmouth.PraatError as exc:
        row.fail(_JITTER + _SHIMMER + _PERTURB_MORE,
                 _praat_reason(exc, "pulse detection", _dur(snd)))
        return
    j = PRAAT_ARGS["jitter"]
    jargs = (0.0, 0.0, j["period_floor_s"], j["period_ceiling_s"], j["max_period_factor"])
    undefined = ("Praat: undefined (too few consecutive glottal periods within the period "
                 "limits 0.0001–0.02 s and factor 1.3)")
    for name, cmd in (("jitter_local_pct", "Get jitter (local)"),
                      ("jitter_rap_pct", "Get jitter (rap)"),
                      ("jitter_ppq5_pct", "Get jitter (ppq5)"),
                      ("jitter_ddp_pct", "Get jitter (ddp)")):
        try:
            row.put(name, 100.0 * float(call(pp, cmd, *jargs)), undefined)
        except parselmouth.PraatError as exc:
            row.put(name, None, _praat_reason(exc, "jitter measurement", _dur(snd)))
    sargs = jargs + (PRAAT_ARGS["shimmer"]["max_amplitude_factor"],)
    for name, cmd, scale in (("shimmer_local_pct", "Get shimmer (local)", 100.0),
                             ("shimmer_local_db", "Get shimmer (local_dB)", 1.0),
                             ("shimmer_apq3_pct", "Get shimmer (apq3)", 100.0),
                             ("shimmer_apq5_pct", "Get shimmer (apq5)", 100.0),
                             ("shimmer_apq11_pct", "Get shimmer (apq11)", 100.0),
                             ("shimmer_dda_pct", "Get shimmer (dda)", 100.0)):
        try:
            row.put(name, scale * float(call([snd, pp], cmd, *sargs)), undefined)
        except parselmouth.PraatError as exc:
            row.put(name, None, _praat_reason(exc, "shimmer measurement", _dur(snd)))


def _hnr(row: _Row, snd: Any, floor: float, n_voiced: int) -> None:
    import parselmouth
    from parselmouth.praat import call

    if n_voiced == 0:
        row.put("hnr_db", None, "no voiced frames")
        return
    h = PRAAT_ARGS["harmonicity"]
    try:
        harm = call(snd, "To Harmonicity (cc)", h["time_step_s"], floor,
                    h["silence_threshold"], h["periods_per_window"])
        row.put("hnr_db", float(call(harm, "Get mean", 0.0, 0.0)),
                "Praat: undefined (no periodic frames in the harmonicity analysis)")
    except parselmouth.PraatError as exc:
        row.put("hnr_db", None, _praat_reason(exc, "harmonicity analysis", _dur(snd)))


def _standard(row: _Row, snd: Any, pitch: Any, floor: float, ceiling: float) -> None:
    """HNR and local jitter at Praat's standard range (75–600 Hz), beside the adaptive ones."""
    import parselmouth
    from parselmouth.praat import call

    lo, hi = DEFAULT_PITCH_FLOOR_HZ, DEFAULT_PITCH_CEILING_HZ
    if (floor, ceiling) == (lo, hi):  # the adaptive range is the standard one: same values
        row.put("hnr_db_standard", row.values.get("hnr_db"), row.missing.get("hnr_db", ""))
        row.put("jitter_local_pct_standard", row.values.get("jitter_local_pct"),
                row.missing.get("jitter_local_pct", ""))
        return
    h = PRAAT_ARGS["harmonicity"]
    try:
        harm = call(snd, "To Harmonicity (cc)", h["time_step_s"], lo,
                    h["silence_threshold"], h["periods_per_window"])
        row.put("hnr_db_standard", float(call(harm, "Get mean", 0.0, 0.0)),
                "Praat: undefined (no periodic frames in the harmonicity analysis)")
    except parselmouth.PraatError as exc:
        row.put("hnr_db_standard", None,
                _praat_reason(exc, "harmonicity analysis (75 Hz)", _dur(snd)))
    j = PRAAT_ARGS["jitter"]
    try:
        std_pitch = snd.to_pitch_ac(pitch_floor=lo, pitch_ceiling=hi)
        pp = call([snd, std_pitch], "To PointProcess (cc)")
        row.put("jitter_local_pct_standard",
                100.0 * float(call(pp, "Get jitter (local)", 0.0, 0.0, j["period_floor_s"],
                                   j["period_ceiling_s"], j["max_period_factor"])),
                "Praat: undefined (too few consecutive periods at 75–600 Hz)")
    except parselmouth.PraatError as exc:
        row.put("jitter_local_pct_standard", None,
                _praat_reason(exc, "pitch/pulse analysis (75–600 Hz)", _dur(snd)))


def _formants(row: _Row, snd: Any, pitch: Any, n_voiced: int) -> None:
    import parselmouth

    if n_voiced == 0:
        row.fail(FORMANT_NAMES, "no voiced frames")
        return
    try:
        values = formant_measures(snd, pitch)
    except parselmouth.PraatError as exc:
        row.fail(FORMANT_NAMES, _praat_reason(exc, "formant analysis (Burg)", _dur(snd)))
        return
    for name, v in values.items():
        row.put(name, v, "no voiced frame with this formant" if name.endswith("_mean_hz")
                or name.endswith("_bw_hz") else "fewer than 2 voiced frames with this formant")


def _spectral(row: _Row, x: np.ndarray, sr: int, pitch: Any) -> None:
    """Signal quality (band, SNR) and spectral balance; measures the band cannot support are
    ``None`` with a ``band-limited:`` reason."""
    frames = spectral_frames(x, sr)
    short = "segment shorter than one 20 ms analysis frame"
    band = bandwidth_hz(frames)
    row.put("bandwidth_hz", band, short)
    row.put("snr_db", snr_db(frames), "fewer than 10 frames, or the quietest frames are "
            "digital silence (noise floor 0)")
    if pitch is None:
        row.fail(_SPECTRAL, "no pitch track (voiced frames unknown)")
    else:
        voiced = voiced_at(frames.times_s, pitch)
        for name, v in band_measures(frames, voiced).items():
            row.put(name, v, "no voiced frames")
    if band is None:
        return
    for name, need in BAND_NEEDS_HZ.items():
        if band < need:
            row.values[name] = None
            row.missing[name] = (f"{BAND_LIMITED}the segment's band ends at {band:.0f} Hz; "
                                 f"{name} reads energy up to {need:.0f} Hz")
    if band < FORMANT_ARGS["max_formant_hz"] - 500.0:
        for name in FORMANT_NAMES:
            row.values[name] = None
            row.missing[name] = (
                f"{BAND_LIMITED}the segment's band ends at {band:.0f} Hz; the Burg analysis "
                f"fits 5 formants up to {FORMANT_ARGS['max_formant_hz']:.0f} Hz")


def _cpps(row: _Row, snd: Any) -> None:
    import parselmouth

    from features.prosody.cpps import sound_cpps_db

    try:
        row.put("cpps_db", sound_cpps_db(snd), "cepstrogram gave no finite CPPS")
    except parselmouth.PraatError as exc:
        row.put("cpps_db", None, _praat_reason(exc, "power cepstrogram", _dur(snd)))


def _timing(row: _Row, snd: Any, pitch: Any, n_voiced: int, duration_s: float, *,
            min_pause_s: float, silence_threshold_db: float, min_dip_db: float) -> None:
    import parselmouth

    try:
        intensity = snd.to_intensity(minimum_pitch=_INTENSITY_MIN_PITCH_HZ,
                                     time_step=_INTENSITY_TIME_STEP_S, subtract_mean=True)
    except parselmouth.PraatError as exc:
        reason = _praat_reason(exc, "intensity analysis (needs 6.4 / 50 Hz = 0.128 s)", _dur(snd))
        row.fail(("intensity_mean_db", "intensity_sd_db") + _RATE + _PAUSE, reason)
        return
    db = np.asarray(intensity.values[0], dtype=np.float64)
    live = db[db > _DIGITAL_SILENCE_DB]
    if live.size == 0:
        row.fail(("intensity_mean_db", "intensity_sd_db") + _RATE + _PAUSE,
                 "every intensity frame is digital silence")
        return
    row.put("intensity_mean_db", float(10.0 * np.log10(np.mean(10.0 ** (live / 10.0)))), "")
    if live.size >= 2:
        row.put("intensity_sd_db", float(np.std(live, ddof=1)), "")
    else:
        row.put("intensity_sd_db", None, "only 1 intensity frame")
    threshold = syl.silence_threshold_db(db, silence_threshold_db)
    intervals = syl.detect_silences(
        db, x1=intensity.x1, dx=intensity.dx, xmin=intensity.xmin, xmax=intensity.xmax,
        threshold_db=threshold, min_silent_s=min_pause_s, min_sounding_s=_MIN_SOUNDING_S)
    phonation = float(sum(iv.duration_s for iv in intervals if not iv.silent))
    pauses = syl.inner_pauses(intervals)
    pause_total = float(sum(iv.duration_s for iv in pauses))
    row.put("phonation_time_s", phonation, "")
    row.put("pause_count", len(pauses), "")
    row.put("pause_ratio", pause_total / duration_s, "")
    row.put("mean_pause_s", pause_total / len(pauses) if pauses else None,
            f"no pause of at least {min_pause_s:g} s inside the segment")
    if n_voiced == 0:
        row.fail(_RATE, "no voiced frames: no syllable nucleus can be confirmed")
        return

    def is_voiced(t: float) -> bool:
        return math.isfinite(pitch.get_value_at_time(t))

    nuclei = syl.syllable_nuclei(
        db, x1=intensity.x1, dx=intensity.dx, threshold_db=threshold, min_dip_db=min_dip_db,
        intervals=intervals, is_voiced=is_voiced)
    n = int(nuclei.size)
    row.put("syllable_count", n, "")
    row.put("speech_rate_syl_per_s", n / duration_s, "")
    row.put("articulation_rate_syl_per_s", n / phonation if phonation > 0 else None,
            "no sounding interval (phonation time 0)")


def measure_segment(
    y: np.ndarray,
    sr: int,
    *,
    pitch_floor_hz: float = DEFAULT_PITCH_FLOOR_HZ,
    pitch_ceiling_hz: float = DEFAULT_PITCH_CEILING_HZ,
    min_pause_s: float = 0.25,
    min_segment_s: float = 0.25,
    silence_threshold_db: float = -25.0,
    min_dip_db: float = 2.0,
) -> ProsodyMeasures:
    """All prosody measures of one segment's samples.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        The segment's samples (any float or integer dtype; the mean is subtracted).
    sr : int
        Sample rate (Hz).
    pitch_floor_hz, pitch_ceiling_hz : float
        Pitch range (Hz) for pitch, pulses and harmonicity; use :func:`speaker_pitch_range`
        for a speaker-adapted one. Praat's defaults are 75–600 Hz.
    min_pause_s : float
        Silences at least this long (s) count as pauses.
    min_segment_s : float
        Shorter segments get no measures (every value ``None``).
    silence_threshold_db : float
        Silence threshold (dB, negative) re the 0.99 quantile of the segment's intensity.
    min_dip_db : float
        Minimum intensity dip (dB) between syllable nuclei.

    Returns
    -------
    ProsodyMeasures
        ``None`` values have their reason in ``missing``. Never raises for degenerate audio.

    Raises
    ------
    ParameterError
        Invalid arguments (not the audio): non-positive rate, floor ≥ ceiling, 2-D ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> y = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 10))
    >>> m = measure_segment(y, 16000)
    >>> round(m.f0_mean_hz, 1), m.voiced_fraction > 0.9
    (150.0, True)
    """
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"sr must be a positive integer (Hz); got {sr!r}")
    if not (0 < pitch_floor_hz < pitch_ceiling_hz):
        raise ParameterError(
            f"pitch range must satisfy 0 < floor < ceiling; got floor={pitch_floor_hz} Hz, "
            f"ceiling={pitch_ceiling_hz} Hz")
    if pitch_ceiling_hz >= sr / 2:
        raise ParameterError(
            f"pitch_ceiling_hz ({pitch_ceiling_hz}) must be below the Nyquist frequency "
            f"({sr / 2} Hz)")
    if min_pause_s <= 0 or silence_threshold_db >= 0 or min_dip_db < 0 or min_segment_s < 0:
        raise ParameterError(
            "need min_pause_s > 0, silence_threshold_db < 0, min_dip_db >= 0, "
            f"min_segment_s >= 0; got {min_pause_s}, {silence_threshold_db}, {min_dip_db}, "
            f"{min_segment_s}")
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ParameterError(f"y must be one-dimensional (mono); got shape {arr.shape}")
    row = _Row(float(pitch_floor_hz), float(pitch_ceiling_hz))
    duration_s = arr.size / float(sr)
    if arr.size == 0:
        row.fail(MEASURES, "empty segment (0 samples)")
        return row.build()
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float64) / float(np.iinfo(arr.dtype).max)
    x = arr.astype(np.float64)
    if not np.all(np.isfinite(x)):
        n_bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        row.fail(MEASURES, f"{n_bad} samples are NaN or infinite")
        return row.build()
    if duration_s < min_segment_s:
        row.fail(MEASURES, f"segment is {duration_s:.3f} s long, shorter than the "
                           f"{min_segment_s:g} s minimum for prosody (prosody.min_segment_s)")
        return row.build()
    x = x - float(np.mean(x))
    if float(np.max(np.abs(x))) < _SILENT_PEAK:
        row.fail(MEASURES, "digital silence (every sample has the same value)")
        return row.build()
    return _measure(row, x, int(sr), duration_s, float(pitch_floor_hz),
                    float(pitch_ceiling_hz), min_pause_s=min_pause_s,
                    silence_threshold_db=silence_threshold_db, min_dip_db=min_dip_db)


def _measure(row: _Row, x: np.ndarray, sr: int, duration_s: float, floor: float,
             ceiling: float, *, min_pause_s: float, silence_threshold_db: float,
             min_dip_db: float) -> ProsodyMeasures:
    import parselmouth

    snd = parselmouth.Sound(x, sampling_frequency=sr)
    pitch = None
    n_voiced = 0
    try:
        pitch = snd.to_pitch_ac(pitch_floor=floor, pitch_ceiling=ceiling)
    except parselmouth.PraatError as exc:
        reason = _praat_reason(exc, f"pitch analysis (floor {floor:g} Hz)", duration_s)
        row.fail(_F0 + _JITTER + _SHIMMER + _PERTURB_MORE + ("hnr_db", "voiced_fraction")
                 + _RATE + FORMANT_NAMES, reason)
    if pitch is not None:
        f0 = np.asarray(pitch.selected_array["frequency"], dtype=np.float64)
        n_voiced = int(np.count_nonzero(f0 > 0))
        row.put("voiced_fraction", n_voiced / f0.size if f0.size else None, "no pitch frames")
        _f0_measures(row, f0)
        _perturbation(row, snd, pitch, n_voiced)
        _hnr(row, snd, floor, n_voiced)
        _formants(row, snd, pitch, n_voiced)
    _standard(row, snd, pitch, floor, ceiling)
    _cpps(row, snd)
    _spectral(row, x, sr, pitch)
    # without a pitch track (Praat refused it) the rates keep the pitch's reason
    _timing(row, snd, pitch, n_voiced, duration_s, min_pause_s=min_pause_s,
            silence_threshold_db=silence_threshold_db, min_dip_db=min_dip_db)
    return row.build()


def _failed_row(floor_hz: float, ceiling_hz: float, reason: str) -> ProsodyMeasures:
    r = _Row(floor_hz, ceiling_hz)
    r.fail(MEASURES, reason)
    return r.build()


def measure_clips(clips: Sequence[np.ndarray], sr: int,
                  settings: dict[str, Any]) -> list[tuple[ProsodyMeasures, str | None]]:
    """:func:`measure_segment` of each clip with ``settings`` (its keyword arguments).

    Returns ``(row, None)`` per clip, or ``(row with every measure None, reason)`` when the
    measurement raised: one bad segment must not cost the file.
    """
    out: list[tuple[ProsodyMeasures, str | None]] = []
    for clip in clips:
        try:
            out.append((measure_segment(clip, sr, **settings), None))
        except Exception as exc:
            reason = f"internal error: {type(exc).__name__}: {exc}"
            out.append((_failed_row(settings["pitch_floor_hz"], settings["pitch_ceiling_hz"],
                                    reason), reason))
    return out


# --------------------------------------------------------------------------------------------
# the stream
# --------------------------------------------------------------------------------------------

class ProsodyStream:
    """Praat prosody per segment (see the module docstring for every measure).

    Parameters
    ----------
    config : ProsodyConfig
        Section ``[prosody]`` of the configuration.
    num_threads : int
        Kept for the common stream signature. The segments are measured one after the
        other, in the Praat worker process (``prosody.run_praat_in``); Praat's pitch analysis
        threads internally.
    """

    name = "prosody"
    requires: tuple[str, ...] = ()

    def __init__(self, config: ProsodyConfig | None = None, *, num_threads: int = 2) -> None:
        self.config = config if config is not None else ProsodyConfig()
        self.num_threads = num_threads
        self._loaded = False
        self._worker: PraatWorker | None = None
        self._praat_ran_in = "this process"

    def load(self) -> None:
        """Check that Parselmouth imports (nothing heavy to load)."""
        try:
            import parselmouth  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ModelUnavailable(
                "Praat-Parselmouth is not installed: run `pip install praat-parselmouth` "
                f"({exc})") from exc
        self._worker, self._praat_ran_in = self._choose_worker(self.config.run_praat_in)
        self._loaded = True

    @staticmethod
    def _choose_worker(mode: str) -> tuple[PraatWorker | None, str]:
        """The worker process to use (or ``None``) and where Praat will run, in words."""
        if mode == "this-process":
            return None, "this process (prosody.run_praat_in = 'this-process')"
        worker = shared_worker()
        try:
            worker.start()
            return worker, "child process"
        except Exception as exc:  # no fork/exec allowed, a sandbox: run Praat here
            why = f"the Praat child process could not be started ({type(exc).__name__}: {exc})"
        if mode == "child-process":
            raise ModelUnavailable(f"prosody.run_praat_in = 'child-process', but {why}")
        log.warning("prosody: Praat runs in this process: %s", why)
        return None, f"this process: {why}"

    def _per_clip(self, task: str, clips: list[np.ndarray], sr: int,
                  settings: dict[str, Any], lost: Any) -> list[Any]:
        """``task`` of :mod:`features.prosody._praat_worker` over the clips, in the child or
        here."""
        if self._worker is not None:
            return self._worker.run_per_clip(task, clips, sr, settings, lost)
        return run_task(task, clips, sr, settings)

    def provenance(self) -> Provenance:
        """Backend ``parselmouth``: its version, Praat's version and every option used."""
        try:
            import parselmouth

            lib, praat = parselmouth.__version__, parselmouth.PRAAT_VERSION
        except ImportError:  # pragma: no cover
            lib = praat = None
        return Provenance(backend="parselmouth", model_id=None, revision=None,
                          library_version=lib,
                          options={**self.config.model_dump(), "praat_version": praat,
                                   "praat": PRAAT_ARGS})

    def run(self, audio: Audio, segments: Sequence[Segment],
            context: dict[str, StreamOutput]) -> StreamOutput:
        """One :class:`ProsodyMeasures` row per segment, in order."""
        t0 = time.perf_counter()
        cfg = self.config
        if not cfg.enabled:
            return StreamOutput.skipped(self.name, "prosody disabled in the configuration",
                                        len(segments), self.provenance())
        if not self._loaded:
            self.load()
        warnings: list[str] = []
        clips = [audio.crop(seg.start_s, seg.end_s) for seg in segments]
        # one pitch range per speaker (the engine's speakers stage labels the segments);
        # without labels the whole file is one speaker
        labels = _speaker_labels(context, len(segments))
        groups: dict[str, list[int]] = {}
        for k, lab in enumerate(labels):
            groups.setdefault(lab, []).append(k)
        if cfg.pitch_floor_hz is not None and cfg.pitch_ceiling_hz is not None:
            per_clip_f0: list[np.ndarray] = [np.zeros(0) for _ in clips]
        else:
            per_clip_f0 = list(self._per_clip("first_pass", clips, audio.sr, {},
                                              lambda i: np.zeros(0)))
        rows_by_index: dict[int, ProsodyMeasures] = {}
        ranges: dict[str, PitchRange] = {}
        for lab, idx in groups.items():
            f0 = np.concatenate([np.zeros(0), *(per_clip_f0[k] for k in idx)])
            prange = pitch_range_from_f0(f0, pitch_floor_hz=cfg.pitch_floor_hz,
                                         pitch_ceiling_hz=cfg.pitch_ceiling_hz)
            ranges[lab] = prange
            who = f" of speaker {lab}" if len(groups) > 1 else ""
            if prange.source == "default":
                warnings.append(
                    f"the two-pass pitch range{who} found only {prange.voiced_frames} voiced "
                    f"frames (< {FIRST_PASS_MIN_VOICED_FRAMES}); Praat's default range "
                    f"{DEFAULT_PITCH_FLOOR_HZ:g}–{DEFAULT_PITCH_CEILING_HZ:g} Hz was used")
            # raised speech: a segment whose own F0 lies above the speaker's ceiling gets its
            # own, higher ceiling (only for the estimated range, never a configured one)
            by_ceiling: dict[float, list[int]] = {}
            for k in idx:
                c = (prange.ceiling_hz if prange.source != "two-pass"
                     or cfg.pitch_ceiling_hz is not None
                     else segment_ceiling(prange.ceiling_hz, per_clip_f0[k]))
                by_ceiling.setdefault(c, []).append(k)
            items: list[Any] = []
            order: list[int] = []
            for ceiling, ks in by_ceiling.items():
                settings = {"pitch_floor_hz": prange.floor_hz, "pitch_ceiling_hz": ceiling,
                            "min_pause_s": cfg.min_pause_s, "min_segment_s": cfg.min_segment_s,
                            "silence_threshold_db": cfg.silence_threshold_db,
                            "min_dip_db": cfg.min_dip_db}

                def lost(i: int, floor: float = prange.floor_hz, ceiling: float = ceiling
                         ) -> dict[str, Any]:
                    return {"row": _failed_row(floor, ceiling, LOST_REASON)
                            .model_dump(mode="json"),
                            "error": LOST_REASON}

                items.extend(self._per_clip("measure", [clips[k] for k in ks], audio.sr,
                                            settings, lost))
                order.extend(ks)
            for k, item in zip(order, items, strict=True):
                row, error = ProsodyMeasures(**item["row"]), item["error"]
                if error is not None:
                    seg = segments[k]
                    warnings.append(f"segment {k} ({seg.start_s:.2f}–{seg.end_s:.2f} s): "
                                    f"{error}")
                rows_by_index[k] = row
        rows = [rows_by_index[k] for k in range(len(segments))]
        prange = (max(ranges.values(), key=lambda r: r.voiced_frames) if ranges
                  else pitch_range_from_f0(np.zeros(0), pitch_floor_hz=cfg.pitch_floor_hz,
                                           pitch_ceiling_hz=cfg.pitch_ceiling_hz))
        session: dict[str, Any] = {
            "pitch_floor_hz": prange.floor_hz,
            "pitch_ceiling_hz": prange.ceiling_hz,
            "pitch_range_source": prange.source,
            "first_pass_voiced_frames": prange.voiced_frames,
            "first_pass_q25_hz": prange.q25_hz,
            "first_pass_q75_hz": prange.q75_hz,
            "praat_ran_in": self._praat_ran_in,
        }
        if len(ranges) > 1:
            session["pitch_range_by_speaker"] = {
                lab: {"pitch_floor_hz": r.floor_hz, "pitch_ceiling_hz": r.ceiling_hz,
                      "source": r.source, "voiced_frames": r.voiced_frames}
                for lab, r in ranges.items()}
        return StreamOutput(name=self.name, provenance=self.provenance(), rows=rows,
                            session=session, warnings=warnings,
                            elapsed_s=time.perf_counter() - t0)

    def contours(self, audio: Audio, segments: Sequence[Segment], *, pitch_floor_hz: float,
                 pitch_ceiling_hz: float) -> Contours:
        """F0, intensity, HNR and F1–F3 of every segment on the file's 10-ms grid.

        Run only when asked (``fusion.analyze(path, contours=True)``), after :meth:`run`,
        with the pitch range it used (its ``session``). Each segment is measured from its
        first grid frame (:func:`features.prosody.contours.grid_start`) in the Praat worker
        (as :meth:`run`), chunk by chunk, so memory grows with the frames only.
        """
        if not self._loaded:
            self.load()
        starts = [grid_start(seg.start_s) * CONTOUR_STEP_S for seg in segments]
        clips = [audio.crop(s, seg.end_s) for s, seg in zip(starts, segments, strict=True)]
        settings = {"pitch_floor_hz": float(pitch_floor_hz),
                    "pitch_ceiling_hz": float(pitch_ceiling_hz)}
        arrays = self._per_clip("contours", clips, audio.sr, settings, lambda i: None)
        return assemble_contours([s.start_s for s in segments], [s.end_s for s in segments],
                                 arrays)
