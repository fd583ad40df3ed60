"""Budget optimisation on one small fit: constraints, fallback, scenarios, recommendations and the ground truth."""

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError
from pymc_marketing.mmm.budget_optimizer import BudgetOptimizer

from mmm_assets.core.config import BudgetSettings, ConfigError, parse_config
from mmm_assets.core.config.paths import DEFAULT_CONFIG
from mmm_assets.core.decisions import budget
from mmm_assets.core.decisions.advice import recommendations
from mmm_assets.core.decisions.budget import (
    BOUND_SLACK,
    DEFAULT_ATTEMPTS,
    Attempt,
    BudgetResult,
    budget_scenarios,
    optimize_budget,
)

pytestmark = pytest.mark.slow

#: A first attempt that cannot converge (one SLSQP iteration) and one that raises (no such scipy method).
NOT_CONVERGING = Attempt("SLSQP (1 iteration)", {"options": {"maxiter": 1}})
RAISING = Attempt("no-such-solver", {"method": "no-such-solver"})


@pytest.fixture(scope="module")
def fitted(small_fit):
    return small_fit.features, small_fit.truth, small_fit.mmm


@pytest.fixture(scope="module")
def default_result(fitted) -> BudgetResult:
    features, truth, mmm = fitted
    return optimize_budget(mmm, features, BudgetSettings(), truth)


def _assert_feasible(allocation: pd.DataFrame, total: float, tolerance: float = 1e-3) -> None:
    spend = allocation["optimized_spend"]
    assert abs(spend.sum() - total) <= tolerance * total
    slack = BOUND_SLACK * total
    assert (spend >= allocation["lower_bound"] - slack).all()
    assert (spend <= allocation["upper_bound"] + slack).all()


def _true_horizon_response(truth, features: pd.DataFrame, totals: pd.Series, weeks: int) -> float:
    """True contribution over the horizon's weeks of each channel's total spread evenly, after the data's spend."""
    return sum(
        truth.channel_response(channel, np.full(weeks, total / weeks), history=features[channel].to_numpy()).sum()
        for channel, total in totals.items()
    )


def test_optimised_allocation_is_no_worse_than_current_under_the_true_response(fitted, default_result):
    features, truth, _ = fitted
    table = default_result.allocation.set_index("channel")
    weeks = default_result.horizon_weeks
    optimised = _true_horizon_response(truth, features, table["optimized_spend"], weeks)
    current = _true_horizon_response(truth, features, table["current_spend"], weeks)
    assert optimised >= current
    # The same holds with the horizon's carry-over counted, as the optimiser counts it.
    assert default_result.true_optimized_response >= default_result.true_current_response
    # The model agrees on the direction: its expected uplift is not negative.
    assert default_result.uplift.mean >= 0.0


def test_default_plan_spends_the_current_budget_within_relative_bounds(fitted, default_result):
    features, _, mmm = fitted
    table = default_result.allocation
    assert list(table.columns) == [
        "channel", "current_spend", "optimized_spend", "lower_bound", "upper_bound", "change_pct"
    ]
    current = features[mmm.channel_columns].tail(4).sum()
    assert table.set_index("channel")["current_spend"].to_dict() == pytest.approx(current.to_dict())
    assert default_result.total_budget == pytest.approx(current.sum())
    assert table["lower_bound"].to_numpy() == pytest.approx(0.5 * current.to_numpy())
    assert table["upper_bound"].to_numpy() == pytest.approx(1.5 * current.to_numpy())
    _assert_feasible(table, default_result.total_budget)
    assert default_result.start_date == features["date"].max() + pd.Timedelta(days=7)
    assert default_result.method == "pymc-marketing BudgetOptimizer with scipy SLSQP"
    assert not default_result.fallback_used and default_result.fallback_reason is None
    for interval in (default_result.optimized_response, default_result.current_response, default_result.uplift):
        assert interval.hdi_low <= interval.mean <= interval.hdi_high
    uplift_pct = 100 * default_result.uplift.mean / default_result.current_response.mean
    assert default_result.uplift_pct == pytest.approx(uplift_pct)


@pytest.mark.parametrize("utility", ["var", "cvar", "sharpe"])
def test_risk_utilities_hold_budget_and_bounds(fitted, utility):
    features, _, mmm = fitted
    result = optimize_budget(mmm, features, BudgetSettings(utility=utility, risk_level=0.9))
    assert result.utility == utility and not result.fallback_used
    _assert_feasible(result.allocation, result.total_budget)


def test_scenarios_hold_budget_and_bounds_at_every_level(fitted, default_result):
    features, _, mmm = fitted
    levels = [0.5, 1.0, 1.5]
    table = budget_scenarios(mmm, features, BudgetSettings(scenario_levels=levels))
    assert list(table.columns[:3]) == ["level", "total_budget", "channel"]
    assert table.groupby("level").size().to_dict() == dict.fromkeys(levels, 3)
    for level, rows in table.groupby("level"):
        assert rows["total_budget"].iloc[0] == pytest.approx(level * default_result.total_budget)
        _assert_feasible(rows, rows["total_budget"].iloc[0])
    response = table.groupby("level")["expected_response_mean"].first()
    assert response.is_monotonic_increasing
    assert response[1.0] == pytest.approx(default_result.optimized_response.mean, rel=1e-3)
    # Diminishing returns: the last half budget adds less than the first.
    assert response[1.5] - response[1.0] < response[0.5]


def test_the_budget_and_the_scenarios_of_a_model_share_one_compiled_optimiser_and_its_answers(fitted, monkeypatch):
    from mmm_assets.core.decisions import budget

    features, _, mmm = fitted
    monkeypatch.setattr(budget, "_OPTIMIZERS", {})
    built = []
    real = type(mmm).budget_optimizer
    monkeypatch.setattr(type(mmm), "budget_optimizer", lambda self, *a, **k: built.append(1) or real(self, *a, **k))
    table = budget_scenarios(mmm, features, BudgetSettings(scenario_levels=[1.0]))
    searches = []
    real_allocate = BudgetOptimizer.allocate_budget
    monkeypatch.setattr(BudgetOptimizer, "allocate_budget", lambda *a, **k: searches.append(1) or real_allocate(*a, **k))
    result = optimize_budget(mmm, features, BudgetSettings())
    assert len(built) == 1
    # ... and the budget is the scenarios' 1.0 level, found once
    assert not searches
    assert result.allocation["optimized_spend"].tolist() == table["optimized_spend"].tolist()
    optimize_budget(mmm, features, BudgetSettings(relative_bound=0.3))  # other bounds: searched anew
    assert searches
    optimize_budget(mmm, features, BudgetSettings(utility="cvar"))  # another utility is another optimiser
    assert len(built) == 2


def test_the_optimiser_compiles_in_its_mode_and_agrees_with_pytensors_default(fitted, monkeypatch):
    """Building the optimiser compiles nothing with numba (which took ~6 s on an empty cache, again after every fit):
    its helpers in QUICK_MODE, its objective in RUN_MODE; the objective and gradient must be those of PyTensor's
    default (numba) compile of the graph."""
    from pytensor.compile.maker import FunctionMaker

    from mmm_assets.core.inference.compiling import RUN_MODE

    features, _, mmm = fitted
    settings = BudgetSettings()
    planner = budget.Planner.build(mmm, features, settings)
    monkeypatch.setattr(budget, "_OPTIMIZERS", {})
    linkers, create = [], FunctionMaker.create
    monkeypatch.setattr(FunctionMaker, "create", lambda self, *a, **k: linkers.append(self.linker) or create(self, *a, **k))
    ours = planner.optimizer
    monkeypatch.undo()
    assert linkers and not [linker for linker in linkers if "numba" in type(linker).__name__.lower()]
    assert ours.compile_kwargs == {"mode": RUN_MODE}
    default = mmm.budget_optimizer(planner.start, planner.end, utility_function=budget._utility("mean", 0.95))
    plan = planner.weekly(planner.current * 1.2)
    got, want = ours.evaluate_plan(plan), default.evaluate_plan(plan)
    assert got.objective == pytest.approx(want.objective, rel=1e-9)
    assert got.objective_gradient.keys() == want.objective_gradient.keys()
    for name, gradient in want.objective_gradient.items():
        np.testing.assert_allclose(got.objective_gradient[name].to_numpy(), gradient.to_numpy(), rtol=1e-9)


@pytest.mark.parametrize(
    "attempts, method, reasons",
    [
        ((NOT_CONVERGING, *DEFAULT_ATTEMPTS[1:]), "scipy COBYQA", ["SLSQP (1 iteration) did not converge"]),
        (
            (RAISING, NOT_CONVERGING),
            "projection onto the budget and bounds of the SLSQP (1 iteration) answer",
            ["no-such-solver raised", "did not converge"],
        ),
    ],
    ids=["next-method", "projection"],
)
@pytest.mark.filterwarnings("ignore:Method no-such-solver cannot handle")
def test_forced_fallback_still_meets_the_constraints_and_says_so(fitted, default_result, attempts, method, reasons,
                                                                 monkeypatch):
    features, _, mmm = fitted
    # from the current mix: started at the answer already found for this total, one iteration would converge
    monkeypatch.setattr(budget, "_nearest_answer", lambda planner, total: None)
    result = optimize_budget(mmm, features, BudgetSettings(), attempts=attempts)
    assert result.fallback_used
    assert method in result.method
    assert all(reason in result.fallback_reason for reason in reasons)
    _assert_feasible(result.allocation, result.total_budget)
    if method == "scipy COBYQA":
        assert result.optimized_response.mean == pytest.approx(default_result.optimized_response.mean, rel=1e-3)


def _at_current_total(fitted) -> tuple[budget.Planner, float, tuple[np.ndarray, np.ndarray]]:
    """The fitted model's planner under the default settings, today's total and its channel bounds."""
    features, _, mmm = fitted
    planner = budget.Planner.build(mmm, features, BudgetSettings())
    total = float(planner.current.sum())
    return planner, total, budget.channel_bounds(planner, BudgetSettings(), total)


def test_a_start_from_the_nearest_total_never_ends_below_the_current_mix(fitted, default_result, monkeypatch):
    """An answer found from the nearest total's answer is kept only when it is worth at least the current mix (a
    non-concave response may hold it in a worse local optimum); otherwise the total is solved from the mix."""
    planner, total, bounds = _at_current_total(fitted)
    worse = budget.project(planner.current * np.linspace(0.5, 1.5, len(planner.current)), *bounds, total)
    solved = []
    real = budget._solve_from

    def solve_from(planner, settings, total, bounds, attempts, start, start_name):
        solved.append(start_name)  # from the nearest answer: pretend the optimiser stopped somewhere worse
        if start_name == "the nearest total's answer":
            return worse, "pymc-marketing BudgetOptimizer with scipy SLSQP", []
        return real(planner, settings, total, bounds, attempts, start, start_name)

    monkeypatch.setattr(budget, "_nearest_answer", lambda planner, total: planner.current * 1.0)
    monkeypatch.setattr(budget, "_solve_from", solve_from)
    spend, method, _ = budget._allocate(planner, BudgetSettings(), total, bounds, DEFAULT_ATTEMPTS)
    assert solved == ["the nearest total's answer", "the current mix"] and method.startswith("pymc-marketing")
    assert budget._worth(planner, worse) < budget._worth(planner, planner.current) <= budget._worth(planner, spend)
    np.testing.assert_allclose(spend, default_result.allocation["optimized_spend"].to_numpy(), rtol=1e-4)


def test_a_start_from_the_nearest_total_gets_the_first_attempt_for_a_few_iterations_then_the_mix_every_attempt(
        fitted, default_result, monkeypatch):
    """A start that stalls (SLSQP once took 173 iterations from a channel on its bound) is given up after
    WARM_ITERATIONS_PER_CHANNEL iterations per channel of the first attempt only; the total is then solved from the
    mix as usual."""
    planner, total, bounds = _at_current_total(fitted)
    far = budget.project(planner.current * np.linspace(1.6, 0.4, len(planner.current)), *bounds, total)
    calls = []
    real = budget._solve_from

    def solve_from(planner, settings, total, bounds, attempts, start, start_name):
        calls.append((start_name, [(a.name, dict(a.minimize_kwargs)) for a in attempts]))
        return real(planner, settings, total, bounds, attempts, start, start_name)

    monkeypatch.setattr(budget, "WARM_ITERATIONS_PER_CHANNEL", 1)  # too few for any start but the answer itself
    monkeypatch.setattr(budget, "_nearest_answer", lambda planner, total: far)
    monkeypatch.setattr(budget, "_solve_from", solve_from)
    spend, method, reasons = budget._allocate(planner, BudgetSettings(), total, bounds, DEFAULT_ATTEMPTS)
    cap = len(planner.channels)
    assert calls == [("the nearest total's answer", [("SLSQP", {"options": {"maxiter": cap}})]),
                     ("the current mix", [(a.name, dict(a.minimize_kwargs)) for a in DEFAULT_ATTEMPTS])]
    assert method == "pymc-marketing BudgetOptimizer with scipy SLSQP" and reasons == []
    np.testing.assert_allclose(spend, default_result.allocation["optimized_spend"].to_numpy(), rtol=1e-4)


def test_absolute_bounds_and_an_explicit_total_are_honoured(fitted, default_result):
    features, _, mmm = fitted
    current = default_result.allocation.set_index("channel")["current_spend"]
    bounds = {c: (0.9 * v, 1.0 * v) for c, v in current.items()}
    bounds["linkedin"] = (1.2 * current["linkedin"], 3.0 * current["linkedin"])
    total = 1.2 * current.sum()
    settings = BudgetSettings(total_budget=total, bounds="absolute", absolute_bounds=bounds)
    result = optimize_budget(mmm, features, settings)
    table = result.allocation.set_index("channel")
    assert result.total_budget == total
    for channel, (low, high) in bounds.items():
        assert (table.loc[channel, "lower_bound"], table.loc[channel, "upper_bound"]) == pytest.approx((low, high))
    _assert_feasible(result.allocation, total)
    with pytest.raises(ValueError, match="cannot hold a total budget"):
        optimize_budget(mmm, features, settings.model_copy(update={"total_budget": 10 * current.sum()}))
    with pytest.raises(ValueError, match=r"missing \['facebook', 'linkedin'\]"):
        optimize_budget(mmm, features, BudgetSettings(bounds="absolute", absolute_bounds={"adwords": (0, 1)}))


def test_recommendations_follow_the_optimiser_and_read_marginal_roas(default_result):
    roas = pd.DataFrame(
        {
            "channel": ["adwords", "facebook", "linkedin"],
            "mroas_mean": [1.6, 0.6, 1.1],
            "mroas_hdi_low": [1.3, 0.4, 0.8],
            "mroas_hdi_high": [1.9, 0.8, 1.4],
        }
    )
    table = recommendations(default_result, roas).set_index("channel")
    change = default_result.allocation.set_index("channel")["change_pct"]
    expected = np.where(change > 5, "INCREASE", np.where(change < -5, "REDUCE", "HOLD"))
    assert list(table["action"]) == list(expected)
    assert "above breakeven (1.0)" in table.loc["adwords", "reason"]
    assert "below breakeven (1.0)" in table.loc["facebook", "reason"]
    assert "straddles breakeven (1.0)" in table.loc["linkedin", "reason"]
    assert all(f"({c:+.1f} %)" in table.loc[ch, "reason"] for ch, c in change.items())
    relaxed = recommendations(default_result, hold_band_pct=1000.0)
    assert set(relaxed["action"]) == {"HOLD"} and not relaxed["reason"].str.contains("ROAS").any()
    with pytest.raises(ValueError, match="mroas_hdi_low"):
        recommendations(default_result, roas.drop(columns="mroas_hdi_low"))


def test_settings_defaults_and_clear_validation_messages():
    settings = BudgetSettings()
    assert (settings.horizon_weeks, settings.total_budget, settings.bounds, settings.relative_bound) == (
        4, None, "relative", 0.5
    )
    assert (settings.utility, settings.scenario_levels, settings.total_tolerance) == ("mean", [0.5, 1.0, 1.5], 0.001)
    cases = {
        "unknown key": ({"horizon_weks": 4}, "decisions.budget.horizon_weks: unknown key"),
        "absolute bounds missing": ({"bounds": "absolute"}, "bounds is 'absolute' but absolute_bounds is missing"),
        "low above high": (
            {"bounds": "absolute", "absolute_bounds": {"tv": [5, 1]}},
            "decisions.budget.absolute_bounds: tv: low bound 5 is above high bound 1",
        ),
        "bounds unused": ({"absolute_bounds": {"tv": [0, 1]}}, "absolute_bounds is given but bounds is 'relative'"),
        "horizon": ({"horizon_weeks": 0}, "decisions.budget.horizon_weeks: Input should be greater than or equal to 1"),
    }
    base = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for raw, message in cases.values():
        with pytest.raises(ConfigError, match="is not a valid scenario configuration") as err:
            parse_config({**base, "decisions": {"budget": raw}}, source="budget.yaml")
        assert message in str(err.value)
    with pytest.raises(ValidationError, match="horizon_weks"):
        BudgetSettings(horizon_weks=4)


@pytest.mark.parametrize("level", [0.5, 1.0, 1.5])
def test_owned_media_keep_their_level_and_paid_channels_share_the_rest(level) -> None:
    """A budget below today's stays reachable with owned media fixed: only the paid channels scale (the roles
    example's 0.5x scenario failed, the fixed channel's spend pushing the lower bounds over the total)."""
    from types import SimpleNamespace

    from mmm_assets.core.decisions.budget import _current_mix

    planner = SimpleNamespace(channels=["tv", "search", "email"], fixed=frozenset({"email"}),
                              current=np.array([600.0, 200.0, 400.0]))
    total = level * planner.current.sum()
    mix = _current_mix(planner, total)
    assert mix.sum() == pytest.approx(total) and mix[2] == 400.0
    assert mix[0] / mix[1] == pytest.approx(3.0)  # today's proportions among the paid channels
