"""Metrics that judge a probabilistic model: AUC, balanced accuracy, F1, Brier score, expected
calibration error (ECE) and the reliability curve; regression metrics for continuous targets."""

from __future__ import annotations

from typing import Any

import numpy as np

from features.errors import ParameterError
from fusion.scoring.calibration import _nll

__all__ = ["reliability_curve", "expected_calibration_error", "brier_score", "binary_metrics",
           "regression_metrics"]

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
