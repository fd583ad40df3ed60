"""One budget across three markets: it beats the markets' own plans at the same total, under the truth too."""

from dataclasses import replace

import pytest

from mmm_assets.core.config import BudgetSettings
from mmm_assets.core.decisions.budget import BOUND_SLACK, WEEK, Planner, true_incremental_response
from mmm_assets.core.decisions.cross_market import MarketModel, allocate_across_markets

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(three_market_fits):
    fits = three_market_fits
    models = {m: MarketModel(fits.models[m], fits.features[m]) for m in fits.cfg.market_names}
    return allocate_across_markets(models, fits.cfg.decisions.budget)


def test_one_budget_beats_the_markets_own_plans_at_the_same_total_under_the_model_and_the_truth(three_market_fits,
                                                                                                result):
    fits = three_market_fits
    table = result.allocation
    assert result.method.startswith("scipy SLSQP across markets")
    assert table["joint_spend"].sum() == pytest.approx(result.total_budget, rel=1e-3)
    assert table["separate_spend"].sum() == pytest.approx(result.total_budget, rel=1e-3)
    assert result.total_budget == pytest.approx(table["current_spend"].sum())
    slack = BOUND_SLACK * result.total_budget
    assert (table["joint_spend"] >= table["lower_bound"] - slack).all()
    assert (table["joint_spend"] <= table["upper_bound"] + slack).all()
    # the model: a better expected response, the uplift's whole HDI above zero
    assert result.joint_response.mean > result.separate_response.mean
    assert result.uplift.hdi_low > 0 and result.uplift_pct > 0
    # money moved between markets, not only between channels
    markets = result.markets.set_index("market")
    assert (markets["joint_spend"] - markets["separate_spend"]).abs().max() > 0.05 * result.total_budget / 3
    # the truth agrees: the joint plan's true response is higher, and inside the model's HDI
    true = {plan: sum(
        true_incremental_response(fits.truths[m], fits.features[m],
                                  dict(zip(rows["channel"], rows[f"{plan}_spend"])), result.horizon_weeks)
        for m, rows in table.groupby("market")) for plan in ("joint", "separate")}
    assert true["joint"] > true["separate"]
    assert result.joint_response.hdi_low <= true["joint"] <= result.joint_response.hdi_high
    assert true["joint"] - true["separate"] == pytest.approx(result.uplift.mean, rel=0.1)


def test_markets_on_different_weeks_or_a_single_market_are_refused(three_market_fits, monkeypatch):
    fits = three_market_fits
    north = MarketModel(fits.models["north"], fits.features["north"])
    with pytest.raises(ValueError, match="needs at least two markets"):
        allocate_across_markets({"north": north}, BudgetSettings())
    build = Planner.build

    def south_a_week_behind(mmm, features, *args):  # as if south's data stopped a week earlier than north's
        planner = build(mmm, features, *args)
        return replace(planner, start=planner.start - WEEK) if mmm is fits.models["south"] else planner

    monkeypatch.setattr(Planner, "build", south_a_week_behind)
    south = MarketModel(fits.models["south"], fits.features["south"])
    with pytest.raises(ValueError, match=r"horizons start on different weeks \(north 2021-01-04, south 2020-12-28\)"):
        allocate_across_markets({"north": north, "south": south}, BudgetSettings())
