"""Budget advice: INCREASE / HOLD / REDUCE per channel, with the reason in plain words.

The action follows the optimiser's change of the channel's spend; the reason adds the marginal ROAS against
breakeven when the ROAS table is given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmm_assets.core.decisions.budget import BudgetResult
from mmm_assets.core.modelling.posterior import HDI_PROB

#: Marginal ROAS at which the next unit of spend exactly pays back.
BREAKEVEN_ROAS = 1.0


def _roas_sentence(row: pd.Series) -> str:
    low, high = row["mroas_hdi_low"], row["mroas_hdi_high"]
    stated = f"Marginal ROAS {row['mroas_mean']:.2f} ({100 * HDI_PROB:.0f} % HDI {low:.2f} to {high:.2f})"
    if low <= BREAKEVEN_ROAS <= high:
        return f"{stated} straddles breakeven ({BREAKEVEN_ROAS:.1f}): whether more spend pays back is uncertain."
    side = "above" if row["mroas_mean"] > BREAKEVEN_ROAS else "below"
    verdict = "pays back" if side == "above" else "does not pay back"
    return f"{stated} is {side} breakeven ({BREAKEVEN_ROAS:.1f}): the next unit of spend {verdict}."


def recommendations(budget: BudgetResult, roas: pd.DataFrame | None = None, hold_band_pct: float = 5.0) -> pd.DataFrame:
    """INCREASE / HOLD / REDUCE per channel with the reason in plain words.

    The action follows the optimiser's change: beyond ``+hold_band_pct`` % it is INCREASE, below
    ``-hold_band_pct`` % REDUCE, HOLD in between. With a ``roas`` table (``channel, mroas_mean, mroas_hdi_low,
    mroas_hdi_high``) the reason also compares the marginal ROAS with breakeven.
    """
    if hold_band_pct < 0:
        raise ValueError(f"hold_band_pct must be >= 0, got {hold_band_pct}")
    marginal = None
    if roas is not None:
        needed = ["channel", "mroas_mean", "mroas_hdi_low", "mroas_hdi_high"]
        absent = [c for c in needed if c not in roas.columns]
        if absent:
            raise ValueError(f"roas table lacks column(s) {absent}; it needs {needed}")
        marginal = roas.set_index("channel")
    rows = []
    for row in budget.allocation.itertuples(index=False):
        change = row.change_pct
        action = "INCREASE" if change > hold_band_pct else "REDUCE" if change < -hold_band_pct else "HOLD"
        amounts = f"{row.current_spend:,.0f} to {row.optimized_spend:,.0f} over the next {budget.horizon_weeks} weeks"
        size = f"{change:+.1f} %" if np.isfinite(change) else "new spend"
        if action == "HOLD":
            reason = f"The optimiser keeps spend within {hold_band_pct:g} % of current: {amounts} ({size})."
        else:
            reason = f"The optimiser moves spend {'up' if action == 'INCREASE' else 'down'} from {amounts} ({size})."
        if np.isclose(row.optimized_spend, row.upper_bound) and action == "INCREASE":
            reason += " It stops at the upper bound, so it would move further if allowed."
        elif np.isclose(row.optimized_spend, row.lower_bound) and action == "REDUCE":
            reason += " It stops at the lower bound, so it would move further if allowed."
        if marginal is not None:
            known = row.channel in marginal.index
            reason += " " + (_roas_sentence(marginal.loc[row.channel]) if known else "No marginal ROAS known.")
        rows.append(
            {
                "channel": row.channel,
                "action": action,
                "change_pct": change,
                "current_spend": row.current_spend,
                "optimized_spend": row.optimized_spend,
                "reason": reason,
            }
        )
    return pd.DataFrame(rows)
