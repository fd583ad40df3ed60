"""The advice's words without a model: amounts by magnitude, marginal ROAS or CPA against the KPI's breakeven."""

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.config import KpiConfig
from mmm_assets.core.decisions.advice import recommendations
from mmm_assets.core.decisions.budget import BudgetResult, Interval


def _budget(current: list[float], new: list[float]) -> BudgetResult:
    current_, new_ = np.array(current), np.array(new)
    allocation = pd.DataFrame({"channel": ["tv", "search", "social"][: len(current)], "current_spend": current_,
                               "optimized_spend": new_, "lower_bound": current_ / 2, "upper_bound": current_ * 2,
                               "change_pct": 100 * (new_ - current_) / current_})
    return BudgetResult(
        start_date=pd.Timestamp("2024-01-01"), end_date=pd.Timestamp("2024-01-22"), horizon_weeks=4,
        total_budget=float(new_.sum()), utility="mean", allocation=allocation, optimized_response=Interval(3, 2, 4),
        current_response=Interval(2, 1, 3), uplift=Interval(1, 0.5, 1.5), uplift_pct=50.0, method="SLSQP",
        fallback_used=False, fallback_reason=None, wall_seconds=0.1,
    )


def _marginal(mean: list[float], low: list[float], high: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"channel": ["tv", "search", "social"][: len(mean)], "mroas_mean": mean,
                         "mroas_hdi_low": low, "mroas_hdi_high": high})


@pytest.mark.parametrize(
    ("current", "new", "text"),
    [
        ([1.024], [1.443], "from 1.02 to 1.44 over the next 4 weeks (+40.9 %)"),  # spend in thousands
        ([0.0874], [0.0612], "from 0.0874 to 0.0612 over the next 4 weeks (-30.0 %)"),  # in millions
        ([48_750.0], [68_737.5], "from 48,800 to 68,700 over the next 4 weeks (+41.0 %)"),
        ([2_345_678.0], [1_642_000.0], "from 2.35M to 1.64M over the next 4 weeks (-30.0 %)"),
    ],
)
def test_amounts_are_written_by_magnitude_not_rounded_to_integers(current, new, text):
    """The advice once read "from 1 to 1 (+40.9 %)" for spend kept in thousands."""
    reason = recommendations(_budget(current, new))["reason"].item()
    assert text in reason


def test_revenue_breakeven_is_a_marginal_roas_of_one_with_or_without_the_kpi_section():
    budget, table = _budget([1.0, 1.0, 1.0], [1.2, 0.8, 1.0]), _marginal([1.6, 0.6, 1.1], [1.3, 0.4, 0.8],
                                                                          [1.9, 0.8, 1.4])
    plain = recommendations(budget, table)
    pd.testing.assert_frame_equal(plain, recommendations(budget, table, kpi=KpiConfig()))
    reasons = plain.set_index("channel")["reason"]
    assert "Marginal ROAS 1.6 (94 % HDI 1.3 to 1.9) is above breakeven (1.0)" in reasons["tv"]
    assert "below breakeven (1.0)" in reasons["search"] and "straddles breakeven (1.0)" in reasons["social"]
    assert list(plain.columns) == ["channel", "action", "change_pct", "current_spend", "optimized_spend", "reason"]


def test_conversions_of_known_value_break_even_where_the_marginal_cpa_equals_that_value():
    """Value 40 per conversion: breakeven at a marginal return of 1/40 = 0.025 conversions per unit of spend."""
    table = _marginal([0.05, 0.02, 0.025], [0.04, 0.015, 0.02], [0.0625, 0.024, 0.03])
    kpi = KpiConfig(type="conversions", name="sign-ups", value_per_unit=40.0)
    advice = recommendations(_budget([1.0, 1.0, 1.0], [1.2, 0.8, 1.0]), table, kpi=kpi).set_index("channel")
    assert ("Marginal CPA 20 (94 % HDI 16 to 25) is below the value of a conversion (40): the next conversion costs "
            "less than it is worth.") in advice.loc["tv", "reason"]
    assert "Marginal CPA 50 (94 % HDI 41.7 to 66.7) is above the value of a conversion (40)" in \
        advice.loc["search", "reason"]
    assert "straddles the value of a conversion (40)" in advice.loc["social", "reason"]
    assert advice["mcpa_mean"].tolist() == [20.0, 50.0, 40.0] and advice["mcpa_rank"].tolist() == [1, 3, 2]


def test_a_marginal_return_that_can_be_zero_has_no_upper_cpa_and_one_never_positive_has_no_cpa():
    table = _marginal([0.01, -0.002], [-0.001, -0.004], [0.02, -0.0005])
    advice = recommendations(_budget([1.0, 1.0], [1.0, 1.0]), table, kpi=KpiConfig(type="conversions"))
    first, second = advice["reason"]
    assert "Marginal CPA 100 (94 % HDI from 50, no upper bound: the marginal return may be zero)" in first
    assert "ranks 1 of 2 by marginal CPA" in first
    assert "Marginal CPA undefined: the next unit of spend may bring no conversions" in second
    assert "is not ranked" in second and np.isnan(advice["mcpa_rank"].iloc[1])


@pytest.mark.parametrize("kpi", [None, KpiConfig(type="conversions", name="sign-ups", value_per_unit=40.0)])
def test_advice_on_a_channel_the_data_did_not_measure_says_it_restates_the_priors(kpi):
    table = _marginal([1.6, 0.6, 1.1], [1.3, 0.4, 0.8], [1.9, 0.8, 1.4]).assign(
        roas_basis=["measured", "at its prior", "measured"])
    reasons = recommendations(_budget([1.0, 1.0, 1.0], [1.2, 0.8, 1.0]), table, kpi=kpi).set_index("channel")["reason"]
    said = "The data did not measure this channel's ROAS (it is still its prior's), so this advice restates the priors"
    assert said in reasons["search"] and "lift test" in reasons["search"]
    assert said not in reasons["tv"] and said not in reasons["social"]
    assert not any(said in r for r in recommendations(_budget([1.0], [1.2]), table.iloc[:1], kpi=kpi)["reason"])
