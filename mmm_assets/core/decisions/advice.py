"""Budget advice: INCREASE / HOLD / REDUCE per channel, with the reason in plain words.

The action follows the optimiser's change of the channel's spend; the reason adds the marginal return against
breakeven when the ROAS table is given. What breakeven is depends on the KPI (``kpi`` in the config, see
``mmm_assets.core.decisions.kpi``): a marginal ROAS of 1 for revenue; for conversions the advice speaks in
marginal CPA (extra spend per extra conversion), which breaks even at the value of a conversion; without that
value no breakeven is known and the channels are ranked by marginal CPA instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pymc_marketing.mmm import MMM

from mmm_assets.core.config import KpiConfig, MMMConfig
from mmm_assets.core.decisions.budget import BudgetResult, optimize_budget
from mmm_assets.core.decisions.kpi import KpiTerms, reciprocal_interval
from mmm_assets.core.evaluation.measurement import AT_PRIOR
from mmm_assets.core.evaluation.stability import previous_reference
from mmm_assets.core.formatting import number
from mmm_assets.core.modelling.posterior import HDI_PROB

NEEDED = ["channel", "mroas_mean", "mroas_hdi_low", "mroas_hdi_high"]
HDI = f"{100 * HDI_PROB:.0f} % HDI"


def _roas_sentence(row: pd.Series, breakeven: float) -> str:
    low, high = row["mroas_hdi_low"], row["mroas_hdi_high"]
    stated = f"Marginal ROAS {number(row['mroas_mean'])} ({HDI} {number(low)} to {number(high)})"
    if low <= breakeven <= high:
        return f"{stated} straddles breakeven ({breakeven:.1f}): whether more spend pays back is uncertain."
    side = "above" if row["mroas_mean"] > breakeven else "below"
    verdict = "pays back" if side == "above" else "does not pay back"
    return f"{stated} is {side} breakeven ({breakeven:.1f}): the next unit of spend {verdict}."


def _cpa_stated(row: pd.Series) -> str:
    """'Marginal CPA 38.2 (94 % HDI 30.1 to 52.3)', or what is undefined when the return can be 0 or below."""
    if np.isnan(row["mcpa_hdi_low"]):
        return (f"Marginal CPA undefined: the next unit of spend may bring no conversions (marginal return "
                f"{number(row['mroas_mean'])} per unit of spend, {HDI} {number(row['mroas_hdi_low'])} to "
                f"{number(row['mroas_hdi_high'])})")
    if np.isnan(row["mcpa_hdi_high"]):
        return (f"Marginal CPA {number(row['mcpa_mean'])} ({HDI} from {number(row['mcpa_hdi_low'])}, no upper "
                "bound: the marginal return may be zero)")
    return f"Marginal CPA {number(row['mcpa_mean'])} ({HDI} {number(row['mcpa_hdi_low'])} to " \
           f"{number(row['mcpa_hdi_high'])})"


def _cpa_sentence(row: pd.Series, terms: KpiTerms, ranks: pd.Series) -> str:
    """Marginal CPA against the value of a conversion, in the same cases as the revenue sentence (the interval is
    the marginal return's mapped through 1 / x, so both agree); without a value, its rank among the channels."""
    stated = _cpa_stated(row)
    value = terms.value_per_unit
    if value is None:
        rank = ranks.get(row.name)
        place = (f"ranks {int(rank)} of {len(ranks)} by marginal CPA (1 = the cheapest next conversion)"
                 if rank == rank else "is not ranked")
        return (f"{stated}; no breakeven is known (set kpi.value_per_unit to what a conversion is worth), so this "
                f"channel {place}.")
    low, high, breakeven = row["mroas_hdi_low"], row["mroas_hdi_high"], 1.0 / value
    worth = f"the value of a conversion ({number(value)})"
    if low <= breakeven <= high:
        return f"{stated} straddles {worth}: whether more spend pays back is uncertain."
    if row["mroas_mean"] > breakeven:
        return f"{stated} is below {worth}: the next conversion costs less than it is worth."
    return f"{stated} is above {worth}: the next conversion costs more than it is worth."


def _marginal_table(roas: pd.DataFrame, terms: KpiTerms) -> tuple[pd.DataFrame, pd.Series]:
    """The ROAS table by channel (with the marginal CPA for conversions) and each channel's rank by marginal CPA
    (1 = cheapest; empty for revenue; channels whose marginal CPA is undefined are not ranked)."""
    absent = [c for c in NEEDED if c not in roas.columns]
    if absent:
        raise ValueError(f"roas table lacks column(s) {absent}; it needs {NEEDED}")
    marginal = roas.set_index("channel")
    if not terms.conversions:
        return marginal, pd.Series(dtype=float)
    costs = reciprocal_interval(marginal["mroas_mean"], marginal["mroas_hdi_low"], marginal["mroas_hdi_high"])
    marginal = marginal.assign(**{f"mcpa_{c}": costs[c] for c in costs.columns})
    return marginal, marginal["mcpa_mean"].rank(method="min")


def recommendations(
    budget: BudgetResult, roas: pd.DataFrame | None = None, hold_band_pct: float = 5.0, kpi: KpiConfig | None = None
) -> pd.DataFrame:
    """INCREASE / HOLD / REDUCE per channel with the reason in plain words.

    The action follows the optimiser's change: beyond ``+hold_band_pct`` % it is INCREASE, below
    ``-hold_band_pct`` % REDUCE, HOLD in between. With a ``roas`` table (``channel, mroas_mean, mroas_hdi_low,
    mroas_hdi_high``) the reason also compares the marginal return with breakeven: marginal ROAS against 1 for
    revenue (``kpi`` None or revenue), marginal CPA against ``kpi.value_per_unit`` for conversions, whose table also
    gets ``mcpa_mean`` and ``mcpa_rank`` (1 = the cheapest next conversion) when the ROAS table is given. A channel
    whose ``roas_basis`` says its ROAS is still at its prior gets that said, and what would measure it.
    """
    if hold_band_pct < 0:
        raise ValueError(f"hold_band_pct must be >= 0, got {hold_band_pct}")
    terms = KpiTerms.of(kpi)
    marginal, ranks = _marginal_table(roas, terms) if roas is not None else (None, pd.Series(dtype=float))
    rows = []
    for row in budget.allocation.itertuples(index=False):
        change = row.change_pct
        action = "INCREASE" if change > hold_band_pct else "REDUCE" if change < -hold_band_pct else "HOLD"
        amounts = (f"{number(row.current_spend)} to {number(row.optimized_spend)} over the next "
                   f"{budget.horizon_weeks} weeks")
        size = f"{change:+.1f} %" if np.isfinite(change) else "new spend"
        if action == "HOLD":
            reason = f"The optimiser keeps spend within {hold_band_pct:g} % of current: {amounts} ({size})."
        else:
            reason = f"The optimiser moves spend {'up' if action == 'INCREASE' else 'down'} from {amounts} ({size})."
        if np.isclose(row.optimized_spend, row.upper_bound) and action == "INCREASE":
            reason += " It stops at the upper bound, so it would move further if allowed."
        elif np.isclose(row.optimized_spend, row.lower_bound) and action == "REDUCE":
            reason += " It stops at the lower bound, so it would move further if allowed."
        extra = {}
        if marginal is not None:
            known = row.channel in marginal.index
            if not known:
                reason += f" No marginal {'CPA' if terms.conversions else 'ROAS'} known."
            elif terms.conversions:
                reason += " " + _cpa_sentence(marginal.loc[row.channel], terms, ranks)
            else:
                reason += " " + _roas_sentence(marginal.loc[row.channel], terms.breakeven_return)
            if known and marginal.loc[row.channel].get("roas_basis") == AT_PRIOR:
                reason += (" The data did not measure this channel's ROAS (it is still its prior's), so this advice "
                           "restates the priors: a lift test or an ROI prior would measure it.")
            if terms.conversions:
                extra = {"mcpa_mean": marginal["mcpa_mean"].get(row.channel, np.nan),
                         "mcpa_rank": ranks.get(row.channel, np.nan)}
        rows.append(
            {
                "channel": row.channel,
                "action": action,
                "change_pct": change,
                "current_spend": row.current_spend,
                "optimized_spend": row.optimized_spend,
                **extra,
                "reason": reason,
            }
        )
    return pd.DataFrame(rows)


def replanned_advice(
    mmm: MMM, features: pd.DataFrame, cfg: MMMConfig, previous: pd.DataFrame | None
) -> pd.DataFrame | None:
    """The advice of model ``mmm`` (fitted on ``features``) at the spend the ``previous`` advice planned around, and
    so at its total when the total is the default: what the refresh-stability check compares with the previous
    advice (:mod:`mmm_assets.core.evaluation.stability`). None when the previous advice has no reference spend or
    covers other channels (the check then compares the advice as planned)."""
    reference = previous_reference(previous)
    if reference is None or set(reference) != set(mmm.channel_columns):
        return None
    plan = optimize_budget(mmm, features, cfg.decisions.budget, fixed_channels=cfg.owned_channels,
                           reference=reference)
    return recommendations(plan, None, cfg.decisions.hold_band_pct, cfg.kpi)
