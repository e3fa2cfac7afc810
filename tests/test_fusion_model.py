"""FusionModel: fitting, speaker-grouped CV without leakage, JSON round trip, clear errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.errors import ConfigError, ParameterError, UnsafeModelFileError
from fusion.scoring.head import load_model_file, load_prior
from fusion.training.estimator import FusionModel, grouped_cross_validate, load_estimators
from fusion.training.persistence import save_model

F0 = "speaker_z.f0_mean_st"
RATE = "population_z.speech_rate_syl_per_s"
SAD = "speaker_z.emotion_sad"


def _data(n_speakers: int = 10, per: int = 30, seed: int = 0):
    """Synthetic segment table: y depends on F0 z with speaker-specific offsets."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"spk{i}" for i in range(n_speakers)], per)
    offset = np.repeat(rng.normal(0, 0.5, n_speakers), per)
    f0 = rng.normal(size=groups.size)
    rate = rng.normal(size=groups.size)
    rate[rng.random(groups.size) < 0.25] = np.nan  # a stream missing in a quarter of rows
    y = (1.5 * f0 + offset + rng.normal(0, 1, groups.size) > 0).astype(int)
    X = pd.DataFrame({F0: f0, RATE: rate, SAD: np.nan})  # SAD never measured
    return X, y, groups


def test_fit_predict_api() -> None:
    X, y, g = _data()
    m = FusionModel(target="stress").fit(X, y, groups=g)
    assert m is not None and list(m.feature_names_in_) == [F0, RATE, SAD]
    assert m.n_features_in_ == 3
    assert m.features_used_ == [F0, RATE]
    assert SAD in m.dropped_features_
    assert m.coef_[0] > 0
    proba = m.predict_proba(X)
    assert proba.shape == (len(X), 2)
    assert np.allclose(proba.sum(axis=1), 1.0) and np.all((proba >= 0) & (proba <= 1))
    assert set(np.unique(m.predict(X))) <= {0, 1}
    assert m.calibrator_ is not None and m.calibrator_.method == "platt"
    # the scoring head gives the same numbers as predict_proba
    row = X.iloc[0].to_dict()
    detail = m.head_.explain({k: (None if np.isnan(v) else v) for k, v in row.items()})
    assert detail.value == pytest.approx(proba[0, 1], abs=1e-12)


def test_missing_values_are_left_out_like_the_training_mean() -> None:
    X, y, g = _data()
    m = FusionModel(target="stress", calibration=None).fit(X, y, groups=g)
    row = X.iloc[[0]].copy()
    row[RATE] = np.nan
    at_mean = row.copy()
    at_mean[RATE] = m.center_[1]
    assert m.decision_function(row)[0] == pytest.approx(m.decision_function(at_mean)[0])


def test_feature_mismatch_is_a_clear_error() -> None:
    X, y, g = _data()
    m = FusionModel(target="stress").fit(X, y, groups=g)
    with pytest.raises(ParameterError, match=r"missing \['population_z.speech_rate"):
        m.predict_proba(X.drop(columns=[RATE]))
    with pytest.raises(ParameterError, match=r"unexpected \['speaker_z.hnr_db'\]"):
        m.predict_proba(X.assign(**{"speaker_z.hnr_db": 0.0}))
    with pytest.raises(ParameterError, match="unknown feature column"):
        FusionModel().fit(X.rename(columns={F0: "pitch"}), y, groups=g)
    with pytest.raises(ParameterError, match="DataFrame"):
        m.predict_proba(X.to_numpy())


def test_input_validation() -> None:
    X, y, g = _data()
    with pytest.raises(ParameterError, match="groups"):
        FusionModel().fit(X, y)  # calibration needs speakers
    with pytest.raises(ParameterError, match="0/1"):
        FusionModel().fit(X, y * 2, groups=g)
    with pytest.raises(ParameterError, match="one class"):
        FusionModel().fit(X, np.zeros_like(y), groups=g)
    with pytest.raises(ParameterError, match="at least 2 speakers"):
        FusionModel().fit(X, y, groups=np.zeros(len(y)))
    with pytest.raises(ParameterError, match="calibration applies to logistic"):
        FusionModel(kind="regression", calibration="platt").fit(X, y.astype(float), groups=g)
    with pytest.raises(ParameterError, match="not fitted"):
        FusionModel().predict_proba(X)
    FusionModel(calibration=None).fit(X, y)  # fine without groups when not calibrating


def test_grouped_cv_has_no_speaker_leakage(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, g = _data(n_speakers=7)
    seen: list[tuple[set, int]] = []
    original = FusionModel.fit

    def spy(self, X_, y_, groups=None, sample_weight=None):
        seen.append((set(np.asarray(groups).tolist()), len(X_)))
        return original(self, X_, y_, groups=groups, sample_weight=sample_weight)

    monkeypatch.setattr(FusionModel, "fit", spy)
    cv = grouped_cross_validate(FusionModel(target="stress", cv=3), X, y, g, n_splits=5)
    assert cv["n_splits"] == 5 and len(cv["folds"]) == 5
    tested = [s for f in cv["folds"] for s in f["test_speakers"]]
    assert sorted(tested) == sorted(set(g.tolist()))  # every speaker tested exactly once
    for fold, (train_speakers, _) in zip(cv["folds"], seen, strict=True):
        assert not train_speakers & set(fold["test_speakers"])
    assert np.all(np.isfinite(cv["oof_calibrated"]))
    for key in ("uncalibrated", "calibrated"):
        m = cv["metrics"][key]
        assert 0.5 < m["auc"] <= 1.0 and 0 <= m["ece"] <= 1


def test_inner_calibration_folds_are_grouped(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, g = _data(n_speakers=4)
    calls: list[tuple[np.ndarray, np.ndarray]] = []
    from sklearn.model_selection import StratifiedGroupKFold

    original = StratifiedGroupKFold.split

    def spy(self, X_, y_=None, groups=None):
        for train, test in original(self, X_, y_, groups):
            calls.append((np.asarray(groups)[train], np.asarray(groups)[test]))
            yield train, test

    monkeypatch.setattr(StratifiedGroupKFold, "split", spy)
    FusionModel(target="stress", cv=4).fit(X, y, groups=g)
    assert len(calls) == 4
    for tr, te in calls:
        assert not set(tr.tolist()) & set(te.tolist())


def test_session_level_metrics() -> None:
    X, y, g = _data()
    sessions = np.array([f"{s}-{i // 10}" for i, s in enumerate(g)])
    cv = grouped_cross_validate(FusionModel(target="stress"), X, y, g, sessions=sessions)
    assert cv["session_metrics"]["calibrated"]["n"] == len(set(sessions.tolist()))


def test_regression_head() -> None:
    X, _, g = _data()
    rng = np.random.default_rng(3)
    cortisol = 10 + 3 * X[F0].to_numpy() + rng.normal(0, 1, len(X))
    m = FusionModel(target="cortisol", kind="regression", calibration=None).fit(
        X, cortisol, groups=g)
    pred = m.predict(X)
    assert np.corrcoef(pred, cortisol)[0, 1] > 0.8
    cv = grouped_cross_validate(m, X, cortisol, g)
    assert cv["metrics"]["ccc"] > 0.7
    detail = m.head_.explain({F0: 1.0, RATE: None})
    assert sum(detail.contributions.values()) == detail.logit
    # logit is the prediction in training-SD units; value = Phi(logit)
    from scipy.stats import norm

    expect = (m.predict(pd.DataFrame({F0: [1.0], RATE: [np.nan], SAD: [np.nan]}))[0]
              - m.y_mean_) / m.y_sd_
    assert detail.logit == pytest.approx(expect, abs=1e-9)
    assert detail.value == pytest.approx(norm.cdf(expect))


@pytest.mark.parametrize("calibration", ["platt", "temperature", "isotonic", None])
def test_json_round_trip_identical_outputs(tmp_path: Path, calibration: str | None) -> None:
    X, y, g = _data()
    m = FusionModel(target="depression", calibration=calibration).fit(X, y, groups=g)
    spec = load_prior()
    path = save_model(tmp_path / "m.json", {"depression": m}, normalisation=spec.normalisation,
                      confidence=spec.confidence, metrics={"x": np.float64(0.5)})
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text
    doc = json.loads(text)
    assert doc["package_versions"]["scikit-learn"]
    assert doc["estimators"]["depression"]["feature_names_in"] == [F0, RATE, SAD]
    loaded = load_estimators(path)["depression"]
    assert np.array_equal(loaded.predict_proba(X), m.predict_proba(X))
    assert np.array_equal(loaded.decision_function(X), m.decision_function(X))
    spec2 = load_model_file(path)
    assert spec2.heads["depression"].to_dict() == m.head_.to_dict()


def test_pickle_is_refused(tmp_path: Path) -> None:
    X, y, g = _data()
    m = FusionModel(target="depression").fit(X, y, groups=g)
    for name in ("m.pkl", "m.joblib", "m.json"):
        p = tmp_path / name
        p.write_bytes(pickle.dumps(m))
        with pytest.raises(UnsafeModelFileError):
            load_model_file(p)
        with pytest.raises(UnsafeModelFileError):
            load_estimators(p)
    with pytest.raises(ParameterError, match="JSON"):
        save_model(tmp_path / "m.pkl", {"depression": m}, normalisation=load_prior().normalisation,
                   confidence=load_prior().confidence)


def test_wrong_format_version(tmp_path: Path) -> None:
    X, y, g = _data()
    m = FusionModel(target="depression").fit(X, y, groups=g)
    spec = load_prior()
    path = save_model(tmp_path / "m.json", {"depression": m}, normalisation=spec.normalisation,
                      confidence=spec.confidence)
    doc = json.loads(path.read_text())
    doc["format_version"] = 7
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="format_version"):
        load_model_file(path)


def test_sklearn_clone_compatible() -> None:
    from sklearn.base import clone

    m = FusionModel(target="stress", C=0.3, calibration="temperature")
    c = clone(m)
    assert c.get_params() == m.get_params() and c is not m
    with pytest.raises(ParameterError, match="unknown parameter"):
        m.set_params(gamma=1)
