"""Goal-seeking plans: the total budget that meets a goal, each candidate total split by the budget optimiser.

For a total ``T`` the budget optimiser gives the best split (the scenario's utility, bounds and owned channels) and its
incremental response draws; ``R(T)`` is their mean. With saturating media ``R`` rises and flattens, so:

- ``target_roas``: the plan's return ``R(T) / T`` falls as ``T`` grows: the largest ``T`` whose return is at or above
  the target (Meridian's ``target_roi``, Robyn's "target efficiency");
- ``target_mroas``: the marginal return of the last unit, ``R'(T)`` (a central difference over
  ``marginal_step * T``, see ``_Curve.mroas``), falls too: the ``T`` where it reaches the target (Meridian's
  ``target_mroi``); its default target is the KPI's breakeven, i.e. "spend while the next unit still pays for
  itself";
- ``target_kpi``: the least ``T`` whose expected response reaches the value, with the share of posterior draws that
  reach it (the probability of meeting the goal);
- ``same_response_least_spend``: ``target_kpi`` at the expected response of today's plan (the last horizon's spend).

The search runs over ``[min_total_multiple, max_total_multiple]`` times the base budget (``total_budget``, or the
current spend), within what absolute bounds allow, by bracketing and bisection (``scipy.optimize.brentq``) on the
monotone quantity. A goal the range cannot meet is reported as unreachable, with the range's closest plan and why.
Returns are in KPI units per unit of spend, as in ``channel_roas`` (money back for revenue, conversions per unit
of spend for a counted KPI).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pymc_marketing.mmm import MMM
from scipy.optimize import brentq

from mmm_assets.core.config import RETURN_GOALS, BudgetSettings, Goal, KpiConfig, PlannerSettings
from mmm_assets.core.decisions.budget import (
    BOUND_SLACK,
    DEFAULT_ATTEMPTS,
    BudgetResult,
    Interval,
    Planner,
    base_budget,
    channel_bounds,
    solve_total,
)
from mmm_assets.core.decisions.kpi import KpiTerms
from mmm_assets.core.synthetic.generator import GroundTruth

#: How precisely a goal's total is found, as a fraction of the base budget.
TOTAL_TOLERANCE = 1e-3
#: The goal_plans table's columns and types, in order.
GOAL_COLUMNS = {
    "goal": "object", "kind": "object", "target": "float64", "reached": "bool", "total_budget": "float64",
    "channel": "object", "current_spend": "float64", "spend": "float64", "lower_bound": "float64",
    "upper_bound": "float64", "expected_response_mean": "float64", "expected_response_hdi_low": "float64",
    "expected_response_hdi_high": "float64", "roas_mean": "float64", "roas_hdi_low": "float64",
    "roas_hdi_high": "float64", "mroas_mean": "float64", "probability": "float64", "note": "object",
}


@dataclass(frozen=True)
class GoalPlan:
    """A goal's plan: the total found, its split (``result``), what it is expected to return and whether it meets
    the goal. ``target`` is the resolved target (a return, or a KPI over the horizon); ``probability`` is the share
    of draws whose response reaches it (KPI goals only)."""

    goal: Goal
    target: float
    reached: bool
    note: str
    result: BudgetResult
    roas: Interval
    mroas: float
    probability: float | None = None


@dataclass
class _Curve:
    """The optimised plan at any total, remembered: each goal's search and its neighbours' marginals share them."""

    planner: Planner
    settings: BudgetSettings
    step: float

    def plan(self, total: float, truth: GroundTruth | None = None) -> BudgetResult:
        return solve_total(self.planner, self.settings, total, DEFAULT_ATTEMPTS, truth)

    def draws(self, total: float) -> np.ndarray:
        spend = self.plan(total).allocation["optimized_spend"].to_numpy()
        return self.planner.response(spend)

    def response(self, total: float) -> float:
        return float(self.plan(total).optimized_response.mean)

    def roas(self, total: float) -> float:
        return self.response(total) / total

    def mroas(self, total: float) -> float:
        """``R'(T)``: what the next unit returns when the plan at ``total`` is optimised again.

        Under the mean utility the plan maximises the expected response at its total, so (the envelope theorem)
        ``R'(T)`` is the derivative of the response along any path of feasible plans through it that keeps the
        same channels on their bounds: those stay on their bounds at ``(1 +- step) x total`` (relative bounds move
        with the total, held channels do not), the free ones share the rest in their proportions. A central
        difference of two responses along that path, not of two more optimised plans (each an optimisation). Under
        a risk utility, or with no free channel, the plan is optimised again at ``(1 +- step) x total``."""
        if self.settings.utility == "mean":
            plan = self.plan(total).allocation
            spend = plan["optimized_spend"].to_numpy()
            slack = BOUND_SLACK * total
            at_low = spend <= plan["lower_bound"].to_numpy() + slack
            at_high = spend >= plan["upper_bound"].to_numpy() - slack
            free = ~(at_low | at_high)
            if spend[free].sum() > 0:
                high, low = total * (1 + self.step), total * (1 - self.step)
                along = [self._along(spend, at_low, at_high, t) for t in (high, low)]
                responses = [self.planner.response(x).mean() for x in along]
                return float((responses[0] - responses[1]) / (high - low))
        return self.reoptimised_mroas(total)

    def _along(self, spend: np.ndarray, at_low: np.ndarray, at_high: np.ndarray, total: float) -> np.ndarray:
        """The plan ``spend`` moved to ``total``: its bound channels on their bounds there, the others scaled."""
        lower, upper = channel_bounds(self.planner, self.settings, total)
        moved = np.where(at_low, lower, np.where(at_high, upper, spend))
        free = ~(at_low | at_high)
        moved[free] *= (total - moved[~free].sum()) / spend[free].sum()
        return moved

    def reoptimised_mroas(self, total: float) -> float:
        """``R'(T)`` as a central difference of two optimised plans, at ``(1 +- step) x total``."""
        high, low = total * (1 + self.step), total * (1 - self.step)
        return (self.response(high) - self.response(low)) / (high - low)


def _search_range(planner: Planner, settings: BudgetSettings, planning: PlannerSettings, base: float) -> tuple[float, float]:
    """The totals a goal may take: the configured multiples of the base budget, within absolute bounds' sums."""
    low, high = planning.min_total_multiple * base, planning.max_total_multiple * base
    if settings.bounds == "absolute" and settings.absolute_bounds is not None:
        lows, highs = zip(*(settings.absolute_bounds[c] for c in planner.channels if c in settings.absolute_bounds))
        low, high = max(low, sum(lows)), min(high, sum(highs))
    if low >= high:
        raise ValueError(f"no total to search: the bounds allow {low:,.2f} .. {high:,.2f}")
    return low, high


def _crossing(metric: Callable[[float], float], target: float, low: float, high: float, base: float) -> float:
    """The total in [low, high] where a decreasing ``metric`` equals ``target`` (both ends already straddle it)."""
    return float(brentq(lambda t: metric(t) - target, low, high, xtol=TOTAL_TOLERANCE * base))


def _resolve_target(goal: Goal, curve: _Curve, terms: KpiTerms) -> float:
    """The goal's target in its own units: the value given, the KPI's breakeven return, or today's response."""
    if goal.value is not None:
        return goal.value
    if goal.kind in RETURN_GOALS:
        if terms.breakeven_return is None:
            raise ValueError(
                f"goal {goal.label!r} has no value and the KPI {terms.label!r} has no breakeven (conversions "
                "without kpi.value_per_unit): give the target return as value"
            )
        return terms.breakeven_return
    return float(curve.planner.current_response.mean())


def _seek(goal: Goal, target: float, curve: _Curve, low: float, high: float, base: float) -> tuple[float, bool, str]:
    """The total that meets the goal, whether it does, and a sentence saying how (or why not)."""
    if goal.kind in RETURN_GOALS:
        metric, what = (curve.roas, "return") if goal.kind == "target_roas" else (curve.mroas, "marginal return")
        at_low, at_high = metric(low), metric(high)
        if at_low < target:
            return low, False, (
                f"unreachable: even the smallest total searched ({low:,.2f}) returns {at_low:.3g} per unit, below "
                f"{target:.3g}; this is the closest plan"
            )
        if at_high >= target:
            return high, True, (
                f"the {what} stays at or above {target:.3g} up to the largest total searched ({high:,.2f}, "
                f"{at_high:.3g}); raise decisions.planner.max_total_multiple to look further"
            )
        return _crossing(metric, target, low, high, base), True, f"{what} {target:.3g} reached"
    at_high = curve.response(high)
    if at_high < target:
        return high, False, (
            f"unreachable: even the largest total searched ({high:,.2f}) is expected to bring {at_high:,.4g}, below "
            f"{target:,.4g}; this is the closest plan (raise decisions.planner.max_total_multiple or bounds)"
        )
    if curve.response(low) >= target:
        return low, True, f"already met at the smallest total searched ({low:,.2f})"
    total = _crossing(lambda t: -curve.response(t), -target, low, high, base)
    return total, True, f"expected response {target:,.4g} reached"


def plan_goals(
    mmm: MMM,
    features: pd.DataFrame,
    settings: BudgetSettings,
    planning: PlannerSettings,
    kpi: KpiConfig | None = None,
    fixed_channels: Sequence[str] = (),
    truth: GroundTruth | None = None,
    report: Callable[[str], None] = lambda _: None,
) -> list[GoalPlan]:
    """One plan per goal of ``planning.goals`` (see the module docstring), in their order.

    ``features`` is the frame the model was fitted on; ``settings`` the budget's horizon, bounds and utility;
    ``fixed_channels`` (owned media) stay at their current level. With ``truth`` each plan's result carries its true
    incremental response (``true_optimized_response``). ``report`` receives one line per goal as it is found.
    """
    planner = Planner.build(mmm, features, settings, fixed_channels)
    curve = _Curve(planner, settings, planning.marginal_step)
    base = base_budget(planner, settings)
    low, high = _search_range(planner, settings, planning, base)
    terms = KpiTerms.of(kpi)
    plans = []
    for goal in planning.goals:
        target = _resolve_target(goal, curve, terms)
        total, reached, note = _seek(goal, target, curve, low, high, base)
        result = curve.plan(total, truth)
        draws = curve.draws(total)
        probability = float((draws >= target).mean()) if goal.kind not in RETURN_GOALS else None
        plan = GoalPlan(goal, target, reached, note, result, Interval.of(draws / total), curve.mroas(total), probability)
        report(f"goal {goal.label}: total {total:,.2f} ({total / base:.2f} x base), expected response "
               f"{result.optimized_response.mean:,.4g}, return {plan.roas.mean:.3g}, marginal {plan.mroas:.3g}; {note}")
        plans.append(plan)
    return plans


def goal_table(plans: Sequence[GoalPlan]) -> pd.DataFrame:
    """One row per (goal, channel): the goal, its target and outcome, the plan's total and spend per channel, and
    the plan's expected response, return and marginal return (mean and 94 % HDI where there is one)."""
    frames = []
    for plan in plans:
        result = plan.result
        response = result.optimized_response
        frames.append(result.allocation.rename(columns={"optimized_spend": "spend"}).drop(columns="change_pct").assign(
            goal=plan.goal.label, kind=plan.goal.kind, target=plan.target, reached=plan.reached,
            total_budget=result.total_budget,
            expected_response_mean=response.mean, expected_response_hdi_low=response.hdi_low,
            expected_response_hdi_high=response.hdi_high,
            roas_mean=plan.roas.mean, roas_hdi_low=plan.roas.hdi_low, roas_hdi_high=plan.roas.hdi_high,
            mroas_mean=plan.mroas,
            probability=math.nan if plan.probability is None else plan.probability,
            note=plan.note,
        ))
    if not frames:  # no goals configured: an empty table of the same columns and types
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in GOAL_COLUMNS.items()})
    return pd.concat(frames, ignore_index=True)[list(GOAL_COLUMNS)]


def goal_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per goal of :func:`goal_table`: the outcome without the channels."""
    keep = ["goal", "kind", "target", "reached", "total_budget", "expected_response_mean",
            "expected_response_hdi_low", "expected_response_hdi_high", "roas_mean", "mroas_mean", "probability", "note"]
    return table[keep].drop_duplicates("goal").reset_index(drop=True)
