"""The fusion step of the pipeline: segment measurements → stress and depression scores.

:class:`Fuser` is what :class:`fusion.engine.analyzer.Analyzer` calls once per file::

    fuser = Fuser(config.fusion).load()
    segments, summary = fuser.fuse(segments, streams, insufficient_speech=False)
    info = fuser.info()

Steps per session:

1. raw features of every segment (:func:`fusion.scoring.vector.raw_features`);
2. speaker baseline — the stored speaker profile (``fusion.speaker_profile``) for the features
   it holds, else robust statistics of this session
   (:func:`fusion.scoring.baseline.speaker_baseline`);
3. speaker z-scores and population z-scores (``fusion.population_norms``, default the bundled
   ``configs/population_norms.json``; sex-specific where the speaker's sex is known);
4. each head (stress, depression) scores each segment with per-stream contributions and a
   confidence (:meth:`fusion.scoring.head.LinearHead.explain`); ``confidence = coverage × quality``
   where quality = ``min(1, duration / full_duration_s) × min(1, voiced_fraction /
   full_voiced_fraction)`` (the voicing factor is 1 when prosody has no voiced fraction);
5. the session summary (:mod:`fusion.scoring.summary`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from features.errors import ConfigError
from features.sources import portable_path
from fusion.config import FusionConfig, config_dir
from fusion.schema import (
    FusionInfo,
    ScoreDetail,
    SegmentResult,
    SegmentScores,
    SessionSummary,
    StreamInfo,
)
from fusion.scoring.baseline import (
    BaselineEntry,
    NormalisationSettings,
    PopulationNorms,
    Sex,
    SpeakerProfile,
    load_norms,
    load_profile,
    population_z,
    speaker_baseline,
    speaker_z,
)
from fusion.scoring.head import (
    ConfidenceSettings,
    FusionSpec,
    LinearHead,
    load_model_file,
    load_prior,
)
from fusion.scoring.summary import session_summary
from fusion.scoring.vector import FUSION_STREAMS, fused_name, raw_features, split_fused_name

__all__ = ["Fuser", "SessionFeatures", "session_features", "segment_quality"]

log = logging.getLogger("vocalfusion.fusion")


class SessionFeatures:
    """Raw features, both z-scores and the fused feature rows of one session's segments."""

    def __init__(self, raw: list[dict[str, float | None]], speaker: list[dict[str, float | None]],
                 population: list[dict[str, float | None]],
                 baseline: dict[str, BaselineEntry]) -> None:
        self.raw = raw
        self.speaker = speaker
        self.population = population
        self.baseline = baseline

    def fused(self) -> list[dict[str, float | None]]:
        """One dict per segment: ``speaker_z.<f>`` and ``population_z.<f>`` → value or None."""
        rows = []
        for spk, pop in zip(self.speaker, self.population, strict=True):
            row = {fused_name(f, "speaker"): v for f, v in spk.items()}
            row.update({fused_name(f, "population"): v for f, v in pop.items()})
            rows.append(row)
        return rows


def session_features(segments: Sequence[SegmentResult], settings: NormalisationSettings,
                     norms: PopulationNorms, *, profile: SpeakerProfile | None = None,
                     sex: Sex | None = None) -> SessionFeatures:
    """Compute the features of one session exactly as the :class:`Fuser` does."""
    raw = [raw_features(seg, min_words=settings.min_words) for seg in segments]
    base = speaker_baseline(raw, settings, profile=profile, norms=norms, sex=sex)
    spk = [speaker_z(r, base) for r in raw]
    pop = [population_z(r, norms, sex) for r in raw]
    return SessionFeatures(raw, spk, pop, base)


def segment_quality(seg: SegmentResult, conf: ConfidenceSettings) -> float:
    """Duration × voicing factor of the confidence (see the module docstring)."""
    dur = min(1.0, max(0.0, seg.duration_s) / conf.full_duration_s)
    vf = seg.prosody.voiced_fraction if seg.prosody is not None else None
    voice = 1.0 if vf is None else min(1.0, max(0.0, float(vf)) / conf.full_voiced_fraction)
    return dur * voice


def _round_z(d: Mapping[str, float | None]) -> dict[str, float | None]:
    return {k: (None if v is None else round(float(v), 6)) for k, v in d.items()}


class Fuser:
    """Fuses per-segment stream measurements into stress and depression scores.

    Parameters
    ----------
    config : FusionConfig
        ``model`` ("prior" or a model JSON path), ``threshold``, ``speaker_profile``,
        ``population_norms``.
    """

    def __init__(self, config: FusionConfig | None = None) -> None:
        self.config = config if config is not None else FusionConfig()
        self.spec_: FusionSpec | None = None
        self.norms_: PopulationNorms | None = None
        self.profile_: SpeakerProfile | None = None
        self.sex_: Sex | None = None

    def load(self) -> Fuser:
        """Read the model (prior or fitted), the population norms and the speaker profile.

        Raises
        ------
        ConfigError
            Unreadable/invalid files, or a fitted model whose training used other population
            norms than the ones configured (its features would not match).
        UnsafeModelFileError
            A pickle-type model file.
        """
        cfg = self.config
        spec = load_prior() if cfg.model == "prior" else load_model_file(Path(cfg.model))
        norms_path = (Path(cfg.population_norms) if cfg.population_norms
                      else config_dir() / "population_norms.json")
        norms = load_norms(norms_path)
        if (spec.origin == "fitted" and spec.population_norms_sha256
                and spec.population_norms_sha256 != norms.sha256):
            raise ConfigError(
                f"{cfg.model}: this model was fitted with population norms of sha256 "
                f"{spec.population_norms_sha256[:12]}…, but {norms_path} has "
                f"{(norms.sha256 or '')[:12]}…; its population z-scores would not match. Set "
                "fusion.population_norms to the norms file used for training.")
        profile = load_profile(cfg.speaker_profile) if cfg.speaker_profile else None
        if spec.speaker_baseline == "profile" and profile is None:
            log.warning("%s was trained with speaker profiles (speaker_baseline='profile'); "
                        "without fusion.speaker_profile the session itself is the baseline",
                        spec.path)
        # FusionConfig.speaker_sex is proposed to the lead; read it if present.
        sex = getattr(cfg, "speaker_sex", None) or (profile.sex if profile else None)
        self.spec_, self.norms_, self.profile_, self.sex_ = spec, norms, profile, sex
        return self

    def _require(self) -> FusionSpec:
        if self.spec_ is None:
            raise ConfigError("Fuser is not loaded; call load() first")
        return self.spec_

    def info(self) -> FusionInfo:
        """Which model makes the scores, and how far it is calibrated."""
        spec = self._require()
        path = portable_path(spec.path) if spec.path else None  # no install paths in results
        return FusionInfo(model_name=spec.name, model_path=path,
                          calibrated=spec.calibrated, calibration_status=spec.calibration_status,
                          model_sha256=spec.sha256)

    def features(self, segments: Sequence[SegmentResult]) -> SessionFeatures:
        """The features of ``segments`` under this fuser's settings, norms and profile."""
        spec = self._require()
        assert self.norms_ is not None
        return session_features(segments, spec.normalisation, self.norms_,
                                profile=self.profile_, sex=self.sex_)

    def fuse(self, segments: list[SegmentResult], streams: Mapping[str, StreamInfo] | None = None,
             *, insufficient_speech: bool = False,
             profile_speakers: Collection[str | None] | None = None
             ) -> tuple[list[SegmentResult], SessionSummary]:
        """Score every segment and summarise the session.

        Parameters
        ----------
        segments : list of SegmentResult
        streams : dict of StreamInfo, optional
            The streams of this file; coverage is reported for each of them plus ``lexical``.
        insufficient_speech : bool
            If True (or no segments): no scores; the summary has only n_segments, speech_s and
            coverage.
        profile_speakers : collection of str, optional
            The speaker labels (``SegmentResult.speaker``) the speaker profile describes;
            ``None``: every speaker (one-speaker sessions). Every speaker gets their own
            baseline from their own segments (overlap segments left out); a feature with
            neither a profile nor two of the speaker's segments falls back on population
            reference values (``reference = "population"``, reduced confidence).

        Returns
        -------
        segments : list of SegmentResult
            Copies with ``scores`` set (unchanged when nothing is scored).
        summary : SessionSummary
        """
        spec = self._require()
        cov_streams = list(streams or {}) + [s for s in FUSION_STREAMS if s not in (streams or {})]
        threshold = self.config.threshold
        min_words = spec.normalisation.min_words
        if insufficient_speech or not segments:
            return list(segments), session_summary(segments, threshold=threshold,
                                                   streams=cov_streams, min_words=min_words,
                                                   scored=False)
        feats, feature_refs = self._per_speaker_features(segments, profile_speakers)
        fused = feats.fused()
        out: list[SegmentResult] = []
        for i, seg in enumerate(segments):
            quality = segment_quality(seg, spec.confidence)
            scores = SegmentScores(
                stress=_with_reference(spec.heads["stress"],
                                       spec.heads["stress"].explain(fused[i], quality=quality),
                                       fused[i], feature_refs[i]),
                depression=_with_reference(
                    spec.heads["depression"],
                    spec.heads["depression"].explain(fused[i], quality=quality),
                    fused[i], feature_refs[i]),
                features_speaker_z=_round_z(_present(feats.speaker[i])),
                features_population_z=_round_z(_present(feats.population[i])),
            )
            out.append(seg.model_copy(update={"scores": scores}))
        summary = session_summary(out, threshold=threshold, streams=cov_streams,
                                  min_words=min_words)
        return out, summary

    def _per_speaker_features(self, segments: Sequence[SegmentResult],
                              profile_speakers: Collection[str | None] | None
                              ) -> tuple[SessionFeatures, list[dict[str, str]]]:
        """Raw features, per-speaker z-scores and each feature's reference, per segment."""
        spec = self._require()
        assert self.norms_ is not None
        settings, norms = spec.normalisation, self.norms_
        raw = [raw_features(seg, min_words=settings.min_words) for seg in segments]
        groups: dict[str | None, list[int]] = {}
        for i, seg in enumerate(segments):
            groups.setdefault(seg.speaker, []).append(i)
        speaker: list[dict[str, float | None]] = [{} for _ in segments]
        refs: list[dict[str, str]] = [{} for _ in segments]
        first_base: dict[str, BaselineEntry] = {}
        for label, idx in groups.items():
            mine = profile_speakers is None or label in profile_speakers
            profile = self.profile_ if mine else None
            sex = self.sex_ if mine else None
            rows = [raw[i] for i in idx if not segments[i].overlap] or [raw[i] for i in idx]
            base = speaker_baseline(rows, settings, profile=profile, norms=norms, sex=sex,
                                    population_fallback=True,
                                    fallback_sex=sex or voice_type(rows))
            first_base = first_base or base
            for i in idx:
                speaker[i] = speaker_z(raw[i], base)
                refs[i] = {f: _REFERENCE[b.source] for f, b in base.items()}
        pop = [population_z(r, norms, self.sex_) for r in raw]
        return SessionFeatures(raw, speaker, pop, first_base), refs

    def describe(self) -> dict[str, Any]:
        """Model name, heads, settings — for logs and reports."""
        spec = self._require()
        return {"name": spec.name, "origin": spec.origin, "path": spec.path,
                "calibration_status": spec.calibration_status,
                "heads": {t: h.to_dict() for t, h in spec.heads.items()},
                "population_norms": self.norms_.source if self.norms_ else None,
                "speaker_profile": self.config.speaker_profile, "sex": self.sex_}


#: F0 (semitones re 100 Hz) between the population's typical low (120 Hz) and high (210 Hz)
#: voice: their geometric mean, 158.7 Hz = 8.0 st (Traunmüller & Eriksson 1995)
VOICE_TYPE_SPLIT_ST = 8.0


def voice_type(rows: Sequence[Mapping[str, float | None]]) -> Sex | None:
    """The population norms' voice type of a speaker whose sex is not given: ``"male"`` (low
    voice) when the median segment F0 lies below :data:`VOICE_TYPE_SPLIT_ST`, else
    ``"female"`` (high voice); ``None`` without F0. A voice type, not a statement of sex."""
    f0 = [v for r in rows if (v := r.get("f0_mean_st")) is not None]
    if not f0:
        return None
    f0.sort()
    mid = f0[len(f0) // 2] if len(f0) % 2 else (f0[len(f0) // 2 - 1] + f0[len(f0) // 2]) / 2
    return "male" if mid < VOICE_TYPE_SPLIT_ST else "female"


_REFERENCE = {"profile": "profile", "session": "session", "session-2": "session",
              "population": "population"}
#: a score resting wholly on population reference values keeps this share of its confidence
POPULATION_CONFIDENCE = 0.5


def _with_reference(head: LinearHead, detail: ScoreDetail, row: Mapping[str, float | None],
                    feature_refs: Mapping[str, str]) -> ScoreDetail:
    """``detail`` with ``reference`` (the baseline carrying most of the head's weight over
    the features present) and per-feature references; confidence scaled down by the share
    of weight that rests on population reference values."""
    if detail.value is None:
        return detail
    weight: dict[str, float] = {}
    per_feature: dict[str, str] = {}
    for name, w in head.weights.items():
        if row.get(name) is None or w == 0:
            continue
        feat, norm = split_fused_name(name)
        ref = "population" if norm == "population" else feature_refs.get(feat, "session")
        per_feature[name] = ref
        weight[ref] = weight.get(ref, 0.0) + abs(w)
    if not weight:
        return detail
    total = sum(weight.values())
    reference = max(weight, key=lambda r: weight[r])
    # a head built on population z-scores (depression) is population-referenced by design;
    # only speaker-relative features that fell back on the population lose confidence
    fallback = sum(abs(head.weights[n]) for n, r in per_feature.items()
                   if r == "population" and split_fused_name(n)[1] == "speaker") / total
    conf = detail.confidence * (1.0 - (1.0 - POPULATION_CONFIDENCE) * fallback)
    return detail.model_copy(update={"reference": reference,
                                     "feature_references": per_feature,
                                     "confidence": conf})


def _present(d: Mapping[str, float | None]) -> dict[str, float | None]:
    """Only the features that were measured (keeps results compact; absent = not listed)."""
    return {k: v for k, v in d.items() if v is not None}
