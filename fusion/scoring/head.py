"""Fusion models: the literature prior and learned, calibrated models — all plain JSON.

A *head* scores one target (``stress`` or ``depression``) as a linear function of fused
features (z-scored per speaker — ``speaker_z.<feature>`` — or against population norms —
``population_z.<feature>``):

.. math::

    \\text{logit} = b_0 + \\sum_{j\\,\\in\\,\\text{present}} w_j \\,
                   \\operatorname{clip}\\!\\big((x_j - c_j) / s_j,\\ \\pm z_{clip}\\big)

* **Absent features are left out of the sum** — their contribution is absent (not a 0 entry in
  ``feature_contributions``) and the confidence drops by their share of the head's total
  absolute weight: ``coverage = Σ_present |w_j| / Σ_all |w_j|``. For a learned model this is
  the same as putting the feature at its training mean, and training applies the same rule
  (missing standardised values are 0), so training and scoring agree.
* For the prior, ``c_j = 0`` and ``s_j = 1`` (features are already z-scores) and
  ``w_j = β_j`` from ``configs/fusion_prior.json``; ``b_0 = logit(base rate)``.
* For a learned model, ``c_j``, ``s_j`` are the training mean and SD of the feature, and
  ``w_j``, ``b_0`` come from an L2-regularised logistic regression (or ridge regression for a
  continuous target such as cortisol).
* ``value = σ(logit)`` uncalibrated, ``calibrator(logit)`` when calibrated
  (:mod:`fusion.scoring.calibration`). A regression head reports the prediction in training-SD units
  in ``logit`` (``z = (ŷ − ȳ) / s_y``) and ``value = Φ(z)``, the predicted target's position
  on the training distribution under a normal approximation.

:class:`FusionModel` is a scikit-learn-style estimator (``fit(X, y, groups=...)`` returns
self, ``predict_proba``, learned state ending in ``_``, ``feature_names_in_``);
:func:`grouped_cross_validate` evaluates it with speaker-grouped folds (no speaker in both
train and test); both live in :mod:`fusion.training`. Models are saved as JSON
(:func:`fusion.training.persistence.save_model`); pickle is never read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.errors import ConfigError
from fusion._jsonio import read_json_file
from fusion.schema import ScoreDetail
from fusion.scoring.baseline import NormalisationSettings
from fusion.scoring.calibration import Calibrator, calibrator_from_dict, logit, sigmoid
from fusion.scoring.vector import FEATURES, FUSION_STREAMS, split_fused_name

__all__ = [
    "standardise",
    "linear_scores",
    "TARGETS",
    "PRIOR_CALIBRATION_STATUS",
    "ConfidenceSettings",
    "LinearHead",
    "FusionSpec",
    "load_prior",
    "load_model_file",
    "check_number",
]

TARGETS = ("stress", "depression")
PRIOR_FORMAT = "vocalfusion-fusion-prior"
MODEL_FORMAT = "vocalfusion-fusion-model"
PRIOR_CALIBRATION_STATUS = "prior — not calibrated on labelled data"
HeadKind = Literal["logistic", "regression"]
#: bounds of the numbers a model/prior file may hold (a larger value is a corrupt or
#: degenerate file: it would saturate or overflow every score)
MAX_ABS_WEIGHT = 1e4  # per standardised unit, and intercepts (log-odds or target units)
MAX_ABS_CENTER = 1e6  # in the feature's own unit (Hz, dB, …)
SCALE_RANGE = (1e-9, 1e6)
Z_CLIP_RANGE = (0.0, 100.0)


def check_number(value: Any, key: str, *, lo: float, hi: float, source: str,
                 lo_open: bool = False) -> float:
    """``value`` as a float if it is finite and in ``[lo, hi]`` (``(lo, hi]`` with
    ``lo_open``); else a :class:`ConfigError` naming ``key`` and the valid range."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key} must be a number, got {value!r}") from None
    ok = math.isfinite(x) and (x > lo if lo_open else x >= lo) and x <= hi
    if not ok:
        left = "(" if lo_open else "["
        raise ConfigError(f"{source}: {key} = {x!r} is outside the valid range "
                          f"{left}{lo:g}, {hi:g}]")
    return x


class ConfidenceSettings(BaseModel):
    """Segment-quality factors of the confidence (model JSON ``confidence`` block)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    full_duration_s: float = Field(gt=0, le=3600)
    full_voiced_fraction: float = Field(gt=0, le=1)
    rule: str = ""


# ------------------------------------------------------------------------- the scoring rule
def standardise(x: np.ndarray | float, center: np.ndarray | float, scale: np.ndarray | float,
                z_clip: float) -> np.ndarray:
    """``clip((x - center) / scale, ±z_clip)``; a missing (non-finite) value becomes 0.

    The one standardisation rule of scoring (:class:`LinearHead`) and training
    (:class:`fusion.training.estimator.FusionModel`), so both see the same numbers.
    """
    with np.errstate(invalid="ignore"):
        z = (np.asarray(x, dtype=float) - center) / scale
    return np.where(np.isfinite(z), np.clip(z, -z_clip, z_clip), 0.0)


def linear_scores(X: np.ndarray, center: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                  intercept: float, z_clip: float) -> np.ndarray:
    """``intercept + standardise(X) @ coef`` for a matrix ``X`` (rows × used features)."""
    return intercept + standardise(X, center, scale, z_clip) @ coef


# ------------------------------------------------------------------------- scoring head
@dataclass
class LinearHead:
    """One target's linear score over fused features (see the module docstring).

    Attributes
    ----------
    target : str
    kind : {"logistic", "regression"}
    intercept : float
        ``b_0`` (log-odds, or target units for regression).
    weights : dict
        Fused feature name → ``w_j`` (per standardised unit). Zero weights are not stored.
    center, scale : dict
        ``c_j``, ``s_j`` per feature (default 0 and 1).
    z_clip : float
    calibrator : Calibrator or None
    y_mean, y_sd : float or None
        Training target mean and SD (regression heads only).
    origin : {"prior", "fitted"}
    """

    target: str
    kind: HeadKind
    intercept: float
    weights: dict[str, float]
    z_clip: float
    center: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    calibrator: Calibrator | None = None
    y_mean: float | None = None
    y_sd: float | None = None
    origin: Literal["prior", "fitted"] = "prior"

    def __post_init__(self) -> None:
        for name in self.weights:
            try:
                split_fused_name(name)
            except KeyError:
                raise ConfigError(
                    f"{self.target} head uses feature {name!r}, which this version of "
                    "vocalfusion does not produce; valid names are 'speaker_z.<feature>' or "
                    f"'population_z.<feature>' with <feature> one of {', '.join(FEATURES)}"
                ) from None
        if self.kind == "regression" and not (self.y_sd and self.y_sd > 0):
            raise ConfigError(f"{self.target} regression head needs y_sd > 0")
        self._check_numbers()

    def _check_numbers(self) -> None:
        src = f"{self.target} head"
        w = MAX_ABS_WEIGHT
        check_number(self.intercept, "intercept", lo=-w, hi=w, source=src)
        check_number(self.z_clip, "z_clip", lo=Z_CLIP_RANGE[0], hi=Z_CLIP_RANGE[1],
                     lo_open=True, source=src)
        for name, value in self.weights.items():
            check_number(value, f"{name} weight", lo=-w, hi=w, source=src)
        for name, value in self.center.items():
            check_number(value, f"{name} center", lo=-MAX_ABS_CENTER, hi=MAX_ABS_CENTER,
                         source=src)
        for name, value in self.scale.items():
            check_number(value, f"{name} scale", lo=SCALE_RANGE[0], hi=SCALE_RANGE[1],
                         source=src)
        if self.y_mean is not None:
            check_number(self.y_mean, "y_mean", lo=-MAX_ABS_CENTER, hi=MAX_ABS_CENTER,
                         source=src)
        if self.y_sd is not None:
            check_number(self.y_sd, "y_sd", lo=0.0, hi=MAX_ABS_CENTER, lo_open=True,
                         source=src)

    @property
    def calibrated(self) -> bool:
        return self.calibrator is not None

    @property
    def total_abs_weight(self) -> float:
        return float(sum(abs(w) for w in self.weights.values()))

    def _standardised(self, name: str, x: float) -> float:
        return float(standardise(x, self.center.get(name, 0.0), self.scale.get(name, 1.0),
                                 self.z_clip))

    def linear(self, x: Mapping[str, float | None]) -> tuple[float, dict[str, float], float]:
        """``(b_0 + Σ present w_j t_j, {feature: w_j t_j}, present |w| fraction)``.

        ``x`` maps fused feature names to values; missing keys and ``None``/NaN are absent.
        """
        contrib: dict[str, float] = {}
        present_w = 0.0
        for name, w in self.weights.items():
            v = x.get(name)
            if v is None or not math.isfinite(v):
                continue
            contrib[name] = w * self._standardised(name, float(v)) + 0.0  # no -0.0
            present_w += abs(w)
        total = self.total_abs_weight
        coverage = present_w / total if total > 0 else 0.0
        lin = self.intercept + math.fsum(contrib.values())
        return lin, contrib, coverage

    def value_from_logit(self, s: np.ndarray | float) -> np.ndarray | float:
        """Map the head's ``logit`` field to its value in [0, 1]."""
        if self.kind == "regression":
            from scipy.stats import norm

            out = norm.cdf(s)
            return float(out) if np.ndim(s) == 0 else np.asarray(out)
        if self.calibrator is not None:
            out = self.calibrator.predict(np.atleast_1d(np.asarray(s, dtype=float)))
            return float(out[0]) if np.ndim(s) == 0 else out
        return sigmoid(s)

    def explain(self, x: Mapping[str, float | None], *, quality: float = 1.0) -> ScoreDetail:
        """The :class:`~fusion.schema.ScoreDetail` of one segment.

        ``contributions`` holds ``"intercept"`` and one entry per stream with at least one
        present, non-zero-weight feature; ``logit == sum(contributions.values())`` exactly (it
        is computed as that sum). ``confidence = coverage × quality``. With no feature present
        the value is ``None`` and the confidence 0.
        """
        lin, contrib, coverage = self.linear(x)
        if not contrib:
            return ScoreDetail(value=None, logit=None, confidence=0.0)
        scale = 1.0
        intercept = self.intercept
        if self.kind == "regression":
            assert self.y_sd is not None and self.y_mean is not None
            scale = 1.0 / self.y_sd
            intercept = (self.intercept - self.y_mean) / self.y_sd
        feat_c = {k: v * scale for k, v in contrib.items()}
        by_stream: dict[str, float] = {"intercept": intercept}
        for stream in FUSION_STREAMS:
            parts = [v for k, v in feat_c.items()
                     if FEATURES[split_fused_name(k)[0]].stream == stream]
            if parts:
                by_stream[stream] = math.fsum(parts)
        total = sum(by_stream.values())
        value = float(self.value_from_logit(total))
        conf = min(1.0, max(0.0, coverage * quality))
        return ScoreDetail(value=min(1.0, max(0.0, value)), logit=total, confidence=conf,
                           contributions=by_stream, feature_contributions=feat_c)

    # -------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "target": self.target, "kind": self.kind, "origin": self.origin,
            "intercept": self.intercept, "z_clip": self.z_clip,
            "features": [{"name": n, "weight": w, "center": self.center.get(n, 0.0),
                          "scale": self.scale.get(n, 1.0)} for n, w in self.weights.items()],
            "calibrator": self.calibrator.to_dict() if self.calibrator is not None else None,
        }
        if self.kind == "regression":
            d["y_mean"], d["y_sd"] = self.y_mean, self.y_sd
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "model") -> LinearHead:
        try:
            feats = d["features"]
            weights = {f["name"]: float(f["weight"]) for f in feats}
            center = {f["name"]: float(f["center"]) for f in feats}
            scale = {f["name"]: float(f["scale"]) for f in feats}
            cal = d.get("calibrator")
            head = cls(target=str(d["target"]), kind=d["kind"], intercept=float(d["intercept"]),
                       weights=weights, center=center, scale=scale, z_clip=float(d["z_clip"]),
                       calibrator=calibrator_from_dict(cal) if cal else None,
                       y_mean=d.get("y_mean"), y_sd=d.get("y_sd"),
                       origin=d.get("origin", "fitted"))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: invalid head: {type(exc).__name__}: {exc}") from None
        if head.kind not in ("logistic", "regression"):
            raise ConfigError(f"{source}: head kind must be 'logistic' or 'regression', got "
                              f"{head.kind!r}")
        bad = [n for n, s in scale.items() if not (s > 0 and math.isfinite(s))]
        if bad:
            raise ConfigError(f"{source}: feature scales must be finite and > 0: {bad}")
        return head


# ------------------------------------------------------------------------- loaded spec
@dataclass
class FusionSpec:
    """A loaded prior or model file: heads plus the settings the features need."""

    name: str
    origin: Literal["prior", "fitted"]
    path: str | None
    sha256: str | None
    normalisation: NormalisationSettings
    confidence: ConfidenceSettings
    heads: dict[str, LinearHead]
    calibration_status: str
    population_norms_sha256: str | None = None
    speaker_baseline: str = "session"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        """True when every scoring head was fitted on labelled data and calibrated (or is a
        fitted regression head)."""
        return all(h.origin == "fitted" and (h.calibrated or h.kind == "regression")
                   for h in self.heads.values())


def _settings_blocks(data: Mapping[str, Any], source: str
                     ) -> tuple[NormalisationSettings, ConfidenceSettings]:
    norm = data.get("normalisation")
    conf = data.get("confidence")
    if not isinstance(norm, Mapping) or not isinstance(conf, Mapping):
        raise ConfigError(f"{source}: needs 'normalisation' and 'confidence' objects")
    try:
        confidence = ConfidenceSettings.model_validate(conf)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid 'confidence' block: {exc}") from None
    return NormalisationSettings.from_json(norm, source=source), confidence


def load_prior(path: str | Path | None = None) -> FusionSpec:
    """Load the literature prior (default ``configs/fusion_prior.json``).

    Every coefficient must name a known feature, a normalisation (``speaker`` or
    ``population``), ``beta``, ``sources``, ``derivation`` and ``strength``; the intercept is
    ``logit(base_rate)`` of each head.
    """
    if path is None:
        from fusion.config import config_dir

        path = config_dir() / "fusion_prior.json"
    data, sha = read_json_file(path, what="fusion prior")
    src = str(path)
    if data.get("format") != PRIOR_FORMAT:
        raise ConfigError(f"{src}: not a fusion prior (format {data.get('format')!r}, expected "
                          f"{PRIOR_FORMAT!r})")
    normalisation, confidence = _settings_blocks(data, src)
    heads: dict[str, LinearHead] = {}
    for target, h in (data.get("heads") or {}).items():
        if target not in TARGETS:
            raise ConfigError(f"{src}: unknown head {target!r}; valid: {TARGETS}")
        try:
            base_rate = float(h["base_rate"])
            coefs = h["coefficients"]
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{src}: head {target!r} needs 'base_rate' and "
                              "'coefficients'") from None
        if not 0 < base_rate < 1:
            raise ConfigError(f"{src}: {target}.base_rate must be in (0, 1), got {base_rate}")
        weights: dict[str, float] = {}
        for i, c in enumerate(coefs):
            missing = {"feature", "normalisation", "beta", "sources", "derivation",
                       "strength"} - set(c)
            if missing:
                raise ConfigError(f"{src}: {target}.coefficients[{i}] lacks {sorted(missing)}")
            feat, norm = c["feature"], c["normalisation"]
            if feat not in FEATURES:
                raise ConfigError(f"{src}: {target}.coefficients[{i}]: unknown feature {feat!r}")
            if norm not in ("speaker", "population"):
                raise ConfigError(f"{src}: {target}.coefficients[{i}]: normalisation must be "
                                  f"'speaker' or 'population', got {norm!r}")
            if norm == "speaker" and feat not in normalisation.speaker_scale_floors:
                raise ConfigError(f"{src}: {feat} is speaker-normalised but has no "
                                  "speaker_scale_floors entry")
            beta = check_number(c["beta"], f"{target}.coefficients[{i}].beta",
                                lo=-MAX_ABS_WEIGHT, hi=MAX_ABS_WEIGHT, source=src)
            name = f"{'speaker_z' if norm == 'speaker' else 'population_z'}.{feat}"
            if name in weights:
                raise ConfigError(f"{src}: {target}: {name} listed twice")
            if beta != 0.0:
                weights[name] = beta
        heads[target] = LinearHead(target=target, kind="logistic", intercept=logit(base_rate),
                                   weights=weights, z_clip=normalisation.z_clip, origin="prior")
    missing_heads = set(TARGETS) - set(heads)
    if missing_heads:
        raise ConfigError(f"{src}: prior lacks heads {sorted(missing_heads)}")
    return FusionSpec(name=str(data.get("name", "prior")), origin="prior", path=src, sha256=sha,
                      normalisation=normalisation, confidence=confidence, heads=heads,
                      calibration_status=str(data.get("calibration_status",
                                                      PRIOR_CALIBRATION_STATUS)),
                      metadata={"description": data.get("description", "")})


def load_model_file(path: str | Path, *, prior: FusionSpec | None = None) -> FusionSpec:
    """Load a model JSON written by :func:`save_model` (or a prior JSON).

    Heads the model does not have (e.g. a model trained on depression labels only) are taken
    from ``prior`` (default: the bundled prior), and the calibration status says so.

    Raises
    ------
    UnsafeModelFileError
        For a pickle-type file.
    ConfigError
        Not a vocalfusion model, unknown features (the model was made for other features),
        or invalid parameters.
    """
    data, sha = read_json_file(path, what="fusion model")
    src = str(path)
    fmt = data.get("format")
    if fmt == PRIOR_FORMAT:
        return load_prior(path)
    if fmt != MODEL_FORMAT:
        raise ConfigError(f"{src}: not a vocalfusion fusion model (format {fmt!r}, expected "
                          f"{MODEL_FORMAT!r}); make one with `vocalfusion calibrate`")
    if int(data.get("format_version", 0)) != 1:
        raise ConfigError(f"{src}: unsupported model format_version "
                          f"{data.get('format_version')!r}; this version reads 1")
    normalisation, confidence = _settings_blocks(data, src)
    heads: dict[str, LinearHead] = {}
    statuses: list[str] = []
    for target, hd in (data.get("heads") or {}).items():
        head = LinearHead.from_dict(hd, source=f"{src}: head {target!r}")
        heads[target] = head
        if head.kind == "regression":
            statuses.append(f"{target}: fitted regression on labelled data (value = Φ of the "
                            "prediction in training-SD units)")
        elif head.calibrated:
            statuses.append(f"{target}: fitted and calibrated "
                            f"({head.calibrator.method}) on labelled data")  # type: ignore[union-attr]
        else:
            statuses.append(f"{target}: fitted on labelled data, not calibrated")
    if not heads:
        raise ConfigError(f"{src}: model has no heads")
    scoring = {t: heads[t] for t in TARGETS if t in heads}
    missing = [t for t in TARGETS if t not in scoring]
    if missing:
        prior = prior or load_prior()
        for t in missing:
            scoring[t] = prior.heads[t]
            statuses.append(f"{t}: {PRIOR_CALIBRATION_STATUS}")
    extra = {t: h for t, h in heads.items() if t not in TARGETS}
    td = data.get("training_data") or {}
    n_sess, n_spk = td.get("n_sessions"), td.get("n_speakers")
    where = f" ({n_sess} sessions, {n_spk} speakers)" if n_sess is not None else ""
    return FusionSpec(
        name=str(data.get("name", Path(src).stem)), origin="fitted", path=src, sha256=sha,
        normalisation=normalisation, confidence=confidence, heads=scoring,
        calibration_status="; ".join(statuses) + where,
        population_norms_sha256=(data.get("population_norms") or {}).get("sha256"),
        speaker_baseline=str(td.get("speaker_baseline", "session")),
        metadata={"extra_heads": extra, "training_data": td, "metrics": data.get("metrics"),
                  "created_at": data.get("created_at")})


