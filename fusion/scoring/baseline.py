"""The two normalisations of fusion features: speaker baseline and population norms.

*Speaker baseline* (within-person; what acute-stress markers need, EVIDENCE.md C): a robust
z-score ``z = (x − median) / max(1.4826 · MAD, floor)`` where median and MAD come either

* from a stored :class:`SpeakerProfile` (``vocalfusion baseline build sessions/*.json -o
  speaker.json``): the speaker's typical values pooled over earlier sessions, or
* from the current session itself (default). A feature needs values in at least
  ``min_segments`` (3) segments; with exactly 2 the session median is the location and the
  population SD the scale (a conservative fallback: between-person SDs are larger than
  within-person ones); with fewer the speaker z-score is ``None`` (absent).

The 1.4826 factor makes the MAD a consistent estimator of a normal SD (Rousseeuw & Croux,
1993, *JASA* 88:1273–1283). The per-feature floors are engineering choices stored in the model
JSON (``normalisation.speaker_scale_floors``).

*Population norms* (between-person; what trait-like depression markers need):
``z = (x − mean) / sd`` with sex-specific reference values when the speaker's sex is known,
else the sex-independent ones (``configs/population_norms.json``; most bundled values are
labelled engineering placeholders — build your own with ``baseline build --norms``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.errors import ConfigError, ParameterError
from fusion._jsonio import read_json_file
from fusion.schema import SegmentResult, SessionResult
from fusion.scoring.vector import FEATURES, raw_features

__all__ = [
    "one_speaker_sessions",
    "Sex",
    "NormalisationSettings",
    "RobustStat",
    "robust_location_scale",
    "PopulationNorms",
    "SpeakerProfile",
    "BaselineEntry",
    "speaker_baseline",
    "speaker_z",
    "population_z",
    "build_profile",
    "profile_from_segments",
    "build_norms",
    "load_profile",
    "save_profile",
    "load_norms",
]

Sex = Literal["female", "male"]
PROFILE_FORMAT: Final = "vocalfusion-speaker-profile"
NORMS_FORMAT = "vocalfusion-population-norms"


class NormalisationSettings(BaseModel):
    """How features are z-scored (read from a model/prior JSON's ``normalisation`` block)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    robust_scale_factor: float = Field(gt=0, le=100)
    min_segments: int = Field(ge=2, le=1_000_000)
    z_clip: float = Field(gt=0, le=100)
    min_words: int = Field(ge=1, le=1_000_000)
    speaker_scale_floors: dict[str, float]

    @classmethod
    def from_json(cls, block: Mapping[str, Any], *, source: str) -> NormalisationSettings:
        """Parse a ``normalisation`` block; keys ending in ``_note`` or starting with ``_`` are
        documentation and ignored."""
        clean = {k: v for k, v in block.items() if not _is_note(k)}
        floors = clean.get("speaker_scale_floors")
        if isinstance(floors, Mapping):
            clean["speaker_scale_floors"] = {k: v for k, v in floors.items() if not _is_note(k)}
        try:
            settings = cls.model_validate(clean)
        except ValidationError as exc:
            raise ConfigError(f"{source}: invalid 'normalisation' block: {exc}") from None
        unknown = sorted(set(settings.speaker_scale_floors) - set(FEATURES))
        if unknown:
            raise ConfigError(f"{source}: speaker_scale_floors names unknown features {unknown}")
        bad = {k: v for k, v in settings.speaker_scale_floors.items()
               if not (0 < v <= 1e6 and math.isfinite(v))}
        if bad:
            raise ConfigError(f"{source}: speaker_scale_floors must be in (0, 1e6], got {bad}")
        return settings

    def floor(self, feature: str) -> float:
        """The scale floor of ``feature``; a feature without one cannot be speaker-normalised."""
        try:
            return self.speaker_scale_floors[feature]
        except KeyError:
            raise ConfigError(f"no speaker_scale_floors entry for feature {feature!r}") from None


def _is_note(key: str) -> bool:
    return key.startswith("_") or key.endswith("_note")


@dataclass(frozen=True)
class RobustStat:
    """Median and robust scale of one feature, and how many values they came from."""

    median: float
    scale: float
    n: int


def robust_location_scale(values: Sequence[float] | np.ndarray, *, floor: float,
                          factor: float = 1.4826) -> RobustStat:
    """Median and ``max(factor · MAD, floor)`` of finite ``values``.

    Parameters
    ----------
    values : sequence of float
        Must hold at least one finite value.
    floor : float
        Smallest scale returned (> 0), in the feature's unit.
    factor : float
        MAD → SD factor; 1.4826 for normal data (Rousseeuw & Croux 1993).

    Examples
    --------
    >>> s = robust_location_scale([1.0, 2.0, 3.0, 4.0, 100.0], floor=0.1)
    >>> s.median, round(s.scale, 4)
    (3.0, 1.4826)
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ParameterError("robust_location_scale needs at least one finite value, got none")
    if not floor > 0:
        raise ParameterError(f"floor must be > 0, got {floor!r}")
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    return RobustStat(median=med, scale=max(factor * mad, floor), n=int(x.size))


# ------------------------------------------------------------------------- population norms
class PopulationNorms:
    """Population reference values (mean, SD) per feature, optionally by sex.

    Parameters
    ----------
    data : dict
        The parsed ``population_norms.json`` object.
    source : str
        Path or name (for messages and provenance).
    sha256 : str, optional
    """

    def __init__(self, data: Mapping[str, Any], *, source: str, sha256: str | None = None):
        if data.get("format") != NORMS_FORMAT:
            raise ConfigError(f"{source}: not a population-norms file (format "
                              f"{data.get('format')!r}, expected {NORMS_FORMAT!r})")
        feats = data.get("features")
        if not isinstance(feats, Mapping):
            raise ConfigError(f"{source}: population norms need a 'features' object")
        self.source = source
        self.sha256 = sha256
        self.name = str(data.get("name", Path(source).stem))
        self._ref: dict[str, dict[str, tuple[float, float, str]]] = {}
        for feat, entry in feats.items():
            if feat not in FEATURES:
                raise ConfigError(f"{source}: unknown feature {feat!r} in population norms; "
                                  f"known: {', '.join(sorted(FEATURES))}")
            groups: dict[str, tuple[float, float, str]] = {}
            for group in ("all", "female", "male"):
                g = entry.get(group)
                if g is None:
                    continue
                try:
                    mean, sd = float(g["mean"]), float(g["sd"])
                except (KeyError, TypeError, ValueError):
                    raise ConfigError(f"{source}: {feat}.{group} needs numeric 'mean' and "
                                      "'sd'") from None
                if not (math.isfinite(mean) and math.isfinite(sd) and 0 < sd <= 1e6
                        and abs(mean) <= 1e6):
                    raise ConfigError(f"{source}: {feat}.{group}: mean must be finite with "
                                      "|mean| ≤ 1e6 and sd > 0 (≤ 1e6), got "
                                      f"mean={mean!r}, sd={sd!r}")
                groups[group] = (mean, sd, str(g.get("status", "unspecified")))
            if "all" not in groups:
                raise ConfigError(f"{source}: {feat} needs an 'all' (sex-independent) entry")
            self._ref[feat] = groups

    def reference(self, feature: str, sex: Sex | None = None) -> tuple[float, float] | None:
        """(mean, sd) for ``feature`` — sex-specific when known and available — or ``None``."""
        groups = self._ref.get(feature)
        if groups is None:
            return None
        g = groups.get(sex) if sex is not None else None
        mean, sd, _ = g if g is not None else groups["all"]
        return mean, sd

    def status(self, feature: str, sex: Sex | None = None) -> str | None:
        groups = self._ref.get(feature)
        if groups is None:
            return None
        g = groups.get(sex) if sex is not None else None
        return (g if g is not None else groups["all"])[2]

    def __contains__(self, feature: object) -> bool:
        return feature in self._ref

    @property
    def features(self) -> list[str]:
        return list(self._ref)


def load_norms(path: str | Path) -> PopulationNorms:
    """Read a population-norms JSON (the bundled one or one from ``baseline build --norms``)."""
    data, sha = read_json_file(path, what="population norms")
    return PopulationNorms(data, source=str(path), sha256=sha)


def population_z(raw: Mapping[str, float | None], norms: PopulationNorms,
                 sex: Sex | None = None) -> dict[str, float | None]:
    """``(x − mean) / sd`` per feature; ``None`` where the value or the norm is missing."""
    out: dict[str, float | None] = {}
    for feat, x in raw.items():
        ref = norms.reference(feat, sex)
        out[feat] = None if x is None or ref is None else (x - ref[0]) / ref[1]
    return out


# ------------------------------------------------------------------------- speaker profile
class ProfileFeature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    median: float = Field(ge=-1e6, le=1e6, allow_inf_nan=False,
                          description="in the feature's unit; finite, |median| ≤ 1e6")
    scale: float = Field(gt=0, le=1e6, allow_inf_nan=False,
                         description="max(1.4826·MAD, floor), in the feature's unit")
    n_segments: int = Field(ge=1)


class SpeakerProfile(BaseModel):
    """A speaker's typical feature values, pooled over earlier sessions (JSON, never pickle)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["vocalfusion-speaker-profile"] = PROFILE_FORMAT
    format_version: int = 1
    speaker_id: str | None = None
    sex: Sex | None = None
    created_at: datetime
    package_version: str
    n_sessions: int
    n_segments: int
    speech_s: float
    sources: list[dict[str, Any]] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict,
                                     description="robust_scale_factor, floors, min_words used")
    features: dict[str, ProfileFeature]
    voiceprint: list[float] | None = Field(
        None, description="unit-norm mean speaker embedding (biometric); None in profiles "
                          "built before voiceprints or from results without them")

    def stat(self, feature: str) -> RobustStat | None:
        f = self.features.get(feature)
        return None if f is None else RobustStat(f.median, f.scale, f.n_segments)


def load_profile(path: str | Path) -> SpeakerProfile:
    """Read a speaker profile JSON written by :func:`save_profile`."""
    data, _ = read_json_file(path, what="speaker profile")
    if data.get("format") != PROFILE_FORMAT:
        raise ConfigError(f"{path}: not a speaker profile (format {data.get('format')!r}, "
                          f"expected {PROFILE_FORMAT!r}); build one with `vocalfusion baseline "
                          "build sessions/*.json -o speaker.json`")
    try:
        profile = SpeakerProfile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid speaker profile: {exc}") from None
    unknown = sorted(set(profile.features) - set(FEATURES))
    if unknown:
        raise ConfigError(f"{path}: speaker profile names unknown features {unknown}")
    return profile


def save_profile(profile: SpeakerProfile, path: str | Path) -> Path:
    """Write ``profile`` as JSON (atomically)."""
    from fusion.files import atomic_write_text

    p = Path(path)
    atomic_write_text(p, profile.model_dump_json(indent=2))
    return p


def _segments_of(sessions: Iterable[SessionResult]) -> list[SegmentResult]:
    return [seg for s in sessions for seg in s.segments]


def one_speaker_sessions(sessions: Sequence[SessionResult], speaker: str | None = None
                         ) -> tuple[list[SessionResult], list[float] | None, str | None]:
    """Each session reduced to one speaker's segments (overlap left out), that speaker's
    voiceprint (the normalised mean over the sessions; ``None`` if any session has none) and
    speaker_id.

    ``speaker`` is a label (``S2``, ``ch1``) or a ``speaker_id``; default: the only speaker,
    else the session's focus speaker. Sessions without a ``speakers`` list are taken whole.

    Raises
    ------
    ParameterError
        ``speaker`` names no speaker of a session.
    """
    out: list[SessionResult] = []
    prints: list[np.ndarray] = []
    missing = False
    found_id: str | None = None
    for s in sessions:
        if not s.speakers:
            out.append(s)
            missing = True
            continue
        if speaker is None:
            chosen = s.speakers[0] if len(s.speakers) == 1 else next(
                (p for p in s.speakers if p.focus), s.speakers[0])
        else:
            chosen = next((p for p in s.speakers
                           if speaker in (p.label, p.speaker_id)), None)  # type: ignore[assignment]
            if chosen is None:
                names = ", ".join(p.speaker_id or p.label for p in s.speakers)
                raise ParameterError(f"{s.source.path}: no speaker {speaker!r} (speakers: "
                                     f"{names}); --speaker takes a label or a speaker_id")
        name = chosen.speaker_id or chosen.label
        segs = [g for g in s.segments if (g.speaker in (None, name)) and not g.overlap]
        out.append(s.model_copy(update={"segments": segs}))
        found_id = found_id or chosen.speaker_id
        if chosen.voiceprint is None:
            missing = True
        else:
            prints.append(np.asarray(chosen.voiceprint, dtype=np.float64))
    vp = None
    if prints and not missing:
        m = np.mean(prints, axis=0)
        n = float(np.linalg.norm(m))
        vp = [float(v) for v in m / n] if n > 0 else None
    return out, vp, found_id


def build_profile(sessions: Sequence[SessionResult], settings: NormalisationSettings, *,
                  speaker_id: str | None = None, sex: Sex | None = None,
                  sources: Sequence[str] | None = None) -> SpeakerProfile:
    """Pool the segments of ``sessions`` (one speaker) into a :class:`SpeakerProfile`.

    Sessions with status "insufficient speech" are used too (their measured segments are
    real); the profile records how many segments each feature came from. Features measured in
    fewer than ``settings.min_segments`` segments are left out of the profile.

    Raises
    ------
    ParameterError
        No sessions, or sessions name different ``speaker_id``s while none was given.
    """
    if not sessions:
        raise ParameterError("build_profile needs at least one session, got none")
    ids = {s.speaker_id for s in sessions if s.speaker_id}
    if speaker_id is None:
        if len(ids) > 1:
            raise ParameterError(f"sessions belong to several speakers {sorted(ids)}; a profile "
                                 "describes one speaker (pass speaker_id to override)")
        speaker_id = next(iter(ids), None)
    srcs = list(sources) if sources is not None else [s.source.path for s in sessions]
    return profile_from_segments(
        _segments_of(sessions), settings, speaker_id=speaker_id, sex=sex,
        n_sessions=len(sessions),
        sources=[{"path": p, "sha256": s.source.sha256} for p, s in zip(srcs, sessions,
                                                                          strict=True)])


def profile_from_segments(segments: Sequence[SegmentResult], settings: NormalisationSettings,
                          *, speaker_id: str | None = None, sex: Sex | None = None,
                          n_sessions: int = 1,
                          sources: Sequence[dict[str, Any]] = (),
                          voiceprint: Sequence[float] | None = None) -> SpeakerProfile:
    """A :class:`SpeakerProfile` from one speaker's segments (median and robust scale per
    feature with at least ``settings.min_segments`` values)."""
    from fusion._version import package_version

    segs = list(segments)
    rows = [raw_features(seg, min_words=settings.min_words) for seg in segs]
    feats: dict[str, ProfileFeature] = {}
    for feat in FEATURES:
        if feat not in settings.speaker_scale_floors:
            continue
        vals = [v for r in rows if (v := r[feat]) is not None]
        if len(vals) < settings.min_segments:
            continue
        st = robust_location_scale(vals, floor=settings.floor(feat),
                                   factor=settings.robust_scale_factor)
        feats[feat] = ProfileFeature(median=st.median, scale=st.scale, n_segments=st.n)
    return SpeakerProfile(
        speaker_id=speaker_id, sex=sex, created_at=datetime.now(UTC),
        package_version=package_version(), n_sessions=n_sessions, n_segments=len(segs),
        speech_s=round(sum(seg.duration_s for seg in segs), 3), sources=list(sources),
        settings={"robust_scale_factor": settings.robust_scale_factor,
                  "min_segments": settings.min_segments, "min_words": settings.min_words,
                  "speaker_scale_floors": dict(settings.speaker_scale_floors)},
        features=feats, voiceprint=None if voiceprint is None else [float(v) for v in voiceprint])


def build_norms(sessions: Sequence[SessionResult], settings: NormalisationSettings, *,
                name: str = "reference-corpus-norms",
                sources: Sequence[str] | None = None) -> dict[str, Any]:
    """Population norms (mean, SD over all segments) from a reference corpus.

    Returns the JSON object (format ``vocalfusion-population-norms``); every entry has status
    ``"measured"`` and the number of segments, sessions and speakers it came from. Use a corpus
    of speakers like those you will score (language, task, recording chain), with each speaker
    contributing similar amounts of speech.
    """
    if not sessions:
        raise ParameterError("build_norms needs at least one session, got none")
    segs = _segments_of(sessions)
    rows = [raw_features(seg, min_words=settings.min_words) for seg in segs]
    speakers = {s.speaker_id or s.source.path for s in sessions}
    features: dict[str, Any] = {}
    for feat, spec in FEATURES.items():
        vals = np.array([r[feat] for r in rows if r[feat] is not None], dtype=float)
        if vals.size < max(settings.min_segments, 2):
            continue
        sd = float(np.std(vals, ddof=1))
        floor = settings.speaker_scale_floors.get(feat, 0.0)
        sd = max(sd, floor, 1e-9)
        features[feat] = {"unit": spec.unit, "all": {
            "mean": float(np.mean(vals)), "sd": sd, "status": "measured",
            "n_segments": int(vals.size), "n_sessions": len(sessions),
            "n_speakers": len(speakers)}}
    srcs = list(sources) if sources is not None else [s.source.path for s in sessions]
    return {"format": NORMS_FORMAT, "format_version": 1, "name": name,
            "description": f"measured on {len(sessions)} sessions ({len(segs)} segments) with "
                          "`vocalfusion baseline build --norms`",
            "created_at": datetime.now(UTC).isoformat(), "sources": srcs,
            "features": features}


# ------------------------------------------------------------------------- speaker baseline
@dataclass(frozen=True)
class BaselineEntry:
    """Location and scale of one feature for the speaker z-score, and where they came from.

    ``source`` is ``"profile"``, ``"session"`` (median/MAD over ≥ ``min_segments`` segments),
    ``"session-2"`` (two segments: session median, population SD as scale) or
    ``"population"`` (population reference values, only with ``population_fallback``).
    """

    location: float
    scale: float
    n: int
    source: str


def speaker_baseline(rows: Sequence[Mapping[str, float | None]],
                     settings: NormalisationSettings, *,
                     profile: SpeakerProfile | None = None,
                     norms: PopulationNorms | None = None,
                     sex: Sex | None = None,
                     population_fallback: bool = False,
                     fallback_sex: Sex | None = None) -> dict[str, BaselineEntry]:
    """Per-feature baseline for the speaker z-scores of one session.

    Parameters
    ----------
    rows : sequence of dict
        :func:`~fusion.scoring.vector.raw_features` of every segment of the session.
    settings : NormalisationSettings
    profile : SpeakerProfile, optional
        Used for every feature it holds; the session provides the others.
    norms : PopulationNorms, optional
        Supplies the fallback scale when a feature has exactly 2 session values.
    sex : {"female", "male"}, optional
    population_fallback : bool
        Where neither the profile nor two or more of the speaker's own segments give a
        baseline, use the population reference (norms mean and SD for the voice type ``sex``)
        as the baseline, with ``source = "population"`` (docs/scores.md, "Reference").
    fallback_sex : {"female", "male"}, optional
        Voice type of that fallback (default ``sex``).

    Returns
    -------
    dict
        Feature → :class:`BaselineEntry`; features without a baseline are absent.
    """
    out: dict[str, BaselineEntry] = {}
    for feat in FEATURES:
        if feat not in settings.speaker_scale_floors:
            continue
        if profile is not None:
            st = profile.stat(feat)
            if st is not None:
                out[feat] = BaselineEntry(st.median, st.scale, st.n, "profile")
                continue
        vals = [v for r in rows if (v := r.get(feat)) is not None]
        if len(vals) >= settings.min_segments:
            st = robust_location_scale(vals, floor=settings.floor(feat),
                                       factor=settings.robust_scale_factor)
            out[feat] = BaselineEntry(st.median, st.scale, st.n, "session")
        elif len(vals) == 2 and norms is not None:
            ref = norms.reference(feat, sex)
            if ref is not None:
                out[feat] = BaselineEntry(float(np.median(vals)),
                                          max(ref[1], settings.floor(feat)), 2, "session-2")
        elif population_fallback and norms is not None:
            ref = norms.reference(feat, fallback_sex or sex)
            if ref is not None:
                out[feat] = BaselineEntry(float(ref[0]), max(ref[1], settings.floor(feat)),
                                          0, "population")
    return out


def speaker_z(raw: Mapping[str, float | None],
              baseline: Mapping[str, BaselineEntry]) -> dict[str, float | None]:
    """``(x − location) / scale`` per feature; ``None`` where value or baseline is missing."""
    out: dict[str, float | None] = {}
    for feat, x in raw.items():
        b = baseline.get(feat)
        out[feat] = None if x is None or b is None else (x - b.location) / b.scale
    return out
