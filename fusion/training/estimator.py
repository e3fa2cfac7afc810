"""FusionModel: the scikit-learn-style estimator behind `vocalfusion calibrate`, and its
speaker-grouped cross-validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from features.errors import ConfigError, ParameterError
from fusion._jsonio import read_json_file
from fusion.scoring.calibration import Calibrator, logit, make_calibrator, sigmoid
from fusion.scoring.head import MODEL_FORMAT, HeadKind, LinearHead, linear_scores, standardise
from fusion.scoring.vector import split_fused_name
from fusion.training.evaluation import binary_metrics, regression_metrics

__all__ = ["FusionModel", "grouped_cross_validate", "load_estimators"]

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
        The fitted scoring head (what JSON stores and :class:`~fusion.scoring.fuser.Fuser` uses).

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
            T = standardise(M[:, used], c, s, self.z_clip)
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
        return linear_scores(M[:, idx], fit["center"], fit["scale"], fit["coef"],
                             fit["intercept"], z_clip)

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
        (see :func:`fusion.training.evaluation.binary_metrics`) and, with ``sessions``,
        ``session_metrics``. Regression: ``oof_pred`` and ``metrics`` from
        :func:`fusion.training.evaluation.regression_metrics`.
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


