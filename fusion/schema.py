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

import hashlib
import json
import math
import os
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model

from features.egemaps.stream import EgemapsFeatures
from features.emotion.stream import EmotionMeasures
from features.prosody.stream import ProsodyMeasures
from features.registry import StreamSpec, stream_specs
from features.sentiment.stream import SentimentMeasures
from features.stream import Provenance, StreamStatus
from features.transcript.stream import SegmentTranscript

__all__ = [
    "SCHEMA_VERSION",
    "dumps_strict",
    "strict_jsonable",
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
    "public_path",
    "PATH_MODES",
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
    warmup: bool = Field(
        False, description="live sessions: scored while the speaker had fewer than the "
        "model's normalisation.min_segments segments (the baseline was still forming); "
        "always false in file analyses, which score every segment with all of them")


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
    egemaps: EgemapsFeatures | None = None
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
    depends_on: dict[str, str] = Field(
        default_factory=dict, description="sha256 of every file the result depends on, by "
        "config key (fusion.model, fusion.population_norms, fusion.speaker_profile); batch "
        "results")

    #: frame contours of ``analyze(..., contours=True)``: in memory only, never in the JSON
    _contours: Any = PrivateAttr(default=None)

    # ---------------------------------------------------------------- contours
    def keep_contours(self, contours: Any) -> None:
        """Attach the prosody stream's :class:`~features.prosody.contours.Contours` (the
        engine does this for ``contours=True``)."""
        self._contours = contours

    @property
    def has_contours(self) -> bool:
        return self._contours is not None

    def contours(self, file: str | None = None) -> Any:
        """Frame contours: F0, intensity, HNR, F1–F3 on a 10-ms grid, one row a frame.

        Parameters
        ----------
        file : str, optional
            The ``file`` index value (default ``source.path``, as :meth:`to_dataframe`).

        Returns
        -------
        DataFrame
            Indexed by ``MultiIndex(file, time)`` (``time``: Timedelta from the start of the
            file, multiples of 10 ms, inside the segments); columns ``segment`` (the segment's
            index), ``speaker`` (only when the speaker stage ran: ``speakers.mode`` not
            ``"off"``), then ``f0_hz``, ``intensity_db``, ``hnr_db``, ``f1_hz``, ``f2_hz``,
            ``f3_hz`` (float32, NaN where undefined). Methods in ``docs/measures.md``.

        Raises
        ------
        ParameterError
            The result was made without ``contours=True`` (or read back from JSON, which does
            not hold contours, or the prosody stream did not run).
        """
        import numpy as np
        import pandas as pd

        from features.errors import ParameterError

        c = self._contours
        if c is None:
            raise ParameterError(
                f"this result of {self.source.path!r} has no contours: analyse with "
                "fusion.analyze(path, contours=True) (or `vocalfusion analyze --contours "
                "parquet`); contours are not stored in the JSON result, and need the "
                "prosody stream")
        name = self.source.path if file is None else file
        index = pd.MultiIndex.from_arrays(
            [pd.Categorical.from_codes(np.zeros(c.n_frames, dtype=np.int8), [name]),
             pd.to_timedelta(c.frame * int(round(c.step_s * 1000)), unit="ms")],
            names=["file", "time"])
        data: dict[str, Any] = {"segment": c.segment}
        speakers = [getattr(seg, "speaker", None) for seg in self.segments]
        cfg_speakers = self.config.get("speakers") if isinstance(self.config, dict) else None
        mode = cfg_speakers.get("mode", "off") if isinstance(cfg_speakers, dict) else "off"
        if mode != "off" and any(sp is not None for sp in speakers):
            labels = sorted({str(sp) for sp in speakers if sp is not None})
            code = {lab: i for i, lab in enumerate(labels)}
            seg_codes = np.array([code[str(sp)] if sp is not None else -1 for sp in speakers],
                                 dtype=np.int32)
            data["speaker"] = pd.Categorical.from_codes(seg_codes[c.segment], labels)
        data.update(c.values)
        return pd.DataFrame(data, index=index)

    def plot(self, **kwargs: Any) -> Any:
        """One matplotlib ``Figure``: scores over time with confidence, F0 with segments (and
        speakers), per-stream contributions. Needs ``pip install "vocalfusion[plot]"``; see
        :func:`fusion.plot.session` (``kwargs``: figure size)."""
        from fusion.plot import session

        return session(self, **kwargs)

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, with the result's ``privacy`` settings applied (see
        :meth:`with_privacy`): missing values are ``None``; a non-finite measurement is the
        string ``"Infinity"``, ``"-Infinity"`` or ``"NaN"`` (never ``None``), so the dict
        serialises as strict JSON."""
        return cast(dict[str, Any], strict_jsonable(self.with_privacy().model_dump(mode="json")))

    def to_json(self, *, indent: int | None = 2) -> str:
        """Strict JSON (see :meth:`to_dict`), with the result's ``privacy`` settings applied;
        :meth:`from_json` reads it back exactly."""
        return dumps_strict(self.with_privacy().model_dump(mode="json"), indent=indent)

    def privacy(self) -> dict[str, Any]:
        """The ``privacy`` section of the result's config (defaults where absent).

        Voiceprints are kept when ``privacy.voiceprints`` or ``speakers.voiceprints`` is true:
        asking the speaker stage for voiceprints is asking for them in the result."""
        cfg = self.config if isinstance(self.config, dict) else {}
        p = cfg.get("privacy")
        p = p if isinstance(p, dict) else {}
        sp = cfg.get("speakers")
        asked = bool(sp.get("voiceprints", False)) if isinstance(sp, dict) else False
        return {"paths": p.get("paths", "as_given"),
                "redact_transcript": bool(p.get("redact_transcript", False)),
                "voiceprints": bool(p.get("voiceprints", False)) or asked}

    def with_privacy(self, privacy: dict[str, Any] | None = None) -> SessionResult:
        """This result as its ``privacy`` config section (or ``privacy``) allows it to leave
        the machine; ``self`` when nothing changes. Idempotent.

        * ``paths``: the input path, the fusion model/profile/norms paths and absolute model
          paths become the file name (``"name"``) or ``sha256:<16 hex>`` of the absolute path
          (``"hashed"``), everywhere in the result (warnings and reasons included).
        * ``redact_transcript``: every word's and segment's text and the transcript stream's
          session text are emptied; counts, timings and probabilities stay.
        * ``voiceprints`` false: every ``voiceprint`` value is removed (set to null).
        """
        p = self.privacy() if privacy is None else {**self.privacy(), **privacy}
        data = self.model_dump(mode="json")
        changed = False
        mode = p["paths"]
        if mode != "as_given":
            subst = _path_substitutions(data, mode)
            if subst:
                replaced = _replace_strings(data, subst)
                changed = replaced != data
                data = replaced
        if p["redact_transcript"]:
            changed |= _redact_transcript(data)
        if not p["voiceprints"]:
            changed |= _drop_voiceprints(data)
        if not changed:
            return self
        model = result_models()[1] if type(self) is SessionResult else type(self)
        shown = model.model_validate(data)
        shown._contours = self._contours  # frame contours hold no text, path or voiceprint
        return shown

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
        mode = self.privacy()["paths"]
        shown = self.with_privacy()
        name = shown.source.path if file is None else public_path(file, mode)
        abs_path = public_path(absolute_path(self.source.path), mode)
        return [_flatten_segment(name, abs_path, seg) for seg in shown.segments]

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
        mode = self.privacy()["paths"]
        rec: dict[str, Any] = {
            "file": public_path(self.source.path if file is None else file, mode),
            "path_abs": public_path(absolute_path(self.source.path), mode),
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


#: the values of ``privacy.paths``
PATH_MODES = ("as_given", "name", "hashed")
_HASHED = "sha256:"


def public_path(path: str, mode: str) -> str:
    """A path as ``privacy.paths`` lets it leave the machine.

    ``"as_given"``: unchanged; ``"name"``: the file name; ``"hashed"``: ``sha256:`` and the
    first 16 hex digits of the sha256 of the absolute path (the same key for a path given
    relative or absolute). Standard input (``-``) stays; a hashed path stays as it is.
    """
    if mode == "as_given" or path in (STDIN_FILE, _STDIN_ABS, "<signal>") or not path:
        return path
    if mode == "name":
        return os.path.basename(path.rstrip("/\\")) or path
    if path.startswith(_HASHED):
        return path
    return _HASHED + hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:16]


def _path_substitutions(data: dict[str, Any], mode: str) -> dict[str, str]:
    """Every path string in a result dict that privacy must rewrite → its public form."""
    found: list[str] = [data["source"]["path"]]
    fusion = data.get("fusion") or {}
    if fusion.get("model_path"):
        found.append(fusion["model_path"])
    fcfg = (data.get("config") or {}).get("fusion") or {}
    for key in ("speaker_profile", "population_norms"):
        if isinstance(fcfg.get(key), str) and fcfg[key]:
            found.append(fcfg[key])
    if isinstance(fcfg.get("model"), str) and fcfg["model"] != "prior":
        found.append(fcfg["model"])
    for info in (data.get("streams") or {}).values():
        mid = (info.get("provenance") or {}).get("model_id")
        if isinstance(mid, str) and os.path.isabs(mid):
            found.append(mid)
    for section in (data.get("config") or {}).values():
        if isinstance(section, dict):
            found.extend(v for v in section.values()
                         if isinstance(v, str) and os.path.isabs(v))
    subst: dict[str, str] = {}
    for path in found:
        if path.startswith(_HASHED):
            continue
        for form in {path, os.path.abspath(path)} if path not in (STDIN_FILE, _STDIN_ABS) \
                else {path}:
            public = public_path(path, mode)
            if form and form != public:
                subst[form] = public
    return subst


def _replace_strings(obj: Any, subst: dict[str, str]) -> Any:
    """``obj`` with every occurrence of each key of ``subst`` replaced (longest first)."""
    order = sorted(subst, key=len, reverse=True)

    def walk(o: Any) -> Any:
        if isinstance(o, str):
            if o in subst:
                return subst[o]
            for k in order:
                if k in o:
                    o = o.replace(k, subst[k])
            return o
        if isinstance(o, dict):
            return {walk(k): walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    return walk(obj)


def _redact_transcript(data: dict[str, Any]) -> bool:
    """Empty every text of the transcript (in place); True when something changed."""
    changed = False
    for seg in data.get("segments") or []:
        tr = seg.get("transcript")
        if not tr:
            continue
        if tr.get("text"):
            tr["text"], changed = "", True
        for w in tr.get("words") or []:
            if w.get("text"):
                w["text"], changed = "", True
    for info in (data.get("streams") or {}).values():
        session = info.get("session") or {}
        for key, value in session.items():
            if "text" in key and isinstance(value, str) and value:
                session[key], changed = "", True
    return changed


def _drop_voiceprints(obj: Any) -> bool:
    """Set every ``voiceprint`` value to None (in place); True when something changed."""
    changed = False
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "voiceprint" and value is not None:
                obj[key], changed = None, True
            else:
                changed |= _drop_voiceprints(value)
    elif isinstance(obj, list):
        for value in obj:
            changed |= _drop_voiceprints(value)
    return changed


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


# --------------------------------------------------------------------------------- strict JSON
# Every JSON file vocalfusion writes (results, manifest.json) is strict JSON (RFC 8259): a
# non-finite float becomes the string "Infinity", "-Infinity" or "NaN" (pydantic reads these
# back as the float), never null (which means "not measured") and never a bare Infinity.

def strict_jsonable(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``"Infinity"``, ``"-Infinity"`` or
    ``"NaN"`` (dicts, lists and tuples are copied; other values are returned as they are)."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: strict_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_jsonable(v) for v in obj]
    return obj


def dumps_strict(obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON text of ``obj``: non-finite floats as in :func:`strict_jsonable`."""
    return json.dumps(strict_jsonable(obj), indent=indent, sort_keys=sort_keys,
                      ensure_ascii=False, allow_nan=False)
