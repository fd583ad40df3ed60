"""What the KPI's kind (``kpi`` in the config) means for the decisions: costs per conversion, breakeven, value.

The model's returns are KPI units per unit of spend: money back per unit of spend for revenue (ROAS), conversions
per unit of spend for a counted KPI (sign-ups, sales, leads). For conversions practitioners read the reciprocal,
the cost per acquisition: CPA = spend / incremental conversions, and the marginal CPA = extra spend / extra
conversions at the current spend. Google Meridian calls the same quantity CPIK (cost per incremental KPI, the
reciprocal of its ROI draws when ``revenue_per_kpi`` is not set); PyMC-Marketing's
``mmm.incrementality.spend_over_contribution`` computes it (its docs call it CAC when the target counts customers).

Breakeven: revenue pays back at a marginal ROAS of 1; a conversion pays back when its marginal CPA is at most what
it is worth (``kpi.value_per_unit``, Meridian's ``revenue_per_kpi``). Without that value no breakeven is known, so
channels can only be ranked by marginal CPA. The budget optimiser maximises expected incremental conversions;
with a constant value per conversion that is the same allocation as maximising their value (a positive constant
factor moves neither the mean's nor a quantile's optimum), so the value is reported next to the conversions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mmm_assets.core.config import KpiConfig
from mmm_assets.core.config.kpi import breakeven_return

if TYPE_CHECKING:  # the budget module imports PyMC-Marketing; plots import this one while the code location loads
    from mmm_assets.core.decisions.budget import Interval

REVENUE = "revenue"
CONVERSIONS = "conversions"
#: The return columns of the ROAS table and the cost columns derived from them for conversions.
COST_OF_RETURN = {"roas": "cpa", "mroas": "mcpa"}
ESTIMATES = ("mean", "hdi_low", "hdi_high")


@dataclass(frozen=True)
class KpiTerms:
    """One KPI's kind, name and value per unit, hashable (plots are remembered by their arguments), with the words
    the tables, plots, report and advice use for it."""

    type: str = REVENUE
    label: str = REVENUE
    value_per_unit: float | None = None

    @classmethod
    def of(cls, kpi: KpiConfig | None) -> KpiTerms:
        """The terms of a config's ``kpi`` section; revenue when None."""
        if kpi is None:
            return cls()
        return cls(kpi.type, kpi.label, kpi.value_per_unit)

    @property
    def conversions(self) -> bool:
        """True when the KPI counts conversions (costs per acquisition), False for revenue."""
        return self.type == CONVERSIONS

    @property
    def breakeven_return(self) -> float | None:
        """KPI units per unit of spend at which spend pays for itself (config.kpi.breakeven_return)."""
        return breakeven_return(self.type, self.value_per_unit)

    @property
    def breakeven_cost(self) -> float | None:
        """Marginal CPA at which the next conversion pays for itself (its value), None when unknown or revenue."""
        return self.value_per_unit if self.conversions else None

    @property
    def cost_prefix(self) -> str:
        """Column prefix of the average cost measure shown for this KPI: ``cpa`` for conversions, ``roas`` else."""
        return "cpa" if self.conversions else "roas"

    def describe(self) -> str:
        """One line for metadata and the report: what the target measures and what it is worth."""
        if not self.conversions:
            return f"{self.label} (revenue: money, breakeven at ROAS 1)"
        worth = (f"worth {self.value_per_unit:g} each: breakeven at a marginal CPA of {self.value_per_unit:g}"
                 if self.value_per_unit is not None else "value per conversion not set: no breakeven")
        return f"{self.label} (conversions, {worth})"


def reciprocal_interval(mean: pd.Series, low: pd.Series, high: pd.Series) -> pd.DataFrame:
    """Costs (spend per KPI unit) from returns (KPI units per unit of spend): mean and interval, per row.

    ``mean``: 1 / the mean return, i.e. the spend divided by the posterior-mean incremental KPI (what a cost per
    expected conversion is). The interval is the return's HDI mapped through 1 / x: [1 / high, 1 / low]. On positive
    returns 1 / x is decreasing, so it holds the same 94 % of the draws and agrees with the return about breakeven
    (low <= 1/v <= high exactly when 1/high <= v <= 1/low); an HDI of the cost draws themselves would be a slightly
    different interval, stretched by the reciprocal's skew. A cost is undefined (NaN) where the return can be 0 or
    below: the upper bound when the HDI's low end is <= 0 (the cost could be arbitrarily high), every column when
    the high end (or the mean) is.
    """
    def inverse(values: pd.Series) -> np.ndarray:
        values = values.to_numpy(dtype=float)
        with np.errstate(divide="ignore"):
            return np.where(values > 0, 1.0 / values, np.nan)

    cost_low = inverse(high)
    return pd.DataFrame(
        {"mean": np.where(np.isnan(cost_low), np.nan, inverse(mean)), "hdi_low": cost_low,
         "hdi_high": np.where(np.isnan(cost_low), np.nan, inverse(low))},
        index=mean.index,
    )


def with_costs(roas: pd.DataFrame, terms: KpiTerms) -> pd.DataFrame:
    """The ROAS table with, for conversions, ``cpa_mean/_hdi_low/_hdi_high`` (spend / incremental conversions
    over the window) and ``mcpa_*`` (marginal CPA: extra spend / extra conversions of a 1 % increase) next to the
    returns they come from; unchanged for revenue. See :func:`reciprocal_interval` for the means and intervals."""
    if not terms.conversions:
        return roas
    table = roas.copy()
    for source, target in COST_OF_RETURN.items():
        if f"{source}_mean" not in table.columns:
            continue
        costs = reciprocal_interval(*(table[f"{source}_{e}"] for e in ESTIMATES))
        at = table.columns.get_loc(f"{source}_hdi_high") + 1
        for offset, estimate in enumerate(ESTIMATES):
            table.insert(at + offset, f"{target}_{estimate}", costs[estimate].to_numpy())
    return table


def with_value(scenarios: pd.DataFrame, terms: KpiTerms) -> pd.DataFrame:
    """The budget scenarios with ``expected_value_mean/_hdi_low/_hdi_high`` (expected incremental conversions x
    value per conversion, money over the horizon) when the KPI counts conversions of a known value; unchanged
    otherwise (revenue is already money, and an unknown value has none)."""
    if not terms.conversions or terms.value_per_unit is None:
        return scenarios
    table = scenarios.copy()
    at = table.columns.get_loc("expected_response_hdi_high") + 1
    for offset, estimate in enumerate(ESTIMATES):
        table.insert(at + offset, f"expected_value_{estimate}",
                     table[f"expected_response_{estimate}"].to_numpy() * terms.value_per_unit)
    return table


def value_of(interval: Interval, terms: KpiTerms) -> Interval | None:
    """Expected conversions (mean and HDI) as money at the value per conversion; None for revenue (already money)
    or when the value is not known. A positive constant factor maps the HDI's bounds onto the value's HDI."""
    if not terms.conversions or terms.value_per_unit is None:
        return None
    value = terms.value_per_unit
    return replace(interval, mean=interval.mean * value, hdi_low=interval.hdi_low * value,
                   hdi_high=interval.hdi_high * value)
