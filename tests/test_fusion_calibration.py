"""Calibration methods and metrics against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from features.errors import ConfigError, ParameterError
from fusion.scoring.calibration import (
    IsotonicCalibrator,
    PlattCalibrator,
    TemperatureCalibrator,
    calibrator_from_dict,
    make_calibrator,
    sigmoid,
)
from fusion.training.evaluation import (
    binary_metrics,
    brier_score,
    expected_calibration_error,
    regression_metrics,
    reliability_curve,
)


def test_ece_hand_computed() -> None:
    # 10 bins. p = 0.05, 0.15 → bins 0 and 1; p = 0.72, 0.78 → bin 7; p = 1.0 → bin 9.
    y = [0, 1, 1, 0, 1]
    p = [0.05, 0.15, 0.72, 0.78, 1.0]
    # bin0: |0 - 0.05| = 0.05 (n 1); bin1: |1 - 0.15| = 0.85 (n 1);
    # bin7: mean p 0.75, freq 0.5 → 0.25 (n 2); bin9: |1 - 1| = 0 (n 1)
    expected = (0.05 + 0.85 + 2 * 0.25 + 0.0) / 5
    assert expected_calibration_error(y, p) == pytest.approx(expected, abs=1e-12)
    curve = reliability_curve(y, p)
    assert [c["count"] for c in curve] == [1, 1, 2, 1]
    assert curve[2]["mean_predicted"] == pytest.approx(0.75)
    assert curve[2]["observed_frequency"] == pytest.approx(0.5)
    assert curve[-1]["bin_upper"] == 1.0


def test_ece_two_bins_docstring_case() -> None:
    assert expected_calibration_error([0, 1, 1, 1], [0.1, 0.3, 0.8, 0.9],
                                      n_bins=2) == pytest.approx(0.225)


def test_ece_zero_for_perfect_calibration() -> None:
    y = [0, 0, 0, 1] * 5 + [1, 1, 1, 0] * 5
    p = [0.25] * 20 + [0.75] * 20
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)


def test_brier_hand_computed() -> None:
    assert brier_score([0, 1], [0.2, 0.6]) == pytest.approx((0.04 + 0.16) / 2)


def test_binary_metrics_fields() -> None:
    m = binary_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    assert m["auc"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    assert m["n"] == 4 and m["n_positive"] == 2
    assert binary_metrics([1, 1], [0.2, 0.9])["auc"] is None


def test_metrics_reject_bad_probabilities() -> None:
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        brier_score([0, 1], [0.5, 1.5])
    with pytest.raises(ParameterError, match="differ in length"):
        expected_calibration_error([0, 1], [0.5])


def test_regression_metrics_hand_computed() -> None:
    y = [1.0, 2.0, 3.0, 4.0]
    m = regression_metrics(y, y)
    assert m["ccc"] == pytest.approx(1.0) and m["mae"] == 0.0
    shifted = regression_metrics(y, [v + 1 for v in y])
    # CCC = 2 cov / (var y + var p + (mean diff)^2) = 2*1.25 / (1.25 + 1.25 + 1) = 2.5/3.5
    assert shifted["ccc"] == pytest.approx(2.5 / 3.5)
    assert shifted["pearson_r"] == pytest.approx(1.0)


def _overconfident(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0, 1.5, n)
    y = (rng.random(n) < sigmoid(true_logit)).astype(int)
    return 3.0 * true_logit + 0.5, y  # too sharp and shifted


@pytest.mark.parametrize("method", ["platt", "temperature", "isotonic"])
def test_calibrators_reduce_ece_on_held_out_data(method: str) -> None:
    s, y = _overconfident()
    s_fit, y_fit, s_test, y_test = s[:2000], y[:2000], s[2000:], y[2000:]
    before = expected_calibration_error(y_test, sigmoid(s_test))
    cal = make_calibrator(method).fit(s_fit, y_fit)
    after = expected_calibration_error(y_test, cal.predict(s_test))
    assert after < before / 2
    p = cal.predict(s_test)
    assert np.all((p >= 0) & (p <= 1))


def test_temperature_recovers_the_scale() -> None:
    s, y = _overconfident(20000, seed=1)
    t = TemperatureCalibrator().fit(s - 0.5, y)  # remove the shift: pure over-sharpening
    assert t.temperature_ == pytest.approx(3.0, rel=0.1)


def test_platt_is_monotone_and_uses_smoothed_targets() -> None:
    # perfectly separable scores: plain maximum likelihood diverges; Platt's targets keep it
    # finite
    s = np.array([-2.0, -1.0, 1.0, 2.0])
    y = np.array([0, 0, 1, 1])
    c = PlattCalibrator().fit(s, y)
    assert math.isfinite(c.a_) and c.a_ > 0
    p = c.predict(np.array([-3.0, 0.0, 3.0]))
    assert p[0] < p[1] < p[2]
    assert p[2] < 1.0


@pytest.mark.parametrize("method", ["platt", "temperature", "isotonic"])
def test_calibrator_json_round_trip_is_exact(method: str) -> None:
    s, y = _overconfident(500, seed=2)
    cal = make_calibrator(method).fit(s, y)
    again = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    grid = np.linspace(-10, 10, 101)
    assert np.array_equal(cal.predict(grid), again.predict(grid))


def test_calibrator_errors() -> None:
    with pytest.raises(ParameterError, match="one of"):
        make_calibrator("beta")
    with pytest.raises(ConfigError, match="unknown calibration method"):
        calibrator_from_dict({"method": "magic"})
    with pytest.raises(ConfigError, match="sorted"):
        IsotonicCalibrator.from_dict({"method": "isotonic", "x": [1.0, 0.0], "y": [0.1, 0.2]})
    with pytest.raises(ParameterError, match="not fitted"):
        PlattCalibrator().predict([0.0])
    with pytest.raises(ParameterError, match="0 or 1"):
        PlattCalibrator().fit([0.0, 1.0], [0, 2])
