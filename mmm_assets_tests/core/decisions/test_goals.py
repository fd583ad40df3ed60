"""Goal-seeking plans on one small fit, each checked against the generator's true response, not only the model."""

import pytest
import yaml

from mmm_assets.core.config import BudgetSettings, ConfigError, Goal, KpiConfig, PlannerSettings, parse_config
from mmm_assets.core.config.paths import DEFAULT_CONFIG
from mmm_assets.core.decisions.budget import BOUND_SLACK, Planner, true_incremental_response
from mmm_assets.core.decisions.goals import GOAL_COLUMNS, _Curve, goal_summary, goal_table, plan_goals

pytestmark = pytest.mark.slow

GOALS = [
    Goal(kind="same_response_least_spend"),
    Goal(kind="target_mroas"),
    Goal(kind="target_roas", value=3.0),
    Goal(kind="target_kpi", value=600_000.0, name="600k more revenue"),
    Goal(kind="target_kpi", value=1e9, name="out of reach"),
    Goal(kind="target_roas", value=50.0, name="roas 50"),
]


@pytest.fixture(scope="module")
def plans(small_fit):
    lines: list[str] = []
    found = plan_goals(small_fit.mmm, small_fit.features, BudgetSettings(), PlannerSettings(goals=GOALS),
                       truth=small_fit.truth, report=lines.append)
    return {plan.goal.label: plan for plan in found}, lines


def _true(small_fit, plan) -> float:
    spend = plan.result.allocation.set_index("channel")["optimized_spend"]
    return true_incremental_response(small_fit.truth, small_fit.features, spend.to_dict(), plan.result.horizon_weeks)


def test_each_goal_is_met_by_its_plan_under_the_model_and_under_the_truth(small_fit, plans):
    found, lines = plans
    assert len(lines) == len(GOALS) and all(line.startswith("goal ") for line in lines)
    current = small_fit.features[small_fit.mmm.channel_columns].tail(4).sum().sum()
    for label in ("same_response_least_spend", "target_mroas", "target_roas 3", "600k more revenue"):
        plan = found[label]
        result = plan.result
        assert plan.reached, plan.note
        # the plan holds its own total and the bounds
        spend = result.allocation["optimized_spend"]
        assert spend.sum() == pytest.approx(result.total_budget, rel=1e-3)
        assert (spend >= result.allocation["lower_bound"] - BOUND_SLACK * result.total_budget).all()
        # the truth's response of the plan lies in the model's 94 % HDI
        truth = result.true_optimized_response
        assert truth == pytest.approx(_true(small_fit, plan))
        assert result.optimized_response.hdi_low <= truth <= result.optimized_response.hdi_high, label
    # today's response for less money: the same expected response, met under the truth within the HDI
    least = found["same_response_least_spend"]
    assert least.result.total_budget < current
    assert least.result.optimized_response.mean == pytest.approx(least.target, rel=2e-3)
    # a target return of 3: the plan returns 3 under the model; its true return is inside the return's HDI
    roas = found["target_roas 3"]
    assert roas.roas.mean == pytest.approx(3.0, rel=2e-3)
    assert roas.roas.hdi_low <= roas.result.true_optimized_response / roas.result.total_budget <= roas.roas.hdi_high
    # marginal return 1 (revenue's breakeven): spend beyond today's, at a lower average return
    marginal = found["target_mroas"]
    assert marginal.target == 1.0 and marginal.mroas == pytest.approx(1.0, abs=0.02)
    assert marginal.result.total_budget > current and marginal.roas.mean > 1.0
    # a KPI target: the expected response reaches it, with a probability near one half at the least spend
    kpi = found["600k more revenue"]
    assert kpi.result.optimized_response.mean == pytest.approx(600_000.0, rel=2e-3)
    assert 0.2 <= kpi.probability <= 0.8


def test_an_unreachable_goal_gives_the_closest_plan_and_says_why(plans):
    found, _ = plans
    far = found["out of reach"]
    assert not far.reached and far.note.startswith("unreachable") and "max_total_multiple" in far.note
    assert far.result.total_budget == pytest.approx(3.0 * found["same_response_least_spend"].result.allocation[
        "current_spend"].sum())
    assert far.probability == 0.0
    steep = found["roas 50"]
    assert not steep.reached and "smallest total searched" in steep.note


def test_the_goal_table_has_one_row_per_goal_and_channel(small_fit, plans):
    found, _ = plans
    table = goal_table(list(found.values()))
    assert list(table.columns) == list(GOAL_COLUMNS)
    assert len(table) == len(GOALS) * len(small_fit.cfg.channels)
    summary = goal_summary(table)
    assert list(summary["goal"]) == [g.label for g in GOALS]
    assert summary["reached"].tolist() == [True, True, True, True, False, False]
    empty = goal_table([])
    assert empty.empty and dict(empty.dtypes.astype(str)) == GOAL_COLUMNS


def test_a_return_goal_without_a_breakeven_asks_for_its_value(small_fit):
    conversions = KpiConfig(type="conversions", name="sign-ups")
    with pytest.raises(ValueError, match="has no value and the KPI 'sign-ups' has no breakeven"):
        plan_goals(small_fit.mmm, small_fit.features, BudgetSettings(),
                   PlannerSettings(goals=[Goal(kind="target_mroas")]), conversions)


def test_goal_settings_are_validated_with_clear_messages():
    assert [g.label for g in PlannerSettings().goals] == ["same_response_least_spend", "target_mroas"]
    base = yaml.safe_load(DEFAULT_CONFIG.read_text())
    cases = {
        "kpi without value": ([{"kind": "target_kpi"}], "target_kpi needs value"),
        "value on least spend": ([{"kind": "same_response_least_spend", "value": 3}], "takes no value"),
        "unknown kind": ([{"kind": "target_cpa", "value": 3}], "decisions.planner.goals.0.kind"),
        "twice": ([{"kind": "target_roas", "value": 2}, {"kind": "target_roas", "value": 2}], "appear more than once"),
        "negative": ([{"kind": "target_roas", "value": -1}], "greater than 0"),
    }
    for goals, message in cases.values():
        with pytest.raises(ConfigError, match="is not a valid scenario configuration") as err:
            parse_config({**base, "decisions": {"planner": {"goals": goals}}}, source="planner.yaml")
        assert message in str(err.value)
    relative = parse_config({**base, "decisions": {"planner": {"plans_dir": "plans"}}}, root=DEFAULT_CONFIG.parent)
    assert relative.decisions.planner.plans_dir == DEFAULT_CONFIG.parent.resolve() / "plans"


def test_the_marginal_return_along_the_plan_is_the_reoptimised_one_without_optimising(small_fit):
    settings = BudgetSettings()
    planner = Planner.build(small_fit.mmm, small_fit.features, settings)
    curve = _Curve(planner, settings, PlannerSettings().marginal_step)
    for multiple in (0.5, 1.0, 2.0):
        total = multiple * planner.current.sum()
        curve.plan(total)
        solved = len(planner.allocations)
        envelope = curve.mroas(total)
        assert len(planner.allocations) == solved  # two responses along the plan, no optimisation
        assert envelope == pytest.approx(curve.reoptimised_mroas(total), rel=0.005), multiple
        assert len(planner.allocations) == solved + 2
