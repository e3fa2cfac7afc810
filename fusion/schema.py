"""Result models (pydantic v2): session → segments → per-stream measurements and scores.

These models are the JSON schema of saved results and of the HTTP API. ``SessionResult``
round-trips through JSON exactly, and :meth:`SessionResult.to_dataframe` gives one row per
segment indexed by ``MultiIndex(file, start, end)`` (``Timedelta`` levels), as audinterface and
opensmile do, so eGeMAPS tables join onto ours.

``SegmentResult`` has one field per registered stream (:mod:`features.registry`), typed by
the stream's row model. The built-in streams' fields are declared on the class for static
typing (a test checks them against the registry); :func:`result_models` extends
``SegmentResult`` and ``SessionResult`` with streams registered since.

``schema_version`` follows semantic versioning: a new field bumps the minor version, a
renamed or removed one the major version; ``docs/changelog.md`` lists every change.
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from features.emotion.stream import EmotionMeasures
from features.prosody.stream import ProsodyMeasures
from features.registry import StreamSpec, stream_specs
from features.sentiment.stream import SentimentMeasures
from features.stream import Provenance, StreamStatus
from features.transcript.stream import SegmentTranscript

__all__ = [
    "SCHEMA_VERSION",
    "SessionStatus",
    "SourceInfo",
    "StreamInfo",
    "ScoreDetail",
    "SegmentScores",
    "ScoreSummary",
    "SessionSummary",
    "SpeakerSummary",
    "DiarizationInfo",
    "Reference",
    "FusionInfo",
    "SegmentResult",
    "SessionResult",
    "TABLE_INDEX",
    "STDIN_FILE",
    "absolute_path",
    "segment_table_csv",
    "read_segment_table",
    "result_models",
]

#: version of the result JSON format (semver; see docs/changelog.md)
SCHEMA_VERSION = "1.2.0"

_FROZEN = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

#: what a stress value is relative to: the speaker's stored profile, this session's own
#: segments of that speaker, or population reference values (docs/scores.md, "Reference")
Reference = Literal["profile", "session", "population"]


class SessionStatus(StrEnum):
    OK = "ok"
    INSUFFICIENT_SPEECH = "insufficient speech"


class SourceInfo(BaseModel):
    """The analysed input."""

    model_config = _FROZEN

    path: str
    sha256: str | None = None
    duration_s: float
    original_sr: int
    channels: int
    format: str
    decoder: str
    dead_channels: list[int] = Field(default_factory=list)


class StreamInfo(BaseModel):
    """How one stream fared on this file."""

    model_config = _FROZEN

    status: StreamStatus
    reason: str | None = None
    provenance: Provenance | None = None
    warnings: list[str] = Field(default_factory=list)
    elapsed_s: float | None = None
    session: dict[str, Any] = Field(default_factory=dict)


class ScoreDetail(BaseModel):
    """One fused score of one segment, with its explanation.

    ``logit = sum(contributions.values())`` (the intercept is the ``"intercept"`` entry), and
    ``value = sigmoid(logit)`` for the prior model (a calibrated model maps it further). For a
    regression head (e.g. a continuous cortisol target) ``logit`` is the prediction in
    training-SD units and ``value = Φ(logit)`` (the standard normal CDF).
    """

    model_config = _FROZEN

    value: float | None = Field(description="score in [0, 1]; None when no evidence")
    logit: float | None = None
    confidence: float = Field(0.0, ge=0.0, le=1.0)
    contributions: dict[str, float] = Field(
        default_factory=dict, description="signed log-odds per stream (+ 'intercept')")
    feature_contributions: dict[str, float] = Field(
        default_factory=dict, description="signed log-odds per input feature")
    reference: Reference | None = Field(
        None, description="the baseline carrying most of the speaker-relative weight")
    feature_references: dict[str, Reference] = Field(
        default_factory=dict, description="baseline of each speaker-relative feature")


class SegmentScores(BaseModel):
    model_config = _FROZEN

    stress: ScoreDetail
    depression: ScoreDetail
    features_speaker_z: dict[str, float | None] = Field(
        default_factory=dict, description="features z-scored against the speaker baseline")
    features_population_z: dict[str, float | None] = Field(
        default_factory=dict, description="features z-scored against population norms")


class ScoreSummary(BaseModel):
    model_config = _FROZEN

    mean: float | None = Field(description="duration-weighted mean over scored segments")
    p90: float | None = None
    peak: float | None = None
    peak_segment: int | None = None
    fraction_above_threshold: float | None = Field(None, description="of scored speech time")
    threshold: float = 0.5
    trend_per_min: float | None = Field(None, description="least-squares slope, score units/min")
    mean_confidence: float | None = None
    reference: Reference | None = Field(
        None, description="the reference of most scored speech time; "
                          "fraction_above_threshold is given only for profile or population")


class FusionInfo(BaseModel):
    """Which fusion model made the scores, and how far to trust it."""

    model_config = _FROZEN

    model_name: str
    model_path: str | None = None
    calibrated: bool
    calibration_status: str = Field(description="plain words, e.g. 'prior — not calibrated "
                                    "on labelled data'")
    model_sha256: str | None = None


class SessionSummary(BaseModel):
    model_config = _FROZEN

    speech_s: float
    n_segments: int
    stress: ScoreSummary | None = None
    depression: ScoreSummary | None = None
    coverage: dict[str, float] = Field(
        default_factory=dict, description="fraction of speech time each stream measured")


class SpeakerSummary(BaseModel):
    """One speaker of the session: who, how much speech, and their own summary."""

    model_config = _FROZEN

    label: str = Field(description="'S1', 'S2', … (auto/off), 'ch0', … (channels)")
    speaker_id: str | None = Field(None, description="a known identity (profile or given)")
    speech_s: float
    n_segments: int
    focus: bool = Field(False, description="the speaker the session summary leads with")
    profile_similarity: float | None = Field(
        None, description="cosine of this speaker's voiceprint with the profile's")
    matches_profile: bool | None = Field(
        None, description="None when no profile voiceprint was given")
    voiceprint: list[float] | None = Field(
        None, description="biometric: only with speakers.voiceprints = true")
    summary: SessionSummary | None = None


class DiarizationInfo(BaseModel):
    """How speakers were found (``speakers`` config section)."""

    model_config = _FROZEN

    mode: Literal["auto", "channels", "off"]
    backend: str
    num_speakers: int
    count_estimated: bool
    focus: Literal["all", "longest", "profile"]
    policy: str


class SegmentResult(BaseModel):
    """Everything measured inside ``[start_s, end_s)``."""

    model_config = _FROZEN

    index: int
    start_s: float
    end_s: float
    speaker: str | None = Field(None, description="speaker label or known speaker_id")
    overlap: bool = Field(False, description="two voices at once; left out of baselines")
    prosody: ProsodyMeasures | None = None
    emotion: EmotionMeasures | None = None
    transcript: SegmentTranscript | None = None
    sentiment: SentimentMeasures | None = None
    scores: SegmentScores | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class SessionResult(BaseModel):
    """The analysis of one recording."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    schema_version: str = SCHEMA_VERSION
    package_version: str
    analysed_at: datetime
    status: SessionStatus
    source: SourceInfo
    segments: list[SegmentResult]
    streams: dict[str, StreamInfo]
    fusion: FusionInfo | None = None
    summary: SessionSummary | None = None
    speaker_id: str | None = Field(None, description="the focus speaker's id")
    speakers: list[SpeakerSummary] = Field(default_factory=list,
                                           description="every speaker, the focus first")
    diarization: DiarizationInfo | None = None
    config: dict[str, Any]
    config_hash: str
    warnings: list[str] = Field(default_factory=list)

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (NaN never appears: missing values are ``None``)."""
        return self.model_dump(mode="json")

    def to_json(self, *, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> SessionResult:
        """Read a saved result (rows of every registered stream are typed)."""
        model = result_models()[1] if cls is SessionResult else cls
        return model.model_validate_json(text)

    # ---------------------------------------------------------------- tables
    def segment_records(self, file: str | None = None) -> list[dict[str, Any]]:
        """One flat dict per segment: ``file, start_s, end_s, path_abs`` then every measure.

        ``file`` defaults to ``source.path`` (see :meth:`to_dataframe` for the rule).
        """
        name = self.source.path if file is None else file
        abs_path = absolute_path(self.source.path)
        return [_flatten_segment(name, abs_path, seg) for seg in self.segments]

    def to_dataframe(self, file: str | None = None) -> Any:
        """Segment table indexed by ``MultiIndex(file, start, end)`` with Timedelta levels.

        The one table shape of every output (``analyze --format csv|parquet``, batch
        ``segments.parquet``, ``process_files_dataframe``), so an openSMILE / audinterface
        table (same index) joins onto any of them.

        Parameters
        ----------
        file : str, optional
            The ``file`` index value: the path as the user gave it. Default ``source.path``
            (what was passed to ``process_file``); ``-`` for audio read from stdin.

        Notes
        -----
        The first column, ``path_abs``, is the absolute path (not symlink-resolved) of the
        input, ``<stdin>`` for stdin: a stable key whatever folder the command ran from.
        Then: prosody measures by their names (``f0_mean_hz`` …), ``emotion_<label>``
        probabilities, ``sentiment_*``, ``text``/``word_count``, ``stress``,
        ``stress_confidence``, ``depression_probability``, ``depression_confidence``.
        Missing values are NaN.
        """
        import pandas as pd

        records = self.segment_records(file)
        index = pd.MultiIndex.from_arrays(
            [
                [r.pop("file") for r in records],
                pd.to_timedelta([r.pop("start_s") for r in records], unit="s"),
                pd.to_timedelta([r.pop("end_s") for r in records], unit="s"),
            ],
            names=list(TABLE_INDEX),
        )
        df = pd.DataFrame.from_records(records, index=index)
        return df

    def session_record(self, file: str | None = None) -> dict[str, Any]:
        """One flat dict for the whole session (used by batch ``sessions.parquet``).

        ``file`` and ``path_abs`` follow the rule of :meth:`to_dataframe`.
        """
        s = self.summary
        rec: dict[str, Any] = {
            "file": self.source.path if file is None else file,
            "path_abs": absolute_path(self.source.path),
            "sha256": self.source.sha256,
            "duration_s": self.source.duration_s,
            "status": str(self.status),
            "n_segments": len(self.segments),
            "speaker_id": self.speaker_id,
            "n_speakers": len(self.speakers),
            "speech_s": s.speech_s if s else 0.0,
            "config_hash": self.config_hash,
            "package_version": self.package_version,
            "fusion_model": self.fusion.model_name if self.fusion else None,
            "calibration_status": self.fusion.calibration_status if self.fusion else None,
        }
        for target in ("stress", "depression"):
            summ = getattr(s, target) if s else None
            for key in ("mean", "p90", "peak", "fraction_above_threshold", "trend_per_min",
                        "mean_confidence"):
                rec[f"{target}_{key}"] = getattr(summ, key) if summ else None
        for name, info in self.streams.items():
            rec[f"{name}_status"] = str(info.status)
        return rec


#: index levels of every segment table (Timedelta ``start``/``end`` in DataFrames and Parquet)
TABLE_INDEX = ("file", "start", "end")
#: the ``file`` value of audio read from standard input (``vocalfusion analyze -``)
STDIN_FILE = "-"
_STDIN_ABS = "<stdin>"


def absolute_path(path: str) -> str:
    """The ``path_abs`` column: ``os.path.abspath(path)``; ``<stdin>`` for stdin input."""
    if path in (STDIN_FILE, _STDIN_ABS):
        return _STDIN_ABS
    return os.path.abspath(path)


def segment_table_csv(df: Any) -> str:
    """A segment table as CSV: columns ``file, start, end`` (seconds, float) then the rest.

    CSV has no Timedelta type, so ``start``/``end`` are written in seconds;
    :func:`read_segment_table` turns them back into Timedelta levels.
    """
    flat = df.reset_index()
    flat["start"] = flat["start"].dt.total_seconds()
    flat["end"] = flat["end"].dt.total_seconds()
    return str(flat.to_csv(index=False))


def read_segment_table(path: str | os.PathLike[str]) -> Any:
    """Read a segment table written as ``.csv`` or ``.parquet`` into the DataFrame shape.

    Returns
    -------
    DataFrame
        ``MultiIndex(file, start, end)`` with Timedelta ``start``/``end``, the shape of
        :meth:`SessionResult.to_dataframe`.
    """
    import pandas as pd

    if str(path).endswith(".csv"):
        flat = pd.read_csv(path, dtype={"file": str, "path_abs": str})
        flat["start"] = pd.to_timedelta(flat["start"], unit="s")
        flat["end"] = pd.to_timedelta(flat["end"], unit="s")
        return flat.set_index(list(TABLE_INDEX))
    return pd.read_parquet(path)


def _num(v: Any) -> Any:
    if v is None:
        return math.nan
    return v


def _flatten_segment(file: str, abs_path: str, seg: SegmentResult) -> dict[str, Any]:
    rec: dict[str, Any] = {"file": file, "start_s": seg.start_s, "end_s": seg.end_s,
                           "path_abs": abs_path,
                           "segment": seg.index, "duration_s": round(seg.end_s - seg.start_s, 6),
                           "speaker": seg.speaker, "overlap": seg.overlap}
    for spec in stream_specs():
        row = getattr(seg, spec.name, None)
        if row is not None:
            rec.update(spec.row_columns(row))
    if seg.scores is not None:
        rec["stress"] = _num(seg.scores.stress.value)
        rec["stress_confidence"] = seg.scores.stress.confidence
        rec["depression_probability"] = _num(seg.scores.depression.value)
        rec["depression_confidence"] = seg.scores.depression.confidence
    return rec


def result_models() -> tuple[type[SegmentResult], type[SessionResult]]:
    """``(SegmentResult, SessionResult)`` with one segment field per registered stream.

    The classes themselves while only the built-in streams are registered; otherwise
    subclasses whose segments carry a ``<name>: <row model> | None`` field for every stream
    registered later.
    """
    extra = tuple(s for s in stream_specs() if s.name not in SegmentResult.model_fields)
    return _extended_results(extra) if extra else (SegmentResult, SessionResult)


@lru_cache(maxsize=16)
def _extended_results(extra: tuple[StreamSpec, ...]
                      ) -> tuple[type[SegmentResult], type[SessionResult]]:
    fields: dict[str, Any] = {spec.name: (spec.row_model | None, None) for spec in extra}
    seg_model: type[SegmentResult] = create_model(
        "SegmentResult", __base__=SegmentResult, __module__=__name__, **fields)
    session_model: type[SessionResult] = create_model(
        "SessionResult", __base__=SessionResult, __module__=__name__,
        segments=(list[seg_model], ...))
    return seg_model, session_model


def _check_builtin_fields() -> None:
    """The declared stream fields of :class:`SegmentResult` are the registry's row models."""
    for spec in stream_specs():
        field = SegmentResult.model_fields.get(spec.name)
        if field is not None and field.annotation != spec.row_model | None:
            raise TypeError(f"SegmentResult.{spec.name} is {field.annotation}, the registry "
                            f"says {spec.row_model} | None")


_check_builtin_fields()
