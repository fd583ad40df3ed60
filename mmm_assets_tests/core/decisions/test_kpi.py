"""KPI types: CPA and marginal CPA from the returns, breakeven at the value of a conversion, value of a plan.

The first tests need no model; the ``slow`` ones run a conversions KPI through the decision functions on the
session's small fit (its target read as conversions).
"""

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.config import KpiConfig
from mmm_assets.core.decisions.advice import recommendations
from mmm_assets.core.decisions.budget import BudgetResult, Interval
from mmm_assets.core.decisions.kpi import KpiTerms, reciprocal_interval, value_of, with_costs, with_value
from mmm_assets.core.decisions.roas import channel_roas
from mmm_assets.core.inference.compiling import quick_compile
from mmm_assets.core.modelling.posterior import HDI_PROB

CONVERSIONS = KpiConfig(type="conversions", name="sign-ups")


def test_terms_follow_the_config_and_default_to_revenue():
    assert KpiTerms.of(None) == KpiTerms() and KpiTerms().breakeven_return == 1.0 and not KpiTerms().conversions
    valued = KpiTerms.of(KpiConfig(type="conversions", name="sign-ups", value_per_unit=40.0))
    assert valued.conversions and valued.label == "sign-ups" and valued.breakeven_return == 1 / 40
    assert valued.breakeven_cost == 40.0 and "breakeven at a marginal CPA of 40" in valued.describe()
    unvalued = KpiTerms.of(CONVERSIONS)
    assert unvalued.breakeven_return is None and unvalued.breakeven_cost is None
    assert "no breakeven" in unvalued.describe()
    assert KpiTerms.of(KpiConfig(name="sales")).label == "sales" and KpiTerms.of(KpiConfig()).breakeven_cost is None
    assert hash(valued) != hash(unvalued)  # plots are remembered by their arguments


def test_the_cost_interval_is_the_returns_hdi_through_one_over_x_and_undefined_where_the_return_can_be_zero():
    returns = pd.DataFrame({"mean": [0.5, 0.2, -0.1, 0.04], "low": [0.25, -0.05, -0.3, 0.0],
                            "high": [1.0, 0.6, -0.01, 0.1]})
    costs = reciprocal_interval(returns["mean"], returns["low"], returns["high"])
    assert costs.iloc[0].tolist() == [2.0, 1.0, 4.0]
    assert costs.iloc[1, 0] == pytest.approx(5.0) and costs.iloc[1, 1] == pytest.approx(1 / 0.6)
    assert np.isnan(costs.iloc[1, 2])  # the return can be negative: no upper bound
    assert costs.iloc[2].isna().all()  # never positive: no CPA at all
    assert costs.iloc[3, 0] == pytest.approx(25.0) and np.isnan(costs.iloc[3, 2])  # reaches 0: unbounded


def test_with_costs_adds_cpa_columns_for_conversions_only():
    roas = pd.DataFrame({"channel": ["tv"], "spend": [100.0], "contribution_mean": [50.0],
                         **{f"{p}_{s}": [v] for p, vals in (("roas", (0.5, 0.25, 1.0)), ("mroas", (0.2, 0.1, 0.4)))
                            for s, v in zip(("mean", "hdi_low", "hdi_high"), vals, strict=True)},
                         "breakeven_weekly_spend": [1.0]})
    assert with_costs(roas, KpiTerms()) is roas
    table = with_costs(roas, KpiTerms.of(CONVERSIONS))
    assert list(table.columns) == [
        "channel", "spend", "contribution_mean", "roas_mean", "roas_hdi_low", "roas_hdi_high", "cpa_mean",
        "cpa_hdi_low", "cpa_hdi_high", "mroas_mean", "mroas_hdi_low", "mroas_hdi_high", "mcpa_mean", "mcpa_hdi_low",
        "mcpa_hdi_high", "breakeven_weekly_spend"]
    assert table.loc[0, "cpa_mean"] == 2.0 == table.loc[0, "spend"] / table.loc[0, "contribution_mean"]
    assert table.loc[0, ["mcpa_mean", "mcpa_hdi_low", "mcpa_hdi_high"]].tolist() == [5.0, 2.5, 10.0]


def test_budget_values_are_conversions_times_their_value_and_only_when_it_is_known():
    levels = pd.DataFrame({"level": [0.5, 1.0], "total_budget": [1.2, 2.4], "expected_response_mean": [10.0, 15.0],
                           "expected_response_hdi_low": [8.0, 12.0], "expected_response_hdi_high": [12.0, 18.0],
                           "method": ["SLSQP", "SLSQP"]})
    valued = KpiTerms.of(KpiConfig(type="conversions", value_per_unit=0.5))
    table = with_value(levels, valued)
    assert table.columns[5:8].tolist() == ["expected_value_mean", "expected_value_hdi_low", "expected_value_hdi_high"]
    assert table["expected_value_mean"].tolist() == [5.0, 7.5] and table["expected_value_hdi_high"].tolist() == [6, 9]
    assert with_value(levels, KpiTerms.of(CONVERSIONS)) is levels and with_value(levels, KpiTerms()) is levels
    assert value_of(Interval(10.0, 8.0, 12.0), valued) == Interval(5.0, 4.0, 6.0)
    assert value_of(Interval(10.0, 8.0, 12.0), KpiTerms()) is None


# ----- on the small fit, its target read as conversions -----


@pytest.fixture(scope="module")
def unvalued(small_fit) -> pd.DataFrame:
    return channel_roas(small_fit.mmm, small_fit.features, CONVERSIONS).set_index("channel")


@pytest.fixture(scope="module")
def value_per_unit(unvalued) -> float:
    """A value per conversion whose breakeven lies between the channels' marginal returns: some pay, some not."""
    marginal = unvalued["mroas_mean"]
    return float(2.0 / (marginal.min() + marginal.max()))


@pytest.fixture(scope="module")
def valued(small_fit, value_per_unit) -> pd.DataFrame:
    kpi = KpiConfig(type="conversions", name="sign-ups", value_per_unit=value_per_unit)
    return channel_roas(small_fit.mmm, small_fit.features, kpi).set_index("channel")


@pytest.mark.slow
def test_cpa_is_spend_over_incremental_conversions_and_its_interval_holds_the_hdi_share_of_the_draws(
    small_fit, unvalued
):
    table = unvalued
    assert np.allclose(table["cpa_mean"], table["spend"] / table["contribution_mean"], rtol=1e-9)
    assert np.allclose(table["cpa_hdi_low"], 1 / table["roas_hdi_high"]) and (table["roas_hdi_low"] > 0).all()
    assert np.allclose(table["cpa_hdi_high"], 1 / table["roas_hdi_low"])
    assert np.allclose(table["mcpa_mean"], 1 / table["mroas_mean"])
    for cost in ("cpa", "mcpa"):
        assert (table[f"{cost}_hdi_low"] <= table[f"{cost}_mean"]).all()
        assert (table[f"{cost}_mean"] <= table[f"{cost}_hdi_high"]).all()
    with quick_compile():  # PyMC-Marketing's own CPA draws (spend / incremental contribution, per draw)
        draws = small_fit.mmm.incrementality.spend_over_contribution(frequency="all_time")
    for channel, row in table.iterrows():
        samples = draws.sel(channel=channel).to_numpy().ravel()
        inside = ((samples >= row["cpa_hdi_low"] * (1 - 1e-9)) & (samples <= row["cpa_hdi_high"] * (1 + 1e-9))).mean()
        assert inside == pytest.approx(HDI_PROB, abs=0.01), channel


@pytest.mark.slow
def test_breakeven_is_where_the_marginal_cpa_reaches_the_value_of_a_conversion(unvalued, valued, value_per_unit):
    assert unvalued["breakeven_weekly_spend"].isna().all() and unvalued["headroom_pct"].isna().all()
    pays = valued["mcpa_mean"] < value_per_unit
    assert pays.any() and not pays.all()
    above = valued["breakeven_weekly_spend"] > valued["current_weekly_spend"]
    assert (above == pays).all() and (above == (valued["mroas_mean"] > 1 / value_per_unit)).all()
    assert (above == (valued["headroom_pct"] > 0)).all()
    pd.testing.assert_frame_equal(valued[["roas_mean", "mroas_mean", "cpa_mean"]],
                                  unvalued[["roas_mean", "mroas_mean", "cpa_mean"]])


def _budget(channels: list[str], change_pct: list[float]) -> BudgetResult:
    current = np.full(len(channels), 1.024)
    new = current * (1 + np.array(change_pct) / 100)
    allocation = pd.DataFrame({"channel": channels, "current_spend": current, "optimized_spend": new,
                               "lower_bound": current / 2, "upper_bound": current * 2, "change_pct": change_pct})
    return BudgetResult(
        start_date=pd.Timestamp("2021-01-04"), end_date=pd.Timestamp("2021-01-25"), horizon_weeks=4,
        total_budget=float(new.sum()), utility="mean", allocation=allocation, optimized_response=Interval(3, 2, 4),
        current_response=Interval(2, 1, 3), uplift=Interval(1, 0.5, 1.5), uplift_pct=50.0, method="SLSQP",
        fallback_used=False, fallback_reason=None, wall_seconds=0.1,
    )


@pytest.mark.slow
def test_advice_reads_marginal_cpa_against_the_value_of_a_conversion(valued, value_per_unit):
    table = valued.reset_index()
    kpi = KpiConfig(type="conversions", name="sign-ups", value_per_unit=value_per_unit)
    advice = recommendations(_budget(list(table["channel"]), [20.0, -20.0, 0.0]), table, kpi=kpi).set_index("channel")
    for channel, row in valued.iterrows():
        reason = advice.loc[channel, "reason"]
        assert "ROAS" not in reason and "Marginal CPA" in reason and "the value of a conversion" in reason
        low, high = row["mroas_hdi_low"], row["mroas_hdi_high"]
        if low <= 1 / value_per_unit <= high:
            assert "straddles" in reason, channel
        elif row["mcpa_mean"] < value_per_unit:
            assert "costs less than it is worth" in reason, channel
        else:
            assert "costs more than it is worth" in reason, channel
    assert np.allclose(advice["mcpa_mean"], valued["mcpa_mean"])


@pytest.mark.slow
def test_without_a_value_the_advice_ranks_channels_by_marginal_cpa_and_says_no_breakeven_is_known(unvalued):
    table = unvalued.reset_index()
    advice = recommendations(_budget(list(table["channel"]), [20.0, -20.0, 0.0]), table, kpi=CONVERSIONS)
    assert advice["reason"].str.contains("no breakeven is known").all()
    expected = unvalued["mcpa_mean"].rank(method="min").to_numpy()
    assert advice["mcpa_rank"].tolist() == expected.tolist() and sorted(expected) == [1, 2, 3]
    cheapest = unvalued["mcpa_mean"].idxmin()
    assert "ranks 1 of 3 by marginal CPA" in advice.set_index("channel").loc[cheapest, "reason"]
    assert "breakeven" not in recommendations(_budget(list(table["channel"]), [0, 0, 0]), kpi=CONVERSIONS)[
        "reason"].str.cat()
