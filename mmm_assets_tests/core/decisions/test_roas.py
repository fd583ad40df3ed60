"""ROAS, marginal ROAS, break-even spend and response curves on one small fit, checked against the ground truth."""

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.decisions.roas import MARGINAL_STEP, channel_roas, response_curves
from mmm_assets.core.inference.compiling import quick_compile
from mmm_assets.core.modelling.posterior import mean_hdi

pytestmark = pytest.mark.slow

#: Project requirement: the truth lies inside the 94 % HDI or within 10 % of its nearest bound.
TOLERANCE = 0.10
GRID_POINTS = 21
MAX_MULTIPLE = 2.0


def _near_interval(value: float, low: float, high: float) -> bool:
    return low - TOLERANCE * abs(low) <= value <= high + TOLERANCE * abs(high)


@pytest.fixture(scope="module")
def fitted(small_fit):
    return small_fit.features, small_fit.truth, small_fit.mmm


@pytest.fixture(scope="module")
def table(fitted) -> pd.DataFrame:
    features, _, mmm = fitted
    return channel_roas(mmm, features).set_index("channel")


@pytest.fixture(scope="module")
def curves(fitted) -> pd.DataFrame:
    features, _, mmm = fitted
    return response_curves(mmm, features, grid_points=GRID_POINTS, max_multiple=MAX_MULTIPLE)


@pytest.fixture(scope="module")
def true_returns(fitted) -> pd.DataFrame:
    """True ROAS and marginal ROAS (same 1 % proportional increase) of every channel over the window."""
    features, truth, _ = fitted
    rows = {}
    for channel in truth.parameters.index:
        spend = features[channel].to_numpy()
        base = truth.channel_response(channel, spend).sum()
        more = truth.channel_response(channel, (1 + MARGINAL_STEP) * spend).sum()
        rows[channel] = {"roas": base / spend.sum(), "mroas": (more - base) / (MARGINAL_STEP * spend.sum())}
    return pd.DataFrame.from_dict(rows, orient="index")


def test_one_row_per_channel_with_consistent_totals(fitted, table):
    features, truth, _ = fitted
    assert list(table.index) == list(truth.parameters.index)
    assert np.allclose(table["spend"], features[table.index].sum())
    assert np.allclose(table["current_weekly_spend"], features[table.index].mean())
    assert np.allclose(table["roas_mean"], table["contribution_mean"] / table["spend"], rtol=1e-9)
    for metric in ("contribution", "roas", "mroas"):
        assert (table[f"{metric}_hdi_low"] <= table[f"{metric}_mean"]).all()
        assert (table[f"{metric}_mean"] <= table[f"{metric}_hdi_high"]).all()


def test_roas_is_the_library_contribution_over_spend(fitted, table):
    """The ROAS is computed from the incremental contribution instead of asking the library again: same numbers."""
    _, _, mmm = fitted
    with quick_compile():
        library = mmm.incrementality.contribution_over_spend(frequency="all_time").sel(channel=list(table.index))
    expected = mean_hdi(library, "roas_").set_index(table.index)
    pd.testing.assert_frame_equal(table[expected.columns], expected, rtol=1e-12)


def test_true_roas_within_the_interval(table, true_returns):
    comparison = pd.concat(
        [true_returns["roas"].rename("true_roas"), table[["roas_mean", "roas_hdi_low", "roas_hdi_high"]]], axis=1
    )
    print(f"\n{comparison.round(4).to_string()}")
    for channel, row in comparison.iterrows():
        assert _near_interval(row["true_roas"], row["roas_hdi_low"], row["roas_hdi_high"]), channel


def test_true_marginal_roas_within_the_interval(table, true_returns):
    for channel, row in table.iterrows():
        assert _near_interval(true_returns.loc[channel, "mroas"], row["mroas_hdi_low"], row["mroas_hdi_high"]), channel


def test_breakeven_agrees_with_marginal_roas(table):
    assert np.isfinite(table["breakeven_weekly_spend"]).all() and (table["breakeven_weekly_spend"] > 0).all()
    above = table["breakeven_weekly_spend"] > table["current_weekly_spend"]
    assert (above == (table["mroas_mean"] > 1)).all()
    assert (above == (table["headroom_pct"] > 0)).all()
    expected = 100 * (table["breakeven_weekly_spend"] / table["current_weekly_spend"] - 1)
    assert np.allclose(table["headroom_pct"], expected)


def test_curves_have_one_current_point_per_channel_on_the_grid(fitted, table, curves):
    features, _, _ = fitted
    for channel, curve in curves.groupby("channel"):
        assert len(curve) == GRID_POINTS + 1 and curve["is_current"].sum() == 1
        current = curve.loc[curve["is_current"], "weekly_spend"].item()
        assert current == pytest.approx(table.loc[channel, "current_weekly_spend"])
        assert curve["weekly_spend"].min() == 0
        assert curve["weekly_spend"].max() == pytest.approx(MAX_MULTIPLE * features[channel].max())
        assert curve["weekly_spend"].is_monotonic_increasing


def test_curves_start_at_zero_and_are_increasing_and_concave(curves):
    for channel, curve in curves.groupby("channel"):
        spend, mean = curve["weekly_spend"].to_numpy(), curve["contribution_mean"].to_numpy()
        at_zero = curve.loc[curve["weekly_spend"] == 0, ["contribution_hdi_low", "contribution_hdi_high"]]
        assert np.allclose(at_zero, 0.0) and mean[0] == pytest.approx(0.0), channel
        slopes = np.diff(mean) / np.diff(spend)
        assert (slopes > 0).all(), channel
        assert (np.diff(slopes) <= 1e-9 * slopes.max()).all(), channel
        assert (curve["contribution_hdi_low"] <= mean).all() and (mean <= curve["contribution_hdi_high"]).all()


def test_true_steady_state_response_within_the_interval_at_current_spend(fitted, curves):
    _, truth, _ = fitted
    for _, row in curves[curves["is_current"]].iterrows():
        true = truth.steady_response(row["channel"], np.array([row["weekly_spend"]])).item()
        assert _near_interval(true, row["contribution_hdi_low"], row["contribution_hdi_high"]), row["channel"]


def test_curves_match_the_library_saturation_curve(fitted, curves):
    """On the grid, spend / max spend is the library's scaled x (the model max-scales each channel's spend)."""
    _, _, mmm = fitted
    library = mmm.sample_saturation_curve(
        max_value=MAX_MULTIPLE, num_points=GRID_POINTS, num_samples=None, original_scale=True
    ).mean(("chain", "draw"))
    grid = curves[~curves["is_current"]]
    for channel, curve in grid.groupby("channel"):
        expected = library.sel(channel=channel).to_numpy()
        assert np.allclose(curve["contribution_mean"], expected, rtol=1e-9, atol=1e-6), channel


def test_rejects_features_the_model_was_not_fitted_on(fitted):
    features, truth, mmm = fitted
    changed = features.assign(**{truth.parameters.index[0]: features[truth.parameters.index[0]] * 2})
    with pytest.raises(ValueError, match="not the weekly spend the model was fitted on"):
        channel_roas(mmm, changed)
