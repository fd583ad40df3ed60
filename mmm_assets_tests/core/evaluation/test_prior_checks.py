"""Prior checks: the prior predictive's scale against the KPI, and the prior-to-posterior table; on hand-made draws,
on the small fit, and on the small scenario's model built with a target scale in the wrong units (not fitted)."""

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from mmm_assets.core.config import DATE_COLUMN, TARGET_COLUMN
from mmm_assets.core.data.features import validate_features
from mmm_assets.core.evaluation.measurement import MEASURED
from mmm_assets.core.evaluation.prior_checks import (
    INFORMED,
    PRIOR_DOMINATED,
    informed,
    measure_channels,
    observed_kpi,
    prior_checks,
    prior_posterior_table,
    sample_prior,
    scale_check,
)
from mmm_assets.core.modelling.build import ModelScales, build_mmm, split_xy
from mmm_assets.core.records import PriorChecks, ValidationReport
from mmm_assets.core.synthetic.generator import generate

RNG = np.random.default_rng(7)


def kpi_draws(level: float, weeks: int = 10, draws: int = 200) -> tuple[xr.DataArray, pd.Series]:
    dates = pd.date_range("2024-01-01", periods=weeks, freq="W-MON", name=DATE_COLUMN)
    values = level * (1 + 0.2 * RNG.standard_normal((1, draws, weeks)))
    return (xr.DataArray(values, dims=("chain", "draw", DATE_COLUMN), coords={DATE_COLUMN: dates}),
            pd.Series(np.full(weeks, 1000.0), index=dates))


def test_scale_check_measures_orders_of_magnitude_either_way():
    near = scale_check(*kpi_draws(3000.0), max_orders=2.0)
    assert near["orders_apart"] == pytest.approx(math.log10(3), abs=0.02) and "within the 2 allowed" in near["message"]
    far_below = scale_check(*kpi_draws(0.1), max_orders=2.0)
    assert far_below["orders_apart"] == pytest.approx(4.0, abs=0.02)
    assert "4 orders of magnitude below" in far_below["message"] and "model.scaling.target" in far_below["message"]
    assert scale_check(*kpi_draws(2e6), max_orders=2.0)["orders_apart"] == pytest.approx(3.3, abs=0.02)


def test_prior_posterior_table_tells_informed_from_prior_dominated():
    prior = xr.Dataset({
        "beta": (("chain", "draw", "channel"), RNG.normal(1.0, 1.0, (1, 4000, 2))),
        "sigma": (("chain", "draw"), RNG.normal(1.0, 1.0, (1, 4000))),
    }, coords={"channel": ["tv", "search"]})
    posterior = xr.Dataset({
        "beta": (("chain", "draw", "channel"), np.stack([RNG.normal(0.3, 0.1, (2, 1000)),
                                                         RNG.normal(1.0, 1.0, (2, 1000))], axis=-1)),
        "sigma": (("chain", "draw"), RNG.normal(0.2, 0.05, (2, 1000))),
    }, coords={"channel": ["tv", "search"]})
    table = prior_posterior_table(prior, posterior).set_index(["parameter", "element"])
    assert table.loc[("beta", "tv"), "contraction"] == pytest.approx(0.99, abs=0.01)
    assert table.loc[("beta", "tv"), "verdict"] == INFORMED
    assert table.loc[("beta", "tv"), "shift_prior_sd"] == pytest.approx(-0.7, abs=0.05)
    assert abs(table.loc[("beta", "search"), "contraction"]) < 0.1
    assert table.loc[("beta", "search"), "verdict"] == PRIOR_DOMINATED
    assert table.loc[("sigma", ""), "verdict"] == INFORMED
    assert informed(table.reset_index()) == (["beta[tv]", "sigma"], ["beta[search]"])


def test_a_failed_prior_check_fails_the_validation_report():
    checks = PriorChecks(prior_level=10.0, observed_level=5e5, orders_apart=4.7, max_orders=2.0, message="",
                         band=pd.DataFrame(), prior_posterior=pd.DataFrame())
    assert not checks.passed
    report = ValidationReport(metrics={}, gates=[{"gate": "max_rhat", "passed": True}], prior_checks=checks)
    assert report.failed_gates() == [PriorChecks.CHECK]
    assert ValidationReport(metrics={}, gates=[]).failed_gates() == []


@pytest.mark.slow
def test_the_small_fit_prior_is_on_the_kpi_scale_and_its_betas_are_informed(small_fit):
    checks = prior_checks(small_fit.mmm, small_fit.cfg)
    assert checks.passed and checks.orders_apart < 1.0, checks.message
    assert checks.observed_level == pytest.approx(small_fit.features[TARGET_COLUMN].abs().mean())
    assert len(checks.band) == len(small_fit.features)
    assert (checks.band["prior_low"] <= checks.band["prior_median"]).all()
    assert (checks.band["prior_median"] <= checks.band["prior_high"]).all()
    table = checks.prior_posterior
    channels = small_fit.cfg.channels
    for name in ("saturation_beta", "saturation_lam", "adstock_alpha"):
        assert set(table.loc[table["parameter"] == name, "element"]) == set(channels)
    assert {"intercept_contribution", "y_sigma"} <= set(table["parameter"])
    betas = table[table["parameter"] == "saturation_beta"]
    assert (betas["verdict"] == INFORMED).all() and (betas["contraction"] > 0.9).all()
    measured = measure_channels(small_fit.mmm, small_fit.cfg).set_index("channel")  # 1 % noise: every ROAS pinned
    assert list(measured.index) == channels and (measured["verdict"] == MEASURED).all(), measured
    assert (measured["contraction"] > 0.9).all() and measured["spend_share"].sum() == pytest.approx(1.0)


def test_a_target_scale_in_the_wrong_units_puts_the_prior_orders_away(small_config):
    """The small scenario's model with its KPI scale fixed 10,000 times too small (a scale typed in the wrong
    units), built but not fitted: the prior predictive lands four orders below the KPI and the check fails."""
    cfg = small_config()
    frame, _ = generate(cfg.data.synthetic)
    features = validate_features(frame, cfg.channels, [], cfg.validation.min_weeks, "test")
    mmm = build_mmm(cfg, ModelScales(target=float(features[TARGET_COLUMN].max()) / 1e4))
    mmm.build_model(*split_xy(features))
    draws = sample_prior(mmm, draws=200).kpi
    check = scale_check(draws, observed_kpi(mmm), max_orders=2.0)
    assert check["orders_apart"] > 3.0 and check["prior_level"] < check["observed_level"]
    assert "more than the 2 allowed" in check["message"] and "model.scaling.target" in check["message"]
