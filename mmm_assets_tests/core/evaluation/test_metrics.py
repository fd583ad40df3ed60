import math

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.config import load_config
from mmm_assets.core.config.paths import DEFAULT_CONFIG
from mmm_assets.core.evaluation.metrics import (
    GATES,
    coverage,
    evaluate_gates,
    lag1_autocorrelation,
    mape_pct,
    mase,
    r2,
    recovery,
)

THRESHOLDS = load_config(DEFAULT_CONFIG).validation.thresholds


def test_r2_and_mape():
    actual = np.array([100.0, 200.0, 300.0])
    assert r2(actual, actual) == 1.0
    assert r2(actual, np.full(3, 200.0)) == 0.0
    assert mape_pct(actual, actual * 1.1) == pytest.approx(10.0)
    assert math.isnan(mape_pct(np.array([0.0, 1.0]), np.array([1.0, 1.0])))
    assert math.isnan(r2(np.ones(3), np.ones(3)))


def test_recovery_is_relative_for_lambda_and_absolute_for_alpha():
    estimates = pd.DataFrame(
        [
            {"channel": "tv", "parameter": "saturation_lam", "estimate": 2.2, "hdi_low": 2.1, "hdi_high": 2.3},
            {"channel": "tv", "parameter": "adstock_alpha", "estimate": 0.45, "hdi_low": 0.3, "hdi_high": 0.6},
        ]
    )
    truth = pd.DataFrame({"saturation_lam": [2.0], "adstock_alpha": [0.5]}, index=pd.Index(["tv"], name="channel"))
    table = recovery(estimates, truth).set_index("parameter")
    assert table.loc["saturation_lam", "error"] == pytest.approx(0.1)
    assert not table.loc["saturation_lam", "true_in_hdi"]
    assert table.loc["adstock_alpha", "error"] == pytest.approx(0.05)
    assert table.loc["adstock_alpha", "true_in_hdi"]


def _good() -> dict:
    return {
        "in_sample_r2": 0.99, "in_sample_mape_pct": 0.5, "holdout_r2": 0.95, "holdout_mape_pct": 1.0,
        "max_rhat": 1.003, "min_ess_bulk": 800, "min_ess_tail": 700, "divergences": 0,
        "saturation_lam_max_rel_error": 0.01, "adstock_alpha_max_abs_error": 0.01,
    }


def test_every_gate_passes_on_good_metrics():
    results = evaluate_gates(_good(), THRESHOLDS)
    assert [r.gate for r in results] == [g.name for g in GATES]
    assert all(r.passed for r in results)


@pytest.mark.parametrize(
    ("metric", "value"),
    [("in_sample_r2", 0.9), ("in_sample_mape_pct", 2.5), ("max_rhat", 1.02), ("min_ess_bulk", 399),
     ("divergences", 1), ("saturation_lam_max_rel_error", 0.06), ("adstock_alpha_max_abs_error", 0.051),
     ("holdout_mape_pct", float("nan"))],
)
def test_each_gate_fails_alone(metric, value):
    results = evaluate_gates({**_good(), metric: value}, THRESHOLDS)
    failed = [r for r in results if not r.passed]
    assert [r.metric for r in failed] == [metric]
    assert failed[0].value == value or math.isnan(failed[0].value)


def test_missing_metrics_are_not_applicable():
    metrics = _good()
    del metrics["saturation_lam_max_rel_error"], metrics["holdout_r2"]
    results = {r.metric: r for r in evaluate_gates(metrics, THRESHOLDS)}
    assert results["saturation_lam_max_rel_error"].passed and results["holdout_r2"].note == "not applicable"


def test_mase_scales_by_the_seasonal_naive_error_before_the_forecast():
    history = np.concatenate([np.arange(52.0), np.arange(52.0) + 10.0])  # last year's week + 10: naive MAE 10
    assert mase(np.array([5.0, 6.0]), np.array([0.0, 1.0]), history) == pytest.approx(0.5)
    short = np.array([1.0, 3.0, 5.0])  # under a year: last week's value, MAE 2
    assert mase(np.array([10.0]), np.array([8.0]), short) == pytest.approx(1.0)
    assert math.isnan(mase(np.array([1.0]), np.array([1.0]), np.ones(60)))  # a naive forecast without error


def test_coverage_and_residual_autocorrelation():
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    assert coverage(actual, actual - 1, actual + 1) == 1.0
    assert coverage(actual, np.array([0, 0, 4, 5]), np.array([2, 3, 5, 6])) == 0.5
    rng = np.random.default_rng(0)
    noise = rng.normal(size=2000)
    assert abs(lag1_autocorrelation(noise)) < 0.06  # independent noise: ~N(0, 1/n)
    slow = np.sin(np.arange(2000) / 20.0)  # a pattern the model missed
    assert lag1_autocorrelation(slow + 0.1 * noise) > 0.9


def test_a_gate_without_threshold_is_reported_not_gated():
    ungated = THRESHOLDS.model_copy(update={"r2_min": None})
    results = {g.gate: g for g in evaluate_gates({"in_sample_r2": 0.1}, ungated)}
    assert results["in_sample_r2"].passed and results["in_sample_r2"].threshold is None
    assert results["in_sample_r2"].value == 0.1 and results["in_sample_r2"].note == "not gated"
