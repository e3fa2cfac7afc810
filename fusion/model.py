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
  (:mod:`fusion.calibration`). A regression head reports the prediction in training-SD units
  in ``logit`` (``z = (ŷ − ȳ) / s_y``) and ``value = Φ(z)``, the predicted target's position
  on the training distribution under a normal approximation.

:class:`FusionModel` is a scikit-learn-style estimator (``fit(X, y, groups=...)`` returns
self, ``predict_proba``, learned state ending in ``_``, ``feature_names_in_``);
:func:`grouped_cross_validate` evaluates it with speaker-grouped folds (no speaker in both
train and test). Models are saved as JSON (:func:`save_model`); pickle is never read.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.errors import ConfigError, ParameterError
from fusion._jsonio import read_json_file
from fusion.baseline import NormalisationSettings
from fusion.calibration import (
    Calibrator,
    binary_metrics,
    calibrator_from_dict,
    logit,
    make_calibrator,
    regression_metrics,
    sigmoid,
)
from fusion.features_vector import FEATURES, FUSION_STREAMS, split_fused_name
from fusion.schema import ScoreDetail

__all__ = [
    "TARGETS",
    "PRIOR_CALIBRATION_STATUS",
    "ConfidenceSettings",
    "LinearHead",
    "FusionSpec",
    "FusionModel",
    "grouped_cross_validate",
    "load_prior",
    "load_model_file",
    "load_estimators",
    "save_model",
    "package_versions",
]

TARGETS = ("stress", "depression")
PRIOR_FORMAT = "vocalfusion-fusion-prior"
MODEL_FORMAT = "vocalfusion-fusion-model"
PRIOR_CALIBRATION_STATUS = "prior — not calibrated on labelled data"
HeadKind = Literal["logistic", "regression"]


class ConfidenceSettings(BaseModel):
    """Segment-quality factors of the confidence (model JSON ``confidence`` block)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    full_duration_s: float = Field(gt=0)
    full_voiced_fraction: float = Field(gt=0, le=1)
    rule: str = ""


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

    @property
    def calibrated(self) -> bool:
        return self.calibrator is not None

    @property
    def total_abs_weight(self) -> float:
        return float(sum(abs(w) for w in self.weights.values()))

    def _standardised(self, name: str, x: float) -> float:
        z = (x - self.center.get(name, 0.0)) / self.scale.get(name, 1.0)
        return float(min(max(z, -self.z_clip), self.z_clip))

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
            beta = float(c["beta"])
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


# ------------------------------------------------------------------------- estimator
def _as_frame(X: Any, *, what: str = "X") -> Any:
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, Sequence) and X and isinstance(X[0], Mapping):
        return pd.DataFrame.from_records(list(X)).astype(float)
    raise ParameterError(f"{what} must be a pandas DataFrame (or a list of dicts) whose "
                         "columns are fused feature names like 'speaker_z.f0_mean_st'; got "
                         f"{type(X).__name__}")


class FusionModel:
    """Regularised linear fusion model for one target, scikit-learn style.

    Parameters
    ----------
    target : str
        Name of what is predicted (``"depression"``, ``"stress"``, ``"cortisol"``, ...).
    kind : {"logistic", "regression"}
        L2 logistic regression for binary labels; ridge regression for continuous targets.
    C : float
        Inverse L2 strength of the logistic regression (scikit-learn's ``C``).
    alpha : float
        Ridge penalty of the regression.
    calibration : {"platt", "temperature", "isotonic"} or None
        Calibrator fitted on out-of-fold logits of a speaker-grouped inner cross-validation
        inside :meth:`fit` (needs ``groups`` with at least 2 speakers). Isotonic overfits below
        roughly 1000 samples.
    cv : int
        Number of inner folds for the calibrator (capped at the number of speakers).
    z_clip : float
        Standardised features are clipped to ``[-z_clip, z_clip]``.
    min_present : int
        Features with fewer non-missing training values are dropped (``dropped_features_``).

    Attributes
    ----------
    feature_names_in_ : ndarray of str
    n_features_in_ : int
    features_used_ : list of str
    dropped_features_ : dict
        Feature → reason it was not used.
    center_, scale_ : ndarray
        Training mean and SD of the used features.
    coef_ : ndarray
        Weight per standardised used feature.
    intercept_ : float
    classes_ : ndarray (logistic only)
    calibrator_ : Calibrator or None
    y_mean_, y_sd_ : float (regression only)
    head_ : LinearHead
        The fitted scoring head (what JSON stores and :class:`~fusion.fuse.Fuser` uses).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"speaker_z.f0_mean_st": rng.normal(size=80)})
    >>> y = (X["speaker_z.f0_mean_st"] + rng.normal(size=80) > 0).astype(int).to_numpy()
    >>> groups = np.repeat(np.arange(8), 10)
    >>> m = FusionModel(target="stress").fit(X, y, groups=groups)
    >>> m.predict_proba(X).shape
    (80, 2)
    """

    def __init__(self, *, target: str = "depression", kind: HeadKind = "logistic",
                 C: float = 1.0, alpha: float = 1.0, calibration: str | None = "platt",
                 cv: int = 5, z_clip: float = 4.0, min_present: int = 3) -> None:
        self.target = target
        self.kind = kind
        self.C = C
        self.alpha = alpha
        self.calibration = calibration
        self.cv = cv
        self.z_clip = z_clip
        self.min_present = min_present

    # sklearn-compatible parameter access (so clone() and grid search work)
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("target", "kind", "C", "alpha", "calibration",
                                              "cv", "z_clip", "min_present")}

    def set_params(self, **params: Any) -> FusionModel:
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ParameterError(f"unknown parameter {k!r}; valid: {sorted(valid)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"FusionModel({args})"

    # -------------------------------------------------------------- validation
    def _validate_params(self) -> None:
        if self.kind not in ("logistic", "regression"):
            raise ParameterError(f"kind must be 'logistic' or 'regression', got {self.kind!r}")
        if not self.C > 0 or not self.alpha > 0:
            raise ParameterError(f"C and alpha must be > 0, got C={self.C!r}, "
                                 f"alpha={self.alpha!r}")
        if self.calibration is not None:
            if self.kind == "regression":
                raise ParameterError("calibration applies to logistic models only; use "
                                     "calibration=None for regression")
            make_calibrator(self.calibration)  # validates the name
        if int(self.cv) < 2:
            raise ParameterError(f"cv must be >= 2, got {self.cv!r}")

    def _check_y(self, y: Any, n: int) -> np.ndarray:
        y_arr = np.asarray(y, dtype=float).ravel()
        if y_arr.size != n:
            raise ParameterError(f"y has {y_arr.size} values for {n} rows of X")
        if not np.all(np.isfinite(y_arr)):
            raise ParameterError("y must be finite (drop rows without a label)")
        if self.kind == "logistic":
            vals = set(np.unique(y_arr).tolist())
            if not vals <= {0.0, 1.0}:
                raise ParameterError(f"logistic {self.target!r} labels must be 0/1, got "
                                     f"{sorted(vals)[:6]}")
            if len(vals) < 2:
                raise ParameterError(f"{self.target!r} labels hold one class only "
                                     f"({sorted(vals)}); both 0 and 1 are needed")
        return y_arr

    def _matrix(self, X: Any) -> np.ndarray:
        """Columns of X in ``feature_names_in_`` order; clear error on a mismatch."""
        frame = _as_frame(X)
        expected = list(self.feature_names_in_)
        cols = [str(c) for c in frame.columns]
        missing = [c for c in expected if c not in cols]
        extra = [c for c in cols if c not in expected]
        if missing or extra:
            raise ParameterError(
                f"features do not match the fitted {self.target!r} model: missing "
                f"{missing[:8]}{' …' if len(missing) > 8 else ''}, unexpected "
                f"{extra[:8]}{' …' if len(extra) > 8 else ''} (the model was fitted on "
                f"{len(expected)} features)")
        return frame[expected].to_numpy(dtype=float)

    # -------------------------------------------------------------- fitting
    def _fit_linear(self, M: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                    names: list[str]) -> dict[str, Any]:
        """Standardise, drop unusable columns, fit the linear model; no calibration."""
        present = np.isfinite(M)
        counts = present.sum(axis=0)
        used: list[int] = []
        dropped: dict[str, str] = {}
        centers, scales = [], []
        for j, name in enumerate(names):
            if counts[j] < self.min_present:
                dropped[name] = f"present in {int(counts[j])} rows (< {self.min_present})"
                continue
            col = M[present[:, j], j]
            sd = float(np.std(col))
            if not sd > 1e-12:
                dropped[name] = "constant in the training data"
                continue
            used.append(j)
            centers.append(float(np.mean(col)))
            scales.append(sd)
        c = np.asarray(centers)
        s = np.asarray(scales)
        T = np.zeros((M.shape[0], len(used)))
        if used:
            Z = (M[:, used] - c) / s
            T = np.where(np.isfinite(Z), np.clip(Z, -self.z_clip, self.z_clip), 0.0)
        if self.kind == "logistic":
            from sklearn.linear_model import LogisticRegression

            if not used:
                p = float(np.average(y, weights=w))
                p = min(max(p, 1e-6), 1 - 1e-6)
                coef, b0 = np.zeros(0), logit(p)
            else:
                lr = LogisticRegression(C=self.C, max_iter=2000)
                lr.fit(T, y.astype(int), sample_weight=w)
                coef, b0 = lr.coef_.ravel().astype(float), float(lr.intercept_[0])
            return {"used": [names[j] for j in used], "dropped": dropped, "center": c,
                    "scale": s, "coef": coef, "intercept": b0}
        from sklearn.linear_model import Ridge

        y_mean = float(np.average(y, weights=w))
        if used:
            rr = Ridge(alpha=self.alpha).fit(T, y, sample_weight=w)
            coef, b0 = rr.coef_.ravel().astype(float), float(rr.intercept_)
        else:
            coef, b0 = np.zeros(0), y_mean
        return {"used": [names[j] for j in used], "dropped": dropped, "center": c, "scale": s,
                "coef": coef, "intercept": b0}

    @staticmethod
    def _linear_scores(M: np.ndarray, fit: Mapping[str, Any], names: list[str],
                       z_clip: float) -> np.ndarray:
        idx = [names.index(n) for n in fit["used"]]
        if not idx:
            return np.full(M.shape[0], fit["intercept"], dtype=float)
        Z = (M[:, idx] - fit["center"]) / fit["scale"]
        T = np.where(np.isfinite(Z), np.clip(Z, -z_clip, z_clip), 0.0)
        return fit["intercept"] + T @ fit["coef"]

    def fit(self, X: Any, y: Any, groups: Any = None,
            sample_weight: Any = None) -> FusionModel:
        """Fit on fused features ``X`` (NaN = absent) and labels ``y``.

        Parameters
        ----------
        X : DataFrame, shape (n_samples, n_features)
            Columns are fused feature names (``speaker_z.<f>`` / ``population_z.<f>``).
        y : array-like, shape (n_samples,)
            0/1 labels (logistic) or continuous values (regression).
        groups : array-like, shape (n_samples,), optional
            Speaker of each row. Required for calibration: the calibrator is fitted on
            out-of-fold logits from folds that never share a speaker.
        sample_weight : array-like, optional

        Returns
        -------
        self
        """
        self._validate_params()
        frame = _as_frame(X)
        names = [str(c) for c in frame.columns]
        for n in names:
            try:
                split_fused_name(n)
            except KeyError:
                raise ParameterError(f"unknown feature column {n!r}; columns must be fused "
                                     "feature names like 'speaker_z.f0_mean_st'") from None
        M = frame.to_numpy(dtype=float)
        yv = self._check_y(y, M.shape[0])
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=float).ravel()
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        fit = self._fit_linear(M, yv, w, names)
        self.features_used_ = list(fit["used"])
        self.dropped_features_ = dict(fit["dropped"])
        self.center_, self.scale_ = fit["center"], fit["scale"]
        self.coef_, self.intercept_ = fit["coef"], fit["intercept"]
        self.calibrator_: Calibrator | None = None
        if self.kind == "logistic":
            self.classes_ = np.array([0, 1])
            if self.calibration is not None:
                if groups is None:
                    raise ParameterError(
                        "calibration needs groups (the speaker of each row) so that the "
                        "calibrator is fitted on speakers the model did not see; pass "
                        "groups=... or calibration=None")
                oof = self._oof_logits(M, yv, w, names, np.asarray(groups))
                self.calibrator_ = make_calibrator(self.calibration).fit(oof, yv)
        else:
            self.y_mean_ = float(np.average(yv, weights=w))
            sd = float(np.sqrt(np.average((yv - self.y_mean_) ** 2, weights=w)))
            if not sd > 0:
                raise ParameterError(f"{self.target!r} values are constant; nothing to learn")
            self.y_sd_ = sd
        self.head_ = self._make_head()
        return self

    def _splitter(self, y: np.ndarray, groups: np.ndarray, n_splits: int) -> Any:
        from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

        if self.kind == "logistic":
            return StratifiedGroupKFold(n_splits=n_splits)
        return GroupKFold(n_splits=n_splits)

    def _oof_logits(self, M: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                    names: list[str], groups: np.ndarray) -> np.ndarray:
        if groups.shape[0] != M.shape[0]:
            raise ParameterError(f"groups has {groups.shape[0]} values for {M.shape[0]} rows")
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            raise ParameterError(f"calibration needs at least 2 speakers (groups), got "
                                 f"{n_groups}")
        k = min(int(self.cv), n_groups)
        oof = np.full(M.shape[0], np.nan)
        for train, test in self._splitter(y, groups, k).split(M, y.astype(int), groups):
            if len(np.unique(y[train])) < 2:
                raise ParameterError(
                    "an inner calibration fold holds one class only; provide more speakers "
                    "with both labels or use calibration=None")
            fit = self._fit_linear(M[train], y[train], None if w is None else w[train], names)
            oof[test] = self._linear_scores(M[test], fit, names, self.z_clip)
        return oof

    def _make_head(self) -> LinearHead:
        weights = {n: float(c) for n, c in zip(self.features_used_, self.coef_, strict=True)}
        center = {n: float(c) for n, c in zip(self.features_used_, self.center_, strict=True)}
        scale = {n: float(s) for n, s in zip(self.features_used_, self.scale_, strict=True)}
        return LinearHead(target=self.target, kind=self.kind, intercept=float(self.intercept_),
                          weights=weights, center=center, scale=scale, z_clip=self.z_clip,
                          calibrator=self.calibrator_,
                          y_mean=getattr(self, "y_mean_", None),
                          y_sd=getattr(self, "y_sd_", None), origin="fitted")

    # -------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise ParameterError(f"this FusionModel ({self.target!r}) is not fitted; call "
                                 "fit() or load one with FusionModel.from_dict()")

    def decision_function(self, X: Any) -> np.ndarray:
        """Uncalibrated linear score per row (log-odds for logistic; target units for
        regression)."""
        self._check_fitted()
        M = self._matrix(X)
        names = list(self.feature_names_in_)
        fit = {"used": self.features_used_, "center": self.center_, "scale": self.scale_,
               "coef": self.coef_, "intercept": self.intercept_}
        return self._linear_scores(M, fit, names, self.z_clip)

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n, 2)`` array ``[P(y=0), P(y=1)]``, calibrated when a calibrator was fitted."""
        self._check_fitted()
        if self.kind != "logistic":
            raise ParameterError("predict_proba is for logistic models; use predict()")
        s = self.decision_function(X)
        p = np.clip(np.asarray(self.head_.value_from_logit(s), dtype=float), 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any, *, threshold: float = 0.5) -> np.ndarray:
        """0/1 labels (logistic, at ``threshold``) or predicted values (regression)."""
        if self.kind == "logistic":
            return (self.predict_proba(X)[:, 1] >= threshold).astype(int)
        return self.decision_function(X)

    # -------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: parameters, input features, and the fitted head."""
        self._check_fitted()
        return {"params": self.get_params(),
                "feature_names_in": [str(n) for n in self.feature_names_in_],
                "dropped_features": self.dropped_features_,
                "head": self.head_.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "model") -> FusionModel:
        """Rebuild a fitted model from :meth:`to_dict` output (predictions are identical)."""
        try:
            m = cls(**d["params"])
            head = LinearHead.from_dict(d["head"], source=source)
            m.feature_names_in_ = np.asarray(list(d["feature_names_in"]), dtype=object)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{source}: invalid model entry: {exc}") from None
        m.n_features_in_ = len(m.feature_names_in_)
        unknown = [n for n in head.weights if n not in set(m.feature_names_in_)]
        if unknown:
            raise ConfigError(f"{source}: head uses features not in feature_names_in: {unknown}")
        m.features_used_ = list(head.weights)
        m.dropped_features_ = dict(d.get("dropped_features") or {})
        m.coef_ = np.array([head.weights[n] for n in m.features_used_], dtype=float)
        m.center_ = np.array([head.center[n] for n in m.features_used_], dtype=float)
        m.scale_ = np.array([head.scale[n] for n in m.features_used_], dtype=float)
        m.intercept_ = head.intercept
        m.calibrator_ = head.calibrator
        if head.kind == "logistic":
            m.classes_ = np.array([0, 1])
        else:
            m.y_mean_, m.y_sd_ = float(head.y_mean or 0.0), float(head.y_sd or 1.0)
        m.head_ = head
        return m


# ------------------------------------------------------------------------- evaluation
def grouped_cross_validate(model: FusionModel, X: Any, y: Any, groups: Any, *,
                           n_splits: int = 5, sessions: Any = None) -> dict[str, Any]:
    """Speaker-grouped cross-validation: out-of-fold predictions and metrics.

    Folds come from ``StratifiedGroupKFold`` (logistic) or ``GroupKFold`` (regression): every
    speaker's rows are in exactly one test fold, and no speaker is in both the training and
    the test part of a fold (checked). Each fold fits a fresh copy of ``model`` — including its
    inner, speaker-grouped calibration — on the training speakers only.

    Parameters
    ----------
    model : FusionModel
        Unfitted template (its parameters are copied).
    X, y, groups
        As for :meth:`FusionModel.fit`; ``groups`` is the speaker of each row.
    n_splits : int
        Capped at the number of speakers.
    sessions : array-like, optional
        Session id of each row: adds session-level metrics (mean of a session's out-of-fold
        probabilities against its label).

    Returns
    -------
    dict
        ``n_splits``, ``folds`` (test speakers per fold), ``oof_logit``, ``oof_uncalibrated``,
        ``oof_calibrated`` (arrays), ``metrics`` = ``{"uncalibrated": ..., "calibrated": ...}``
        (see :func:`fusion.calibration.binary_metrics`) and, with ``sessions``,
        ``session_metrics``. Regression: ``oof_pred`` and ``metrics`` from
        :func:`fusion.calibration.regression_metrics`.
    """
    frame = _as_frame(X)
    yv = np.asarray(y, dtype=float).ravel()
    g = np.asarray(groups)
    if g.shape[0] != yv.shape[0] or len(frame) != yv.shape[0]:
        raise ParameterError("X, y and groups must have the same number of rows")
    n_groups = len(np.unique(g))
    if n_groups < 2:
        raise ParameterError(f"grouped cross-validation needs >= 2 speakers, got {n_groups}")
    k = min(int(n_splits), n_groups)
    template = FusionModel(**model.get_params())
    splitter = template._splitter(yv, g, k)
    folds = []
    oof_s = np.full(yv.shape[0], np.nan)
    oof_cal = np.full(yv.shape[0], np.nan)
    strat_y = yv.astype(int) if template.kind == "logistic" else yv
    for train, test in splitter.split(frame, strat_y, g):
        train_g, test_g = set(g[train].tolist()), set(g[test].tolist())
        if train_g & test_g:  # pragma: no cover - guaranteed by the splitter
            raise RuntimeError(f"speaker leakage between train and test: {train_g & test_g}")
        m = FusionModel(**model.get_params()).fit(frame.iloc[train], yv[train], groups=g[train])
        oof_s[test] = m.decision_function(frame.iloc[test])
        if template.kind == "logistic":
            oof_cal[test] = m.predict_proba(frame.iloc[test])[:, 1]
        folds.append({"test_speakers": sorted(map(str, test_g)), "n_test": int(len(test)),
                      "n_train": int(len(train))})
    out: dict[str, Any] = {"n_splits": k, "folds": folds, "oof_logit": oof_s}
    if template.kind == "regression":
        out["oof_pred"] = oof_s
        out["metrics"] = regression_metrics(yv, oof_s)
        return out
    oof_unc = np.asarray(sigmoid(oof_s))
    out["oof_uncalibrated"] = oof_unc
    out["oof_calibrated"] = oof_cal
    out["metrics"] = {"uncalibrated": binary_metrics(yv, oof_unc)}
    if template.calibration is not None:
        out["metrics"]["calibrated"] = binary_metrics(yv, oof_cal)
    if sessions is not None:
        sess = np.asarray(sessions)
        ids = list(dict.fromkeys(sess.tolist()))
        ys = np.array([yv[sess == s][0] for s in ids])
        out["session_metrics"] = {
            "uncalibrated": binary_metrics(ys, [oof_unc[sess == s].mean() for s in ids])}
        if template.calibration is not None:
            out["session_metrics"]["calibrated"] = binary_metrics(
                ys, [oof_cal[sess == s].mean() for s in ids])
    return out


def load_estimators(path: str | Path) -> dict[str, FusionModel]:
    """The fitted :class:`FusionModel` of every head in a model JSON (for the Python API)."""
    data, _ = read_json_file(path, what="fusion model")
    if data.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{path}: not a vocalfusion fusion model (format "
                          f"{data.get('format')!r}, expected {MODEL_FORMAT!r})")
    out = {}
    for target, hd in (data.get("heads") or {}).items():
        est = (data.get("estimators") or {}).get(target)
        if est is None:
            raise ConfigError(f"{path}: head {target!r} has no 'estimators' entry")
        out[target] = FusionModel.from_dict({**est, "head": hd}, source=f"{path}: {target}")
    return out


# ------------------------------------------------------------------------- saving
def package_versions() -> dict[str, str]:
    """Versions of the packages a model file's numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("vocalfusion", "numpy", "scipy", "scikit-learn", "pandas", "praat-parselmouth"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def save_model(path: str | Path, models: Mapping[str, FusionModel], *,
               normalisation: NormalisationSettings, confidence: ConfidenceSettings,
               population_norms: Mapping[str, Any] | None = None,
               training_data: Mapping[str, Any] | None = None,
               metrics: Mapping[str, Any] | None = None, name: str | None = None) -> Path:
    """Write fitted models (one per target) as a fusion model JSON (atomically).

    Parameters
    ----------
    path : str or Path
        Must end in ``.json``.
    models : dict
        Head name → fitted :class:`FusionModel`; ``"stress"`` and ``"depression"`` are used
        by the :class:`~fusion.fuse.Fuser`; other names (e.g. ``"cortisol"``) are stored too.
    normalisation, confidence
        The settings the training features were computed with (copied from the prior).
    population_norms : dict, optional
        ``{"name": ..., "sha256": ...}`` of the norms the features used.
    training_data, metrics : dict, optional
        Description of the labelled data and the cross-validated metrics.
    """
    import json

    from fusion.files import atomic_write_text

    p = Path(path)
    if p.suffix.lower() != ".json":
        raise ParameterError(f"{p}: model files are JSON; use a .json file name")
    if not models:
        raise ParameterError("save_model needs at least one fitted model")
    doc = {
        "format": MODEL_FORMAT, "format_version": 1,
        "name": name or p.stem,
        "created_at": datetime.now(UTC).isoformat(),
        "package_versions": package_versions(),
        "normalisation": normalisation.model_dump(),
        "confidence": confidence.model_dump(),
        "population_norms": dict(population_norms or {}),
        "training_data": dict(training_data or {}),
        "metrics": _jsonable(metrics or {}),
        "heads": {t: m.head_.to_dict() for t, m in models.items()},
        "estimators": {t: {k: v for k, v in m.to_dict().items() if k != "head"}
                       for t, m in models.items()},
    }
    for m in models.values():
        m._check_fitted()
    atomic_write_text(p, json.dumps(doc, indent=2, allow_nan=False))
    return p


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
