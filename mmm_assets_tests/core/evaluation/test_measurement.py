"""Which channels' ROAS the data measured: the table, metrics and message on hand-made prior and posterior draws,
the WARN check that reads them from a validation report, and the optional gate on the spend left at the prior."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from dagster import AssetCheckSeverity, build_asset_check_context

from mmm_assets.core.evaluation.measurement import (
    AT_PRIOR,
    MEASURED,
    NO_SPEND,
    channel_measurement,
    measurement_message,
    measurement_metrics,
    with_basis,
)
from mmm_assets.core.evaluation.validation import with_measurement
from mmm_assets.core.records import PriorChecks, ValidationReport
from mmm_assets.defs.prior_checks import channels_measured

RNG = np.random.default_rng(11)
CHANNELS = ["tv", "search", "radio", "email", "print"]


def draws(columns: list[np.ndarray], chains: int = 1) -> xr.DataArray:
    values = np.stack(columns, axis=-1).reshape(chains, -1, len(columns))
    return xr.DataArray(values, dims=("chain", "draw", "channel"), coords={"channel": CHANNELS[:len(columns)]})


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """tv: measured (posterior 1/10 of the prior's width); search and radio: at their prior, their posteriors a
    pair that trades off one against the other; email: owned, measured; print: never bought."""
    n = 4000
    prior = draws([RNG.lognormal(0, 0.5, n) for _ in CHANNELS])
    shared = RNG.normal(0, 1, n)  # search and radio: each as wide as its prior, their sum far narrower
    posterior = draws([RNG.normal(1.5, 0.03, n), np.exp(0.5 * shared), np.exp(-0.5 * shared),
                       RNG.normal(0.8, 0.02, n), RNG.lognormal(0, 0.5, n)])
    spend = pd.Series({"tv": 600.0, "search": 300.0, "radio": 100.0, "email": 50.0, "print": 0.0})
    return channel_measurement(prior, posterior, spend, paid=["tv", "search", "radio", "print"])


def test_the_table_tells_measured_channels_from_those_at_their_prior(table):
    rows = table.set_index("channel")
    assert rows.loc["tv", "verdict"] == MEASURED and rows.loc["tv", "contraction"] > 0.99
    assert rows.loc["email", "verdict"] == MEASURED
    assert rows.loc["search", "verdict"] == AT_PRIOR and rows.loc["search", "contraction"] < 0.5
    assert rows.loc["radio", "verdict"] == AT_PRIOR
    assert rows.loc["print", "verdict"] == NO_SPEND
    assert rows.loc["tv", "spend_share"] == pytest.approx(0.6) and np.isnan(rows.loc["email", "spend_share"])
    assert rows.loc["tv", "hdi_low"] < 1.5 < rows.loc["tv", "hdi_high"] < rows.loc["tv", "prior_high"]
    assert rows.loc["search", "most_anticorrelated"] == "radio" and rows.loc["search", "correlation"] < -0.5


def test_metrics_count_channels_and_the_spend_left_at_the_prior(table):
    assert measurement_metrics(table) == {"channels_measured": 2.0, "channels_at_prior": 2.0,
                                          "unmeasured_spend_share": pytest.approx(0.4)}


def test_the_message_names_the_channels_at_their_prior_largest_spend_first_and_what_would_measure_them(table):
    message = measurement_message(table)
    assert "measured the ROAS of tv (60%), email" in message
    assert "2 channel(s) is still essentially its prior (40% of the paid spend): search (30%), radio (10%)" in message
    assert "lift test" in message and "model.roi_priors" in message
    measured_only = table[table["channel"].isin(["tv", "email"])]
    assert "still" not in measurement_message(measured_only)


def _report(measurement: pd.DataFrame | None) -> ValidationReport:
    return ValidationReport(metrics={}, gates=[], measurement=measurement)


def test_the_check_warns_naming_the_channels_at_their_prior(table):
    result = channels_measured(build_asset_check_context(), _report(table))
    assert result.check_name == PriorChecks.MEASURED_CHECK and not result.passed
    assert result.severity == AssetCheckSeverity.WARN
    assert result.metadata["flagged"].text == "search, radio"
    assert result.metadata["value"].value == pytest.approx(0.4)
    passed = channels_measured(build_asset_check_context(), _report(table[table["verdict"] == MEASURED]))
    assert passed.passed
    unmeasured = channels_measured(build_asset_check_context(), _report(None))
    assert unmeasured.passed and "not measured" in unmeasured.metadata["note"].text


def test_the_unmeasured_spend_gate_holds_only_when_a_threshold_is_set(small_config, table):
    report = ValidationReport(metrics={"max_rhat": 1.0}, gates=[])
    default = with_measurement(small_config(), report, table)
    assert default.metrics["unmeasured_spend_share"] == pytest.approx(0.4) and default.failed_gates() == []
    assert default.measurement is table
    gate = next(g for g in default.gates if g["gate"] == "unmeasured_spend")
    assert gate["threshold"] is None and gate["value"] == pytest.approx(0.4)
    strict = small_config({"validation": {"thresholds": {"unmeasured_spend_share_max": 0.3}}})
    assert with_measurement(strict, report, table).failed_gates() == ["unmeasured_spend"]
    loose = small_config({"validation": {"thresholds": {"unmeasured_spend_share_max": 0.5}}})
    assert with_measurement(loose, report, table).failed_gates() == []
    assert with_measurement(strict, report, None).failed_gates() == []  # nothing measured, nothing gated


def test_the_roas_table_gets_what_each_roas_rests_on(table):
    roas = pd.DataFrame({"channel": ["radio", "tv"], "roas_mean": [1.0, 1.5]})
    based = with_basis(roas, table)
    assert list(based["roas_basis"]) == [AT_PRIOR, MEASURED] and based["roas_contraction"].iloc[1] > 0.99
    assert with_basis(roas, None) is roas  # nothing measured, nothing said
