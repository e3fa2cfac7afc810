"""Probability calibration (Platt, isotonic, temperature) and the metrics that judge it.

A calibrator maps a model's uncalibrated score — the logit ``s`` — to a probability that
matches observed frequencies. Fit it on *held-out* scores (out-of-fold predictions of a
speaker-grouped cross-validation, as :class:`fusion.model.FusionModel` does), never on the
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
    "expected_calibration_error",
    "reliability_curve",
    "brier_score",
    "binary_metrics",
    "regression_metrics",
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


# ------------------------------------------------------------------------- metrics
def _check_py(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y, dtype=float).ravel()
    p_arr = np.asarray(p, dtype=float).ravel()
    if y_arr.shape != p_arr.shape:
        raise ParameterError(f"labels and probabilities differ in length: {y_arr.size} vs "
                             f"{p_arr.size}")
    if y_arr.size == 0:
        raise ParameterError("metrics need at least one sample, got none")
    if np.any((p_arr < 0) | (p_arr > 1)) or not np.all(np.isfinite(p_arr)):
        raise ParameterError("probabilities must be finite and lie in [0, 1]")
    return y_arr, p_arr


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((p * n_bins).astype(int), n_bins - 1)


def reliability_curve(y: Any, p: Any, *, n_bins: int = 10) -> list[dict[str, float]]:
    """Observed frequency against mean predicted probability in equal-width bins.

    Bin ``b`` holds ``b/n_bins <= p < (b+1)/n_bins`` (the last bin includes 1.0). Empty bins are
    left out.

    Returns
    -------
    list of dict
        ``bin_lower, bin_upper, mean_predicted, observed_frequency, count`` per non-empty bin.
    """
    if n_bins < 1:
        raise ParameterError(f"n_bins must be >= 1, got {n_bins}")
    y_arr, p_arr = _check_py(y, p)
    idx = _bin_index(p_arr, n_bins)
    out = []
    for b in range(n_bins):
        m = idx == b
        if not m.any():
            continue
        out.append({"bin_lower": b / n_bins, "bin_upper": (b + 1) / n_bins,
                    "mean_predicted": float(p_arr[m].mean()),
                    "observed_frequency": float(y_arr[m].mean()), "count": int(m.sum())})
    return out


def expected_calibration_error(y: Any, p: Any, *, n_bins: int = 10) -> float:
    """ECE = Σ_b (n_b / N) · |mean(y in b) − mean(p in b)| over equal-width bins of ``p``.

    ``p`` is the predicted probability of the positive class (Naeini et al. 2015, AAAI;
    binary form).

    Examples
    --------
    Bin [0, 0.5) holds p = 0.1, 0.3 (mean 0.2) with outcomes 0, 1 (frequency 0.5); bin
    [0.5, 1] holds 0.8, 0.9 (mean 0.85) with outcomes 1, 1: ECE = ½·0.3 + ½·0.15 = 0.225.

    >>> round(expected_calibration_error([0, 1, 1, 1], [0.1, 0.3, 0.8, 0.9], n_bins=2), 6)
    0.225
    """
    curve = reliability_curve(y, p, n_bins=n_bins)
    n = sum(c["count"] for c in curve)
    return float(sum(c["count"] / n * abs(c["observed_frequency"] - c["mean_predicted"])
                     for c in curve))


def brier_score(y: Any, p: Any) -> float:
    """Mean squared difference between probability and outcome (0 best, 0.25 = coin flip)."""
    y_arr, p_arr = _check_py(y, p)
    return float(np.mean((p_arr - y_arr) ** 2))


def binary_metrics(y: Any, p: Any, *, threshold: float = 0.5,
                   n_bins: int = 10) -> dict[str, Any]:
    """AUC, balanced accuracy, F1 (at ``threshold``), Brier, ECE, log loss, reliability curve.

    AUC is ``None`` when only one class is present.
    """
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    y_arr, p_arr = _check_py(y, p)
    y_int = y_arr.astype(int)
    pred = (p_arr >= threshold).astype(int)
    both = len(np.unique(y_int)) == 2
    return {
        "n": int(y_arr.size),
        "n_positive": int(y_int.sum()),
        "auc": float(roc_auc_score(y_int, p_arr)) if both else None,
        "balanced_accuracy": float(balanced_accuracy_score(y_int, pred)) if both else None,
        "f1": float(f1_score(y_int, pred, zero_division=0.0)),
        "brier": brier_score(y_arr, p_arr),
        "ece": expected_calibration_error(y_arr, p_arr, n_bins=n_bins),
        "log_loss": _nll(p_arr, y_arr),
        "threshold": threshold,
        "reliability": reliability_curve(y_arr, p_arr, n_bins=n_bins),
    }


def regression_metrics(y: Any, pred: Any) -> dict[str, Any]:
    """MAE, RMSE, R², Pearson r, Spearman ρ and Lin's concordance correlation (CCC).

    CCC = 2·cov(y, ŷ) / (var(y) + var(ŷ) + (mean(y) − mean(ŷ))²) (Lin 1989, *Biometrics*
    45:255–268), the metric of the MuSe-Stress challenge.
    """
    from scipy.stats import pearsonr, spearmanr

    y_arr = np.asarray(y, dtype=float).ravel()
    p_arr = np.asarray(pred, dtype=float).ravel()
    if y_arr.shape != p_arr.shape or y_arr.size < 2:
        raise ParameterError("regression metrics need two equal-length arrays of >= 2 values")
    err = p_arr - y_arr
    var_y = float(np.var(y_arr))
    var_p = float(np.var(p_arr))
    cov = float(np.mean((y_arr - y_arr.mean()) * (p_arr - p_arr.mean())))
    denom = var_y + var_p + float((y_arr.mean() - p_arr.mean()) ** 2)
    const = var_y == 0 or var_p == 0
    return {
        "n": int(y_arr.size),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "r2": float(1 - np.sum(err ** 2) / np.sum((y_arr - y_arr.mean()) ** 2)) if var_y else None,
        "pearson_r": None if const else float(pearsonr(y_arr, p_arr)[0]),
        "spearman_rho": None if const else float(spearmanr(y_arr, p_arr)[0]),
        "ccc": float(2 * cov / denom) if denom > 0 else None,
    }
