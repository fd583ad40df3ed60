"""One budget across markets: the total split over market x channel from every market's champion.

Each market keeps its own model (fitted alone, or its slice of the pooled model) and its own budget optimiser
(PyMC-Marketing's, as for the market's own plan). The joint plan maximises the sum of the markets' expected
incremental responses: SLSQP over every (market, channel) horizon total, the objective and its gradient from each
market's optimiser (``BudgetOptimizer.evaluate_plan``, the mean response in KPI units and its derivative per unit
of weekly spend), with the total as an equality constraint and each market's channel bounds as box bounds.

The reference is the sum of the per-market plans at the same total: each market optimises its share of the total as
it is today (its current spend scaled to the total), within the same bounds. The joint plan starts from that
answer, so it can only keep or improve it; a solver that fails keeps the per-market answer and says so. The joint
plan's expected response and its uplift over the per-market plans come with 94 % HDIs, the markets' draws added
position by position after ``rollup.draw_pairing`` (shuffled, since markets fitted with the same seed have
correlated draws; in order for one pooled model).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pymc_marketing.mmm import MMM
from scipy.optimize import minimize

from mmm_assets.core.config import BudgetSettings
from mmm_assets.core.decisions.budget import (
    BOUND_SLACK,
    DEFAULT_ATTEMPTS,
    Interval,
    Planner,
    channel_bounds,
    solve_total,
)
from mmm_assets.core.decisions.rollup import draw_pairing, view_source


@dataclass(frozen=True)
class MarketModel:
    """One market's champion model, the frame it was fitted on and its owned (fixed) channels."""

    mmm: MMM
    features: pd.DataFrame
    fixed_channels: Sequence[str] = ()


@dataclass(frozen=True)
class CrossMarketResult:
    """The joint plan against the per-market plans at the same total.

    ``allocation``: one row per (market, channel) with ``current_spend``, ``separate_spend`` (the market's own plan
    of its share), ``joint_spend``, the bounds and ``change_pct`` (joint vs current). ``markets``: one row per market
    with its totals and expected responses (mean, 94 % HDI) under both plans. Responses are incremental, in KPI
    units over the horizon and its carry-over.
    """

    start_date: pd.Timestamp
    horizon_weeks: int
    total_budget: float
    allocation: pd.DataFrame
    markets: pd.DataFrame
    joint_response: Interval
    separate_response: Interval
    uplift: Interval
    uplift_pct: float
    method: str
    wall_seconds: float


@dataclass
class _Market:
    name: str
    planner: Planner
    total: float
    lower: np.ndarray
    upper: np.ndarray
    separate: np.ndarray


def _markets(models: Mapping[str, MarketModel], settings: BudgetSettings, total: float | None) -> list[_Market]:
    """Every market's planner, its share of the total (today's share), bounds and own plan of that share."""
    planners = {m: Planner.build(x.mmm, x.features, settings, x.fixed_channels) for m, x in models.items()}
    starts = {m: p.start for m, p in planners.items()}
    if len(set(starts.values())) > 1:
        shown = ", ".join(f"{m} {s:%Y-%m-%d}" for m, s in starts.items())
        raise ValueError(f"the markets' horizons start on different weeks ({shown}): refresh every market on data up "
                         "to the same week before planning one budget across them")
    current = {m: float(p.current.sum()) for m, p in planners.items()}
    spent = sum(current.values())
    if spent <= 0:
        raise ValueError("nothing was spent in any market over the last horizon; set decisions.budget.total_budget")
    total = total if total is not None else spent
    markets = []
    for name, planner in planners.items():
        share = total * current[name] / spent
        low, high = channel_bounds(planner, settings, share)
        own = solve_total(planner, settings, share, DEFAULT_ATTEMPTS).allocation["optimized_spend"].to_numpy()
        markets.append(_Market(name, planner, share, low, high, own))
    return markets


def _joint(markets: list[_Market], total: float, tolerance: float) -> tuple[list[np.ndarray], str]:
    """The joint plan (horizon totals per market, in each model's channel order) and how it was found."""
    sizes = [len(m.separate) for m in markets]
    cuts = np.cumsum(sizes)[:-1]
    start = np.concatenate([m.separate for m in markets]) / total
    scale = sum(float(m.planner.response(m.separate).mean()) for m in markets) or 1.0

    def objective(fractions: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = 0.0, []
        for market, part in zip(markets, np.split(fractions * total, cuts)):
            planner = market.planner
            evaluation = planner.optimizer.evaluate_plan(planner.weekly(part))
            value += evaluation.utility
            weekly = evaluation.utility_gradient["channel_data"].sel(channel=planner.channels).to_numpy()
            gradient.append(weekly / planner.weeks * total)  # d response / d fraction of the total
        return -value / scale, -np.concatenate(gradient) / scale

    low = np.concatenate([m.lower for m in markets]) / total
    high = np.concatenate([m.upper for m in markets]) / total
    result = minimize(objective, start, jac=True, method="SLSQP", bounds=list(zip(low, high)),
                      constraints=[{"type": "eq", "fun": lambda f: f.sum() - 1.0, "jac": lambda f: np.ones_like(f)}],
                      options={"maxiter": 500, "ftol": 1e-10})
    found = np.clip(result.x, low, high)
    holds = abs(found.sum() - 1.0) <= tolerance and result.fun <= objective(start)[0]
    if not (result.success and holds):
        why = result.message if not result.success else "its answer was no better than the per-market plans"
        return [m.separate for m in markets], f"per-market plans kept: SLSQP across markets failed ({why})"
    return np.split(found * total, cuts), f"scipy SLSQP across markets ({result.nit} iterations)"


def _summed(draws: list[np.ndarray], pairing: list[np.ndarray]) -> np.ndarray:
    """The markets' response draws added position by position, each market's taken in ``pairing``'s order."""
    return np.sum([d[chosen] for d, chosen in zip(draws, pairing, strict=True)], axis=0)


def allocate_across_markets(
    models: Mapping[str, MarketModel], settings: BudgetSettings, total: float | None = None
) -> CrossMarketResult:
    """One total across every market's channels (see the module docstring); ``total`` defaults to what every market
    spent over the last horizon together (``settings.total_budget`` is a market's own)."""
    if len(models) < 2:
        raise ValueError(f"one budget across markets needs at least two markets with a champion, got {list(models)}")
    started = time.monotonic()
    markets = _markets(models, settings, total)
    total = sum(m.total for m in markets)
    joint, method = _joint(markets, total, settings.total_tolerance)
    separate_draws = [m.planner.response(m.separate) for m in markets]
    joint_draws = [m.planner.response(plan) for m, plan in zip(markets, joint)]
    rows, summary = [], []
    for market, plan, own, together in zip(markets, joint, separate_draws, joint_draws):
        planner = market.planner
        with np.errstate(divide="ignore", invalid="ignore"):
            change = np.where(planner.current > 0, 100 * (plan - planner.current) / planner.current, np.nan)
        rows.append(pd.DataFrame({
            "market": market.name, "channel": planner.channels, "current_spend": planner.current,
            "separate_spend": market.separate, "joint_spend": plan, "lower_bound": market.lower,
            "upper_bound": market.upper, "change_pct": change,
        }))
        apart, joined = Interval.of(own), Interval.of(together)
        summary.append({
            "market": market.name, "current_spend": float(planner.current.sum()), "separate_spend": market.total,
            "joint_spend": float(plan.sum()), "separate_response_mean": apart.mean,
            "separate_response_hdi_low": apart.hdi_low, "separate_response_hdi_high": apart.hdi_high,
            "joint_response_mean": joined.mean, "joint_response_hdi_low": joined.hdi_low,
            "joint_response_hdi_high": joined.hdi_high,
        })
    allocation = pd.concat(rows, ignore_index=True)
    outside = allocation[(allocation["joint_spend"] < allocation["lower_bound"] - BOUND_SLACK * total)
                         | (allocation["joint_spend"] > allocation["upper_bound"] + BOUND_SLACK * total)]
    if len(outside):
        raise RuntimeError(f"the joint plan breaks the bounds of {outside[['market', 'channel']].values.tolist()}")
    # the same pairing for both plans, so the uplift compares each market's plans on the same draws
    pairing = draw_pairing([view_source(m.planner.mmm) for m in markets], [len(d) for d in separate_draws])
    separate, together = _summed(separate_draws, pairing), _summed(joint_draws, pairing)
    return CrossMarketResult(
        start_date=markets[0].planner.start,
        horizon_weeks=markets[0].planner.weeks,
        total_budget=total,
        allocation=allocation,
        markets=pd.DataFrame(summary),
        joint_response=Interval.of(together),
        separate_response=Interval.of(separate),
        uplift=Interval.of(together - separate),
        uplift_pct=100.0 * float((together - separate).mean() / separate.mean()),
        method=method,
        wall_seconds=time.monotonic() - started,
    )
