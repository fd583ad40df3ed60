"""What-if plans: CSV files of planned spend, read like landing files and scored by the champion.

A plan is one CSV file in ``decisions.planner.plans_dir``; its name is the file's stem. Two shapes:

- ``channel,spend``: one row per model channel, the total over the budget's horizon, spread evenly over its weeks;
- ``date`` plus one column per model channel: the weekly spend, on consecutive weeks starting the week after the
  data (any length up to 52 weeks), so a plan can be flighted.

Every channel of the model must be given (0 for none). A bad file raises :class:`InputError` naming the file, the
line and the column, before anything is scored. Each plan's incremental response is evaluated draw by draw with
PyMC-Marketing's budget optimiser (``evaluate_response_distribution``; a flighted plan through its
``budget_distribution_over_period``), the same response the optimised budget and the goal plans are measured with,
and compared with them and with today's plan, like PyMC-Marketing's ``evaluate_plan`` scores a proposed plan.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from pymc_marketing.mmm import MMM
from pymc_marketing.mmm.utility import average_response

from mmm_assets.core.config import DEFAULT_MAX_ABS_VALUE, DEFAULT_MAX_FILE_MB, BudgetSettings
from mmm_assets.core.data.ingest import cell_text, cells_at, parse_dates, parse_numbers
from mmm_assets.core.data.landing_csv import read_csv_columns
from mmm_assets.core.decisions.budget import CHANNEL_DIM, WEEK, Interval, Planner
from mmm_assets.core.errors import InputError, day, raise_if_problems
from mmm_assets.core.inference.compiling import QUICK_MODE, quick_compile
from mmm_assets.core.stores.duckdb_store import MB

DATE = "date"
TOTALS = ("channel", "spend")
MAX_PLAN_WEEKS = 52
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,79}")


@dataclass(frozen=True)
class WhatIfPlan:
    """A plan read from ``file``: its weekly spend (rows: consecutive weeks from the week after the data, columns:
    the model's channels)."""

    name: str
    file: Path
    weekly: pd.DataFrame

    @property
    def totals(self) -> np.ndarray:
        """Spend per channel over the plan's weeks."""
        return self.weekly.sum().to_numpy(dtype=float)


def plan_files(folder: Path) -> list[Path]:
    """The plan files of ``folder`` (``*.csv``), by name; none when the folder does not exist yet."""
    return sorted(p for p in folder.glob("*.csv") if p.is_file()) if folder.is_dir() else []


def read_plans(folder: Path, channels: Sequence[str], start: pd.Timestamp, horizon_weeks: int) -> list[WhatIfPlan]:
    """Every plan of ``folder``, validated; one :class:`InputError` lists every bad file's problems."""
    plans, problems = [], []
    for path in plan_files(folder):
        try:
            plans.append(read_plan(path, channels, start, horizon_weeks))
        except InputError as err:
            problems.append(str(err))
    if problems:
        raise InputError(f"{len(problems)} plan file(s) in {folder} rejected; nothing was scored:\n" + "\n".join(problems))
    return plans


def read_plan(path: Path, channels: Sequence[str], start: pd.Timestamp, horizon_weeks: int) -> WhatIfPlan:
    """One plan file (see the module docstring) as weekly spend from ``start``; :class:`InputError` when bad."""
    if not _NAME.fullmatch(path.stem):
        raise InputError(f"{path}: a plan's name (the file name) must be letters, digits, ' ', '_', '.' or '-', "
                         "starting with a letter or digit, at most 80 characters")
    if path.stat().st_size > DEFAULT_MAX_FILE_MB * MB:
        raise InputError(f"{path}: over {DEFAULT_MAX_FILE_MB:g} MB; a plan holds a few weeks of spend per channel")
    header, cells = read_csv_columns(path, {DATE, *TOTALS, *channels})
    if set(TOTALS) <= set(header):
        return WhatIfPlan(path.stem, path, _spread(path, header, cells, channels, start, horizon_weeks))
    if DATE in header:
        return WhatIfPlan(path.stem, path, _weekly(path, header, cells, channels, start))
    raise InputError(
        f"{path}: line 1 must name either the columns 'channel' and 'spend' (totals over the horizon) or 'date' and "
        f"one column per channel ({', '.join(channels)}); found {', '.join(header)}"
    )


def _spread(path: Path, header: list[str], cells: pd.DataFrame, channels: Sequence[str], start: pd.Timestamp,
            weeks: int) -> pd.DataFrame:
    """A ``channel,spend`` plan as even weekly spend over the horizon."""
    extra = [c for c in header if c not in TOTALS]
    names = cell_text(cells["channel"])
    spend, problems = parse_numbers(cells["spend"], "line", DEFAULT_MAX_ABS_VALUE)
    problems = [f"column 'spend': {p}" for p in problems]
    if extra:
        problems.append(f"columns {extra} are not part of a channel,spend plan; remove them")
    unknown = ~names.isin(channels)
    if unknown.any():
        problems.append(f"column 'channel': not a model channel at {cells_at(unknown, 'line', names)}; the channels "
                        f"are {', '.join(channels)}")
    twice = names.duplicated(keep=False) & ~unknown
    if twice.any():
        problems.append(f"column 'channel': a channel given twice at {cells_at(twice, 'line', names)}")
    negative = spend < 0
    if negative.any():
        problems.append(f"column 'spend': negative spend at {cells_at(negative, 'line', spend.map('{:g}'.format))}")
    missing = [c for c in channels if c not in set(names)]
    if missing:
        problems.append(f"no row for channel(s) {', '.join(missing)}; give every channel (0 for no spend)")
    raise_if_problems(str(path), problems)
    totals = pd.Series(spend.to_numpy(), index=names.to_numpy())
    dates = pd.date_range(start, periods=weeks, freq=WEEK)
    return pd.DataFrame({c: np.full(weeks, totals[c] / weeks) for c in channels}, index=dates)


def _weekly(path: Path, header: list[str], cells: pd.DataFrame, channels: Sequence[str],
            start: pd.Timestamp) -> pd.DataFrame:
    """A ``date`` + channels plan as weekly spend, on consecutive weeks from ``start``."""
    problems = []
    extra = [c for c in header if c not in {DATE, *channels}]
    missing = [c for c in channels if c not in header]
    if extra:
        problems.append(f"columns {extra} are not model channels; the channels are {', '.join(channels)}")
    if missing:
        problems.append(f"no column for channel(s) {', '.join(missing)}; give every channel (0 for no spend)")
    text = cell_text(cells[DATE])
    dates = parse_dates(text.where(text != "")).dt.normalize()
    bad = dates.isna()
    if bad.any():
        problems.append(f"column 'date': missing or not an ISO-8601 date (YYYY-MM-DD) at {cells_at(bad, 'line', text)}")
    values = {}
    for channel in (c for c in channels if c in cells.columns):
        values[channel], found = parse_numbers(cells[channel], "line", DEFAULT_MAX_ABS_VALUE)
        problems += [f"column {channel!r}: {p}" for p in found]
        negative = values[channel] < 0
        if negative.any():
            problems.append(f"column {channel!r}: negative spend at {cells_at(negative, 'line', values[channel].map('{:g}'.format))}")
    if not bad.any():
        problems += _calendar_problems(dates, start)
    raise_if_problems(str(path), problems)
    return pd.DataFrame({c: values[c].to_numpy() for c in channels}, index=pd.DatetimeIndex(dates.to_numpy()))


def _calendar_problems(dates: pd.Series, start: pd.Timestamp) -> list[str]:
    """Consecutive weeks from ``start`` (the week after the data), at most MAX_PLAN_WEEKS of them."""
    expected = pd.date_range(start, periods=len(dates), freq=WEEK)
    if len(dates) > MAX_PLAN_WEEKS:
        return [f"{len(dates)} weeks; a plan covers at most {MAX_PLAN_WEEKS}"]
    off = dates.to_numpy() != expected.to_numpy()
    if not off.any():
        return []
    first = int(np.argmax(off))
    line = dates.index[first]
    return [f"column 'date': line {line} is {day(dates.iloc[first])} where the week {day(expected[first])} was "
            f"expected; a plan's weeks are consecutive, one row each, from {day(start)} (the week after the data)"]


@dataclass(frozen=True)
class Scored:
    """A plan's spend and its incremental response draws (KPI units over its weeks and their carry-over)."""

    name: str
    source: str
    weeks: int
    spend: pd.Series
    draws: np.ndarray


def flighted_response(planner: Planner, weekly: pd.DataFrame) -> np.ndarray:
    """Incremental response draws of weekly spend (rows: consecutive weeks from the planner's start): the library's
    optimiser over the plan's own weeks, its budget spread by the plan's weekly shares."""
    totals = weekly.sum().to_numpy(dtype=float)
    if len(weekly) == planner.weeks and np.allclose(weekly.to_numpy(), totals / len(weekly)):
        return planner.response(totals)  # an even plan over the horizon: the compiled optimiser already at hand
    weeks = len(weekly)
    shares = np.where(totals > 0, weekly.to_numpy() / np.where(totals > 0, totals, 1.0), 1.0 / weeks)
    factors = xr.DataArray(shares, dims=["date", CHANNEL_DIM],
                           coords={"date": np.arange(weeks), CHANNEL_DIM: planner.channels})
    with quick_compile():
        optimizer = planner.mmm.budget_optimizer(
            planner.start, planner.start + (weeks - 1) * WEEK, utility_function=average_response,
            compile_kwargs={"mode": QUICK_MODE}, budget_distribution_over_period=factors,
        )

    def level(values: np.ndarray) -> xr.DataArray:
        return xr.DataArray(values / weeks, dims=[CHANNEL_DIM], coords={CHANNEL_DIM: planner.channels})

    response = optimizer.evaluate_response_distribution(level(totals)).to_numpy()
    return response - optimizer.evaluate_response_distribution(level(np.zeros_like(totals))).to_numpy()


CURRENT, OPTIMIZED = "current", "optimized"


@dataclass(frozen=True)
class PlanEvaluation:
    """Every plan side by side (:func:`evaluation_table`) and their spend mixes (:func:`spend_table`)."""

    table: pd.DataFrame
    spend: pd.DataFrame

    def long(self) -> pd.DataFrame:
        """One row per (plan, channel): the plan's figures with its spend and share of each channel, as stored."""
        return self.table.merge(self.spend, on="plan", how="left")


def evaluate_plans(
    mmm: MMM,
    features: pd.DataFrame,
    settings: BudgetSettings,
    optimized_spend: Sequence[float],
    goals: Sequence[tuple[str, Sequence[float]]] = (),
    plans_dir: Path | None = None,
) -> PlanEvaluation:
    """Score today's plan, the optimised budget, the goal plans (name, horizon totals per channel, in the model's
    channel order) and the what-if plans of ``plans_dir`` with the same posterior, and lay them side by side.

    The what-if files are all read and checked first: a bad one raises :class:`InputError` and nothing is scored.
    """
    planner = Planner.build(mmm, features, settings)
    what_ifs = read_plans(plans_dir, planner.channels, planner.start, planner.weeks) if plans_dir else []
    taken = {CURRENT, OPTIMIZED, *(name for name, _ in goals)}
    clashes = [f"{p.file}: the plan name {p.name!r} is taken by a {'goal' if p.name in dict(goals) else 'built-in'} "
               "plan; rename the file" for p in what_ifs if p.name in taken]
    if clashes:
        raise InputError("\n".join(clashes))

    def even(name: str, source: str, totals: Sequence[float]) -> Scored:
        spend = np.asarray(totals, dtype=float)
        return Scored(name, source, planner.weeks, pd.Series(spend, index=planner.channels), planner.response(spend))

    scored = [even(CURRENT, "current", planner.current), even(OPTIMIZED, "optimized", optimized_spend)]
    scored += [even(name, "goal", totals) for name, totals in goals]
    scored += [Scored(p.name, "what_if", len(p.weekly), pd.Series(p.totals, index=planner.channels),
                      flighted_response(planner, p.weekly)) for p in what_ifs]
    return PlanEvaluation(evaluation_table(scored, OPTIMIZED, CURRENT), spend_table(scored))


def evaluation_table(scored: Sequence[Scored], optimized: str, current: str) -> pd.DataFrame:
    """One row per plan, side by side: total spend, expected incremental response (mean, 94 % HDI), return, risk
    (the response's posterior standard deviation and its 5 % quantile), and the draw-by-draw difference to the
    plans named ``optimized`` and ``current`` with the probability of beating the current plan."""
    by_name = {s.name: s for s in scored}
    rows = []
    for s in scored:
        total = float(s.spend.sum())
        response = Interval.of(s.draws)
        roas = Interval.of(s.draws / total) if total > 0 else Interval(np.nan, np.nan, np.nan)
        versus_optimized = Interval.of(s.draws - by_name[optimized].draws)
        versus_current = Interval.of(s.draws - by_name[current].draws)
        rows.append({
            "plan": s.name, "source": s.source, "weeks": s.weeks, "total_spend": total,
            "expected_response_mean": response.mean, "expected_response_hdi_low": response.hdi_low,
            "expected_response_hdi_high": response.hdi_high,
            "roas_mean": roas.mean, "roas_hdi_low": roas.hdi_low, "roas_hdi_high": roas.hdi_high,
            "response_sd": float(s.draws.std(ddof=1)), "response_p05": float(np.quantile(s.draws, 0.05)),
            "vs_optimized_mean": versus_optimized.mean, "vs_optimized_hdi_low": versus_optimized.hdi_low,
            "vs_optimized_hdi_high": versus_optimized.hdi_high,
            "vs_current_mean": versus_current.mean, "vs_current_hdi_low": versus_current.hdi_low,
            "vs_current_hdi_high": versus_current.hdi_high,
            "prob_better_than_current": float((s.draws > by_name[current].draws).mean()),
        })
    return pd.DataFrame(rows)


def spend_table(scored: Sequence[Scored]) -> pd.DataFrame:
    """Each plan's spend mix: one row per (plan, channel), the total over its weeks and its share."""
    frames = [pd.DataFrame({"plan": s.name, "channel": s.spend.index, "spend": s.spend.to_numpy(),
                            "share_pct": 100 * s.spend.to_numpy() / max(float(s.spend.sum()), 1e-300)})
              for s in scored]
    return pd.concat(frames, ignore_index=True)
