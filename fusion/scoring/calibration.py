"""Probability calibration (Platt, isotonic, temperature) and the metrics that judge it.

A calibrator maps a model's uncalibrated score — the logit ``s`` — to a probability that
matches observed frequencies. Fit it on *held-out* scores (out-of-fold predictions of a
speaker-grouped cross-validation, as :class:`fusion.training.estimator.FusionModel` does),
never on the
scores of the data the model was trained on.

Methods
-------
platt
    ``p = σ(a·s + b)``, two parameters fitted by maximum likelihood with Platt's smoothed
    targets ``t₊ = (N₊+1)/(N₊+2)``, ``t₋ = 1/(N₋+2)`` (Platt 1999, "Probabilistic outputs for
    support vector machines"). Robust with little data.
temperature
    ``p = σ(s / T)``, one parameter (Guo et al. 2017, "On calibration of modern neural
    networks", ICML). Keeps the ranking and the 0.5 point; only sharpens or softens.
isotonic
    A monotone step function fitted by pool-adjacent-violators (Zadrozny & Elkan 2002),
    interpolated linearly between its knots. Flexible, but it **overfits below roughly 1000
    calibration samples** (Niculescu-Mizil & Caruana 2005, ICML); prefer Platt or temperature
    for small data sets.

Metrics (:func:`binary_metrics`)
--------------------------------
AUC (ROC), balanced accuracy and F1 at a threshold, Brier score (mean squared error of the
probability), expected calibration error (ECE, :func:`expected_calibration_error`) and the
reliability curve (:func:`reliability_curve`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from features.errors import ConfigError, ParameterError

__all__ = [
    "Calibrator",
    "PlattCalibrator",
    "TemperatureCalibrator",
    "IsotonicCalibrator",
    "CALIBRATORS",
    "make_calibrator",
    "calibrator_from_dict",
    "sigmoid",
    "logit",
]


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    """Numerically stable logistic function."""
    x_arr = np.asarray(x, dtype=float)
    out = np.empty_like(x_arr)
    pos = x_arr >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x_arr[pos]))
    ex = np.exp(x_arr[~pos])
    out[~pos] = ex / (1.0 + ex)
    return float(out) if np.ndim(x) == 0 else out


def logit(p: float) -> float:
    """``log(p / (1 − p))`` for ``0 < p < 1``."""
    if not 0.0 < p < 1.0:
        raise ParameterError(f"logit needs 0 < p < 1, got {p!r}")
    return math.log(p / (1.0 - p))


def _check_xy(s: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    s_arr = np.asarray(s, dtype=float).ravel()
    y_arr = np.asarray(y, dtype=float).ravel()
    if s_arr.shape != y_arr.shape:
        raise ParameterError(f"scores and labels differ in length: {s_arr.size} vs {y_arr.size}")
    if s_arr.size == 0:
        raise ParameterError("calibration needs at least one sample, got none")
    if not np.all(np.isfinite(s_arr)):
        raise ParameterError("calibration scores must be finite")
    if not np.all((y_arr == 0) | (y_arr == 1)):
        raise ParameterError(f"labels must be 0 or 1, got values {sorted(set(y_arr.tolist()))[:5]}")
    return s_arr, y_arr


def _nll(p: np.ndarray, t: np.ndarray) -> float:
    eps = 1e-12
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


class Calibrator:
    """Base class: ``fit(logits, y)`` → self, ``predict(logits)`` → probabilities in [0, 1]."""

    method: ClassVar[str] = ""

    def fit(self, s: Any, y: Any) -> Calibrator:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, s: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibrator:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise ParameterError(f"{type(self).__name__} is not fitted; call fit() first")


class PlattCalibrator(Calibrator):
    """``p = σ(a·s + b)`` (Platt 1999), fitted with smoothed targets."""

    method = "platt"

    def __init__(self) -> None:
        self.a_: float = 1.0
        self.b_: float = 0.0
        self.fitted_ = False

    def fit(self, s: Any, y: Any) -> PlattCalibrator:
        from scipy.optimize import minimize

        s_arr, y_arr = _check_xy(s, y)
        n_pos = float(y_arr.sum())
        n_neg = float(y_arr.size - n_pos)
        t = np.where(y_arr == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

        def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
            a, b = params
            p = np.asarray(sigmoid(a * s_arr + b))
            value = _nll(p, t)
            g = (p - t) / s_arr.size
            return value, np.array([float(np.sum(g * s_arr)), float(np.sum(g))])

        res = minimize(loss, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        self.a_, self.b_ = float(res.x[0]), float(res.x[1])
        self.fitted_ = True
        return self

    def predict(self, s: Any) -> np.ndarray:
        self._check_fitted()
        return np.asarray(sigmoid(self.a_ * np.asarray(s, dtype=float) + self.b_))

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"method": self.method, "a": self.a_, "b": self.b_}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlattCalibrator:
        c = cls()
        c.a_, c.b_ = float(d["a"]), float(d["b"])
        c.fitted_ = True
        return c


class TemperatureCalibrator(Calibrator):
    """``p = σ(s / T)`` (Guo et al. 2017); ``T`` searched in [0.01, 100]."""

    method = "temperature"
    T_RANGE = (0.01, 100.0)

    def __init__(self) -> None:
        self.temperature_: float = 1.0
        self.fitted_ = False

    def fit(self, s: Any, y: Any) -> TemperatureCalibrator:
        from scipy.optimize import minimize_scalar

        s_arr, y_arr = _check_xy(s, y)
        lo, hi = (math.log(v) for v in self.T_RANGE)
        res = minimize_scalar(lambda lt: _nll(np.asarray(sigmoid(s_arr / math.exp(lt))), y_arr),
                              bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
        self.temperature_ = float(math.exp(res.x))
        self.fitted_ = True
        return self

    def predict(self, s: Any) -> np.ndarray:
        self._check_fitted()
        return np.asarray(sigmoid(np.asarray(s, dtype=float) / self.temperature_))

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"method": self.method, "temperature": self.temperature_}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TemperatureCalibrator:
        c = cls()
        t = float(d["temperature"])
        if not t > 0:
            raise ConfigError(f"temperature must be > 0, got {t!r}")
        c.temperature_ = t
        c.fitted_ = True
        return c


class IsotonicCalibrator(Calibrator):
    """Monotone step function of the logit (PAV), linear between knots, clipped at the ends.

    Overfits below roughly 1000 calibration samples (Niculescu-Mizil & Caruana 2005).
    """

    method = "isotonic"

    def __init__(self) -> None:
        self.x_: np.ndarray = np.zeros(0)
        self.y_: np.ndarray = np.zeros(0)
        self.fitted_ = False

    def fit(self, s: Any, y: Any) -> IsotonicCalibrator:
        from sklearn.isotonic import IsotonicRegression

        s_arr, y_arr = _check_xy(s, y)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(s_arr, y_arr)
        self.x_ = np.asarray(iso.X_thresholds_, dtype=float)
        self.y_ = np.asarray(iso.y_thresholds_, dtype=float)
        self.fitted_ = True
        return self

    def predict(self, s: Any) -> np.ndarray:
        self._check_fitted()
        s_arr = np.asarray(s, dtype=float)
        if self.x_.size == 1:
            return np.full_like(s_arr, self.y_[0], dtype=float)
        return np.interp(s_arr, self.x_, self.y_)

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"method": self.method, "x": self.x_.tolist(), "y": self.y_.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IsotonicCalibrator:
        c = cls()
        c.x_ = np.asarray(d["x"], dtype=float)
        c.y_ = np.asarray(d["y"], dtype=float)
        if c.x_.shape != c.y_.shape or c.x_.size == 0 or np.any(np.diff(c.x_) < 0):
            raise ConfigError("isotonic calibrator needs equal-length, non-empty, sorted x/y")
        if np.any((c.y_ < 0) | (c.y_ > 1)):
            raise ConfigError("isotonic calibrator y values must lie in [0, 1]")
        c.fitted_ = True
        return c


#: allow-list of calibration methods
CALIBRATORS: dict[str, type[Calibrator]] = {
    "platt": PlattCalibrator,
    "temperature": TemperatureCalibrator,
    "isotonic": IsotonicCalibrator,
}


def make_calibrator(method: str) -> Calibrator:
    """A new, unfitted calibrator: ``"platt"``, ``"temperature"`` or ``"isotonic"``."""
    try:
        return CALIBRATORS[method]()
    except KeyError:
        raise ParameterError(f"calibration method must be one of {sorted(CALIBRATORS)}, "
                             f"got {method!r}") from None


def calibrator_from_dict(d: Mapping[str, Any]) -> Calibrator:
    """Rebuild a fitted calibrator from :meth:`Calibrator.to_dict` output."""
    method = d.get("method")
    if method not in CALIBRATORS:
        raise ConfigError(f"unknown calibration method {method!r}; valid: {sorted(CALIBRATORS)}")
    try:
        return CALIBRATORS[method].from_dict(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {method} calibrator parameters: {exc}") from None


