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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from features.errors import ConfigError
from features.sources import portable_path
from fusion.config import FusionConfig, config_dir
from fusion.schema import FusionInfo, SegmentResult, SegmentScores, SessionSummary, StreamInfo
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
from fusion.scoring.head import ConfidenceSettings, FusionSpec, load_model_file, load_prior
from fusion.scoring.summary import session_summary
from fusion.scoring.vector import FUSION_STREAMS, fused_name, raw_features

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
             *, insufficient_speech: bool = False
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
        feats = self.features(segments)
        fused = feats.fused()
        out: list[SegmentResult] = []
        for i, seg in enumerate(segments):
            quality = segment_quality(seg, spec.confidence)
            scores = SegmentScores(
                stress=spec.heads["stress"].explain(fused[i], quality=quality),
                depression=spec.heads["depression"].explain(fused[i], quality=quality),
                features_speaker_z=_round_z(_present(feats.speaker[i])),
                features_population_z=_round_z(_present(feats.population[i])),
            )
            out.append(seg.model_copy(update={"scores": scores}))
        summary = session_summary(out, threshold=threshold, streams=cov_streams,
                                  min_words=min_words)
        return out, summary

    def describe(self) -> dict[str, Any]:
        """Model name, heads, settings — for logs and reports."""
        spec = self._require()
        return {"name": spec.name, "origin": spec.origin, "path": spec.path,
                "calibration_status": spec.calibration_status,
                "heads": {t: h.to_dict() for t, h in spec.heads.items()},
                "population_norms": self.norms_.source if self.norms_ else None,
                "speaker_profile": self.config.speaker_profile, "sex": self.sex_}


def _present(d: Mapping[str, float | None]) -> dict[str, float | None]:
    """Only the features that were measured (keeps results compact; absent = not listed)."""
    return {k: v for k, v in d.items() if v is not None}
