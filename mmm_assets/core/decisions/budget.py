"""Budget allocation for the weeks after the data, with PyMC-Marketing's budget optimiser.

Money is in the units of the channel columns; every spend figure here is a total over the horizon
(``horizon_weeks`` weeks starting the week after the last one in the data), spread evenly over its weeks. The
library works with weekly amounts, so totals are divided by the number of weeks on the way in and multiplied on the
way out.

The expected response of a plan is *incremental*: the model's media contribution (target units: revenue, or
conversions, whose value ``decisions.kpi`` adds) with the plan minus the same with no spend over the horizon, draw
by draw. Both include what the library includes: the spend made
before the horizon carries its adstock into it (``carry_in_periods``) and the horizon's own spend keeps paying
during ``adstock_periods`` weeks after it, so the history's own effect cancels in the difference.

"Current" spend is each channel's spend over the last ``horizon_weeks`` weeks of the data. Relative bounds are
taken around the current mix scaled to the total budget, which is the current spend itself when the total is the
default (what was spent over the last horizon); at other totals (budget scenarios) the range scales with it so the
optimiser keeps the same freedom at every level.

When the first optimiser's answer is unusable (it raised, did not converge or broke the budget or a bound), the
next attempt runs; when none is usable, the last answer is projected onto the budget and bounds and re-evaluated.
The result says which method produced the answer and why a fallback was needed.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import xarray as xr
from pymc_marketing.mmm import MMM
from pymc_marketing.mmm.budget_optimizer import BudgetOptimizer
from pymc_marketing.mmm.utility import (
    UtilityFunctionType,
    average_response,
    conditional_value_at_risk,
    sharpe_ratio,
    value_at_risk,
)

from mmm_assets.core.config import DATE_COLUMN, BudgetSettings
from mmm_assets.core.decisions.attempts import DEFAULT_ATTEMPTS as DEFAULT_ATTEMPTS  # re-exported with Attempt
from mmm_assets.core.decisions.attempts import Attempt
from mmm_assets.core.decisions.feasible import BOUND_SLACK as BOUND_SLACK  # re-exported: the budget's slack
from mmm_assets.core.decisions.feasible import project, violation
from mmm_assets.core.inference.compiling import RUN_MODE, quick_compile
from mmm_assets.core.modelling.posterior import Interval
from mmm_assets.core.synthetic.generator import GroundTruth

CHANNEL_DIM = "channel"
WEEK = pd.Timedelta(days=7)


#: How an answer the optimiser converged to is named (its method, followed by the attempt's name).
OPTIMIZED = "pymc-marketing BudgetOptimizer with scipy"
#: Iterations per channel a start from the nearest total's answer gets (the first attempt only) before the total is
#: solved from the current mix instead, with every attempt. At 3 channels (30 iterations) SLSQP took 20-30 from the
#: mix on the 20-market refresh of docs/performance.md, from the nearest answer mostly fewer, but once 173 (11 s) from
#: a channel on its upper bound, where the mix took 26 (0.2 s) to the same split; at 10 channels it took 80-95 from
#: the mix, and a flat 30 gave up 8 of one market's 25 starts, each then solved again from the mix.
#: The library's own cap is 1,000.
WARM_ITERATIONS_PER_CHANNEL = 10


@dataclass(frozen=True)
class BudgetResult:
    """An optimised allocation over the horizon, compared with the current one.

    ``allocation`` has one row per channel: ``channel, current_spend, optimized_spend, lower_bound, upper_bound,
    change_pct`` (totals over the horizon; ``change_pct`` is optimised vs current). Responses are incremental, in
    target units over the horizon and its carry-over; ``uplift`` is optimised minus current, draw by draw.
    ``true_*`` are the ground truth's responses of both allocations when a ``GroundTruth`` was given.
    """

    start_date: pd.Timestamp
    end_date: pd.Timestamp
    horizon_weeks: int
    total_budget: float
    utility: str
    allocation: pd.DataFrame
    optimized_response: Interval
    current_response: Interval
    uplift: Interval
    uplift_pct: float
    method: str
    fallback_used: bool
    fallback_reason: str | None
    wall_seconds: float
    true_optimized_response: float | None = None
    true_current_response: float | None = None


def _utility(utility: str, risk_level: float) -> UtilityFunctionType:
    if utility == "var":
        return value_at_risk(risk_level)
    if utility == "cvar":
        return conditional_value_at_risk(risk_level)
    if utility == "sharpe":  # expected response over its posterior standard deviation (risk-free return 0)
        return sharpe_ratio()
    return average_response


#: Compiled optimisers kept per process, by (model id, window, utility), each with the allocations found with it (see
#: ``solve_total``); the model is kept with its optimiser so its id cannot be reused while the entry lives.
_OPTIMIZERS: dict[tuple, tuple[MMM, BudgetOptimizer, dict]] = {}
OPTIMIZERS_KEPT = 2


def _compiled(
    mmm: MMM, start: pd.Timestamp, end: pd.Timestamp, utility: str, risk_level: float
) -> tuple[BudgetOptimizer, dict]:
    """The library's optimiser of a model over a window, compiled once per process, and the allocations found with
    it: the budget and the scenarios of one refresh share both (models are loaded once per process too, see
    ``model.load_model``)."""
    key = (id(mmm), start, end, utility, risk_level)
    if key not in _OPTIMIZERS:
        while len(_OPTIMIZERS) >= OPTIMIZERS_KEPT:
            _OPTIMIZERS.pop(next(iter(_OPTIMIZERS)))
        # the objective in RUN_MODE (compile_kwargs, also for the responses the optimiser compiles later: they are
        # evaluated hundreds of times a refresh), the helpers it compiles while building (shape evaluations, ...) in
        # QUICK_MODE: in the default mode numba compiled them for ~6 s on an empty cache
        with quick_compile():
            optimizer = mmm.budget_optimizer(
                start, end, utility_function=_utility(utility, risk_level), compile_kwargs={"mode": RUN_MODE}
            )
        _OPTIMIZERS[key] = (mmm, optimizer, {})
    return _OPTIMIZERS[key][1:]


@dataclass
class Planner:
    """The weeks after the data, the current spend over the last as many weeks, and the library's optimiser."""

    mmm: MMM
    settings: BudgetSettings
    features: pd.DataFrame
    channels: list[str]
    start: pd.Timestamp
    end: pd.Timestamp
    current: np.ndarray
    #: Channels held at their current level (owned media: no money to move); the others share the rest.
    fixed: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        mmm: MMM,
        features: pd.DataFrame,
        settings: BudgetSettings,
        fixed: Sequence[str] = (),
        reference: Mapping[str, float] | None = None,
    ) -> Planner:
        """The planner of the weeks after ``features`` (the frame the model was fitted on); see optimize_budget."""
        channels = list(mmm.channel_columns)
        absent = [c for c in channels if c not in features.columns]
        if absent:
            raise ValueError(f"features lack the model's channel column(s) {absent}")
        weeks = settings.horizon_weeks
        if len(features) < weeks:
            raise ValueError(f"features hold {len(features)} weeks, fewer than the {weeks}-week horizon")
        last = pd.Timestamp(features[DATE_COLUMN].max())
        fitted_last = pd.Timestamp(mmm.idata.fit_data[DATE_COLUMN].values[-1])
        if last != fitted_last:
            raise ValueError(
                f"features end on {last:%Y-%m-%d} but the model was fitted up to {fitted_last:%Y-%m-%d}; "
                "plan with the features the model was fitted on"
            )
        current = features[channels].tail(weeks).sum().to_numpy(dtype=float)
        if reference is not None:
            absent = [c for c in channels if c not in reference]
            if absent:
                raise ValueError(f"the reference spend lacks the model's channel(s) {absent}")
            current = np.array([reference[c] for c in channels], dtype=float)
        return cls(mmm, settings, features, channels, last + WEEK, last + weeks * WEEK, current, frozenset(fixed))

    @property
    def weeks(self) -> int:
        """Weeks in the horizon."""
        return self.settings.horizon_weeks

    @cached_property
    def _kept(self) -> tuple[BudgetOptimizer, dict]:
        return _compiled(self.mmm, self.start, self.end, self.settings.utility, self.settings.risk_level)

    @property
    def optimizer(self) -> BudgetOptimizer:
        """Built (and compiled) on first use, so settings that cannot be met fail before compiling."""
        return self._kept[0]

    @property
    def allocations(self) -> dict:
        """What ``_allocate`` found with this optimiser, by everything that decides it."""
        return self._kept[1]

    def weekly(self, totals: np.ndarray) -> xr.DataArray:
        """A labelled weekly plan (what the library takes) from horizon totals."""
        return xr.DataArray(np.asarray(totals) / self.weeks, dims=[CHANNEL_DIM], coords={CHANNEL_DIM: self.channels})

    def _media_response(self, totals: np.ndarray) -> np.ndarray:
        return self.optimizer.evaluate_response_distribution(self.weekly(totals)).to_numpy()

    @cached_property
    def _no_spend_response(self) -> np.ndarray:
        return self._media_response(np.zeros(len(self.channels)))

    def response(self, totals: np.ndarray) -> np.ndarray:
        """Incremental response of a plan per posterior draw: its media contribution minus that of no spend."""
        return self._media_response(totals) - self._no_spend_response

    @cached_property
    def current_response(self) -> np.ndarray:
        """:meth:`response` of the current spend, which every solved total is compared with."""
        return self.response(self.current)


def true_incremental_response(
    truth: GroundTruth, features: pd.DataFrame, totals: Mapping[str, float], weeks: int
) -> float:
    """True response (target units) of horizon totals spread evenly over ``weeks`` weeks after ``features``."""
    return true_plan_response(truth, features, pd.DataFrame({c: np.full(weeks, t / weeks) for c, t in totals.items()}))


def true_plan_response(truth: GroundTruth, features: pd.DataFrame, weekly: pd.DataFrame) -> float:
    """The true incremental response of weekly spend (one column per channel) in the weeks after ``features``.

    Like the optimiser's response: carry-over from the data's spend in, the plan's carry-over out over the adstock's
    tail, minus the response with no spend over the same weeks.
    """
    response = 0.0
    for channel in weekly.columns:
        tail = int(truth.parameters.loc[channel, "adstock_l_max"]) - 1
        plan = np.concatenate([weekly[channel].to_numpy(dtype=float), np.zeros(tail)])
        history = features[channel].to_numpy()
        spent = truth.channel_response(channel, plan, history=history)
        idle = truth.channel_response(channel, np.zeros_like(plan), history=history)
        response += float(spent.sum() - idle.sum())
    return response


def channel_bounds(planner: Planner, settings: BudgetSettings, total: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) horizon totals per channel, checked to be able to hold ``total``."""
    if settings.bounds == "absolute":
        assert settings.absolute_bounds is not None
        missing = [c for c in planner.channels if c not in settings.absolute_bounds]
        unknown = sorted(set(settings.absolute_bounds) - set(planner.channels))
        if missing or unknown:
            raise ValueError(
                f"absolute_bounds must name exactly the model's channels {planner.channels}: "
                f"missing {missing}, unknown {unknown}"
            )
        lower, upper = np.array([settings.absolute_bounds[c] for c in planner.channels], dtype=float).T
    else:
        if planner.current.sum() <= 0:
            raise ValueError("nothing was spent over the last horizon, so relative bounds have no reference")
        mix = _current_mix(planner, total)
        lower, upper = mix * max(0.0, 1.0 - settings.relative_bound), mix * (1.0 + settings.relative_bound)
    for i, channel in enumerate(planner.channels):
        if channel in planner.fixed:
            lower[i] = upper[i] = planner.current[i]
    if not lower.sum() <= total <= upper.sum():
        raise ValueError(
            f"the bounds cannot hold a total budget of {total:,.2f}: they allow between {lower.sum():,.2f} and "
            f"{upper.sum():,.2f} over the {planner.weeks} weeks"
        )
    return lower, upper


def _current_mix(planner: Planner, total: float) -> np.ndarray:
    """Today's mix scaled to ``total``: the fixed (owned) channels keep their current level and the others share
    what is left in today's proportions (scaling the fixed ones too put a budget below today's out of reach)."""
    fixed = np.array([c in planner.fixed for c in planner.channels])
    movable = planner.current[~fixed].sum()
    if movable <= 0:
        return planner.current.astype(float)
    left = max(total - planner.current[fixed].sum(), 0.0)
    return np.where(fixed, planner.current, planner.current * left / movable).astype(float)


def _change_pct(current: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Percentage change per channel; +inf from zero to some spend, 0 from zero to zero."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = 100.0 * (new - current) / current
    return np.where(current > 0, pct, np.where(new > 0, np.inf, 0.0))


def _nearest_answer(planner: Planner, total: float) -> np.ndarray | None:
    """The optimiser's answer at the solved total nearest ``total`` (by ratio), scaled to ``total``: where a goal's
    search, which asks for total after nearby total, starts the next one (SLSQP then needs fewer iterations than
    from the current mix); None before any answer."""
    solved = [(key[0], spend) for key, (spend, method, _) in planner.allocations.items()
              if method.startswith(OPTIMIZED) and key[0] > 0]
    if not solved:
        return None
    near, spend = min(solved, key=lambda item: abs(np.log(item[0] / total)))
    return spend * (total / near)


def _allocate(
    planner: Planner,
    settings: BudgetSettings,
    total: float,
    bounds: tuple[np.ndarray, np.ndarray],
    attempts: Sequence[Attempt],
) -> tuple[np.ndarray, str, list[str]]:
    """Horizon totals from the first usable attempt (else the last answer projected), the method, and what failed.

    The optimiser starts from the nearest solved total's answer when there is one, with the first attempt only, for
    WARM_ITERATIONS_PER_CHANNEL iterations per channel; that answer is kept when it converged and is worth at least
    the current mix; else the total is solved from the current mix, with every attempt. The response need not be
    concave (an S-shaped saturation has more than one local optimum), and a start elsewhere may end in one below
    today's mix, which a start from the mix never does."""
    lower, upper = bounds
    spent = planner.current.sum()
    share = planner.current / spent if spent > 0 else np.full(len(lower), 1 / len(lower))
    mix = project(share * total, lower, upper, total)
    nearest = _nearest_answer(planner, total)
    if nearest is not None:
        first = attempts[0].minimize_kwargs
        cap = WARM_ITERATIONS_PER_CHANNEL * len(lower)
        capped = Attempt(attempts[0].name, {**first, "options": {**first.get("options", {}), "maxiter": cap}})
        found = _solve_from(planner, settings, total, bounds, [capped], project(nearest, lower, upper, total),
                            "the nearest total's answer")
        if found[1].startswith(OPTIMIZED) and _worth(planner, found[0]) >= _worth(planner, mix):
            return found
    return _solve_from(planner, settings, total, bounds, attempts, mix, "the current mix")


def _worth(planner: Planner, spend: np.ndarray) -> float:
    """What the optimiser maximises, at horizon totals ``spend``."""
    return float(planner.optimizer.evaluate_plan(planner.weekly(spend)).utility)


def _solve_from(
    planner: Planner,
    settings: BudgetSettings,
    total: float,
    bounds: tuple[np.ndarray, np.ndarray],
    attempts: Sequence[Attempt],
    start: np.ndarray,
    start_name: str,
) -> tuple[np.ndarray, str, list[str]]:
    """:func:`_allocate` from ``start`` (named ``start_name`` when it is what gets projected)."""
    (lower, upper), spend, source, reasons = bounds, start, start_name, []
    size = abs(_worth(planner, start))
    weekly_bounds = {c: (lo / planner.weeks, hi / planner.weeks) for c, lo, hi in zip(planner.channels, lower, upper)}
    for attempt in attempts:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Method .* does not use gradient")
                result = planner.optimizer.allocate_budget(
                    total / planner.weeks,
                    budget_bounds=weekly_bounds,
                    x0=planner.weekly(start),
                    minimize_kwargs=attempt.kwargs(size),
                    return_if_fail=True,
                )
        except Exception as err:  # scipy and the library raise many types; any of them means "try the next one"
            reasons.append(f"{attempt.name} raised {type(err).__name__}: {err}")
            continue
        spend = result.budgets.sel({CHANNEL_DIM: planner.channels}).to_numpy() * planner.weeks
        source = f"the {attempt.name} answer"
        scipy_result = result.scipy_result
        problem = None if scipy_result.success else f"did not converge ({scipy_result.message})"
        problem = problem or violation(spend, lower, upper, total, settings.total_tolerance, planner.channels)
        if problem is None:
            return spend, f"{OPTIMIZED} {attempt.name}", reasons
        reasons.append(f"{attempt.name} {problem}")
    method = f"projection onto the budget and bounds of {source}, re-evaluated"
    return project(spend, lower, upper, total), method, reasons


def solve_total(
    planner: Planner,
    settings: BudgetSettings,
    total: float,
    attempts: Sequence[Attempt],
    truth: GroundTruth | None = None,
) -> BudgetResult:
    """The best split of ``total`` (the first usable of ``attempts``, remembered per optimiser) and its responses;
    with ``truth``, the true responses too."""
    started = time.monotonic()
    lower, upper = channel_bounds(planner, settings, total)
    # the answer is kept with the optimiser: the budget asks again for the scenarios' 1.0 level (~1 s per search)
    key = (total, lower.tobytes(), upper.tobytes(), planner.current.tobytes(), settings.total_tolerance,
           repr(tuple(attempts)))
    if key not in planner.allocations:
        planner.allocations[key] = _allocate(planner, settings, total, (lower, upper), attempts)
    spend, method, reasons = planner.allocations[key]
    optimized, current = planner.response(spend), planner.current_response
    uplift = optimized - current
    true_responses = {}
    if truth is not None:
        for name, totals in (("true_optimized_response", spend), ("true_current_response", planner.current)):
            true_responses[name] = true_incremental_response(
                truth, planner.features, dict(zip(planner.channels, totals)), planner.weeks
            )
    allocation = pd.DataFrame(
        {
            "channel": planner.channels,
            "current_spend": planner.current,
            "optimized_spend": spend,
            "lower_bound": lower,
            "upper_bound": upper,
            "change_pct": _change_pct(planner.current, spend),
        }
    )
    return BudgetResult(
        start_date=planner.start,
        end_date=planner.end,
        horizon_weeks=planner.weeks,
        total_budget=total,
        utility=settings.utility,
        allocation=allocation,
        optimized_response=Interval.of(optimized),
        current_response=Interval.of(current),
        uplift=Interval.of(uplift),
        uplift_pct=100.0 * float(uplift.mean() / current.mean()) if current.mean() else math.nan,
        method=method,
        fallback_used=bool(reasons),
        fallback_reason="; ".join(reasons) or None,
        wall_seconds=time.monotonic() - started,
        **true_responses,
    )


def base_budget(planner: Planner, settings: BudgetSettings) -> float:
    """The budget plans are made around: ``total_budget``, or what was spent over the last horizon."""
    total = settings.total_budget if settings.total_budget is not None else float(planner.current.sum())
    if total <= 0:
        raise ValueError(f"nothing was spent over the last {planner.weeks} weeks; set total_budget")
    return total


def optimize_budget(
    mmm: MMM,
    features: pd.DataFrame,
    settings: BudgetSettings,
    truth: GroundTruth | None = None,
    attempts: Sequence[Attempt] = DEFAULT_ATTEMPTS,
    fixed_channels: Sequence[str] = (),
    reference: Mapping[str, float] | None = None,
) -> BudgetResult:
    """Optimise the next ``horizon_weeks`` weeks' allocation of the total budget across channels.

    ``features`` is the canonical frame the model was fitted on. ``attempts`` are tried in turn until one answer
    converges and holds the budget and bounds (see the module docstring for the fallback). ``fixed_channels`` (owned
    media) stay at their current level. ``reference``: horizon totals per channel to use as the "current" spend
    (the bounds, the default total and the comparison are relative to it) instead of the last ``horizon_weeks``
    weeks' spend; the refresh-stability check replans with the previous plan's reference
    (:mod:`mmm_assets.core.evaluation.stability`).
    """
    planner = Planner.build(mmm, features, settings, fixed_channels, reference)
    return solve_total(planner, settings, base_budget(planner, settings), attempts, truth)


def budget_scenarios(
    mmm: MMM, features: pd.DataFrame, settings: BudgetSettings, fixed_channels: Sequence[str] = ()
) -> pd.DataFrame:
    """The optimisation at every ``scenario_levels`` multiple of the base budget, one row per (level, channel).

    The base budget is ``total_budget`` (the current spend when null). Each row carries the level's total, the
    channel's optimised spend and bounds, and the level's expected incremental response (mean and 94 % HDI), so
    the table traces the return curve of the whole budget. One compiled optimiser serves every level.
    ``fixed_channels`` (owned media) stay at their current level.
    """
    planner = Planner.build(mmm, features, settings, fixed_channels)
    base = base_budget(planner, settings)
    frames = []
    for level in settings.scenario_levels:
        result = solve_total(planner, settings, level * base, DEFAULT_ATTEMPTS)
        response = result.optimized_response
        frames.append(
            result.allocation.drop(columns="change_pct").assign(
                level=level,
                total_budget=result.total_budget,
                expected_response_mean=response.mean,
                expected_response_hdi_low=response.hdi_low,
                expected_response_hdi_high=response.hdi_high,
                method=result.method,
                fallback_used=result.fallback_used,
            )
        )
    table = pd.concat(frames, ignore_index=True)
    leading = ["level", "total_budget", "channel"]
    return table[leading + [c for c in table.columns if c not in leading]]
