"""Return on ad spend of a fitted MMM: average and marginal ROAS, break-even spend and steady-state response curves.

Units: spend is in the units of the channel columns of the feature frame (money), contributions are in target
units (``y``), so a ROAS is target units per unit of spend: money per money for revenue, conversions per unit of
spend for a counted KPI, whose table also carries the cost per acquisition (``mmm_assets.core.decisions.kpi``). Every interval is a 94 % HDI (``HDI_PROB``) over the
posterior draws; ``*_mean`` is the posterior mean.

Window totals (contribution, ROAS, marginal ROAS) come from PyMC-Marketing's counterfactual incrementality
(``mmm.incrementality``): the model's prediction with the actual spend minus the prediction with the changed spend,
summed over the fitted weeks, with adstock carry-over. Carry-over landing after the last fitted week is not observed
and not counted, which slightly understates the return of the last ``l_max`` weeks' spend. (``mmm.summary.roas(
method="incremental")`` wraps the same call, but its data validation refuses this project's models, whose
posterior predictive holds ``y_original_scale`` and not ``y``.)

The break-even search and the response curves need the model at spend levels it was not fitted on, so they are
evaluated from the posterior draws of the model's own parameters with the model's own adstock and saturation
functions, whatever their family (:class:`mmm_assets.core.transforms.media.ChannelMedia`), times
``target_scale``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr
from pymc_marketing.mmm import MMM
from scipy.optimize import brentq

from mmm_assets.core.config import KpiConfig
from mmm_assets.core.decisions.kpi import KpiTerms, with_costs
from mmm_assets.core.inference.compiling import quick_compile
from mmm_assets.core.modelling.posterior import mean_hdi
from mmm_assets.core.transforms.media import SAMPLE, ChannelMedia, WindowResponse

#: Proportional spend increase that defines the marginal ROAS (1 % more spend in every week).
MARGINAL_STEP = 0.01
#: Break-even search range, as multiples of the channel's current spend.
SEARCH_MULTIPLES = (1e-3, 100.0)


def checked_spend(mmm: MMM, features: pd.DataFrame) -> pd.DataFrame:
    """The channel columns of ``features``, after checking that the model was fitted on them."""
    spend = features[mmm.channel_columns]
    fitted = mmm.idata.constant_data["channel_data"].sel(channel=mmm.channel_columns)
    if spend.shape != fitted.shape or not np.allclose(spend.to_numpy(), fitted.to_numpy()):
        raise ValueError("features are not the weekly spend the model was fitted on")
    return spend


def incremental_contribution(mmm: MMM) -> xr.DataArray:
    """Each channel's incremental contribution over the fitted window, per draw (chain, draw, channel; KPI units):
    the prediction with the actual spend minus the prediction with none of the channel's spend, carry-over
    included (PyMC-Marketing's counterfactual incrementality)."""
    with quick_compile():
        return mmm.incrementality.compute_incremental_contribution(frequency="all_time").sel(
            channel=mmm.channel_columns)


def _breakeven_multiple(window: WindowResponse, spend: float, breakeven: float = 1.0) -> float:
    """Multiple ``k`` of the historical weekly spend at which the posterior-mean marginal ROAS falls to
    ``breakeven`` (1 for revenue, 1 / value per conversion for conversions).

    Marginal ROAS at ``k`` is the return of a further ``MARGINAL_STEP`` proportional increase, as in
    ``channel_roas``'s ``mroas``; it decreases with ``k`` (concave saturation). Returns 0.0 when it is below
    breakeven already at the low end of ``SEARCH_MULTIPLES`` and ``inf`` when it is still above at the high end.
    ``window``: the channel's total over the fitted weeks at a multiple of its spend; ``spend`` its total at 1.
    """

    def excess(k: float) -> float:
        gain = float(np.mean(window.total((1.0 + MARGINAL_STEP) * k) - window.total(k)))
        return gain / (MARGINAL_STEP * k * spend) / breakeven - 1

    low, high = SEARCH_MULTIPLES
    if excess(low) <= 0:
        return 0.0
    if excess(high) > 0:
        return math.inf
    return brentq(excess, low, high, rtol=1e-8)


def channel_roas(
    mmm: MMM, features: pd.DataFrame, kpi: KpiConfig | None = None, contribution: xr.DataArray | None = None
) -> pd.DataFrame:
    """Average and marginal ROAS of every channel over the fitted window, with the break-even weekly spend.

    ``features`` is the canonical frame the model was fitted on (``date``, ``y``, channel columns...); ``kpi``
    the config's ``kpi`` section (revenue when None); ``contribution`` the model's ``incremental_contribution``
    when already computed. "Breakeven" below is a marginal ROAS of 1 for revenue and
    of 1 / ``value_per_unit`` for conversions (a marginal CPA equal to the value of a conversion); for
    conversions of unknown value there is none and the break-even columns are NaN. One row per channel:

    - ``channel``; ``spend``: total spend over the window (spend units).
    - ``contribution_mean/_hdi_low/_hdi_high``: incremental contribution of the channel's spend over the window
      (target units): prediction with the actual spend minus prediction with none of this channel's spend.
    - ``roas_mean/_hdi_low/_hdi_high``: contribution / spend (target units per unit of spend), per draw.
    - ``mroas_mean/_hdi_low/_hdi_high``: marginal ROAS at the current spend: the extra contribution (incl.
      carry-over) of a 1 % increase of this channel's spend in every week, divided by the extra spend.
    - ``current_weekly_spend``: mean weekly spend over the window (spend units).
    - for conversions, ``cpa_mean/_hdi_low/_hdi_high`` and ``mcpa_*`` after the returns they invert: cost per
      acquisition (spend / incremental conversions) and marginal CPA (see ``kpi.reciprocal_interval``).
    - ``breakeven_weekly_spend``: the mean weekly spend at which the posterior-mean marginal ROAS falls to
      breakeven when the historical weekly pattern is scaled up or down proportionally (spend units). Searched
      between 0.1 % and 100x the current spend: 0.0 when the marginal ROAS is below breakeven even at 0.1 % of the
      current spend, ``inf`` when it is still above at 100x. Above ``current_weekly_spend`` exactly when
      ``mroas_mean`` > breakeven.
    - ``headroom_pct``: (breakeven / current - 1) x 100: how much the spend could grow (positive) or should shrink
      (negative) before the next unit of spend stops paying for itself; -100 for a break-even of 0, ``inf`` for
      an infinite one, NaN without a breakeven.
    """
    spend = checked_spend(mmm, features)
    channels = mmm.channel_columns
    terms = KpiTerms.of(kpi)
    breakeven = terms.breakeven_return
    contribution = incremental_contribution(mmm) if contribution is None else contribution.sel(channel=channels)
    with quick_compile():
        mroas = mmm.incrementality.marginal_contribution_over_spend(
            frequency="all_time", spend_increase_pct=MARGINAL_STEP
        ).sel(channel=channels)

    # the library's contribution_over_spend is this same counterfactual divided by the spend: computed once here
    # (~0.3 s per call on the reference model), with its convention that zero spend gives NaN
    totals = xr.DataArray(spend.sum().to_numpy(dtype=float), dims=["channel"], coords={"channel": channels})
    roas = contribution / totals.where(totals != 0)
    multiples = [
        _breakeven_multiple(ChannelMedia.of(mmm, c).window(spend[c].to_numpy()), float(spend[c].sum()), breakeven)
        if breakeven is not None
        else math.nan
        for c in channels
    ]
    current = spend.mean().to_numpy()
    frame = pd.concat(
        [
            pd.DataFrame({"channel": channels, "spend": spend.sum().to_numpy()}),
            mean_hdi(contribution, "contribution_"),
            mean_hdi(roas, "roas_"),
            mean_hdi(mroas, "mroas_"),
        ],
        axis=1,
    )
    frame["breakeven_weekly_spend"] = np.array(multiples) * current
    frame["current_weekly_spend"] = current
    frame["headroom_pct"] = (np.array(multiples) - 1.0) * 100.0
    return with_costs(frame, terms)


def response_curves(
    mmm: MMM, features: pd.DataFrame, grid_points: int = 41, max_multiple: float = 2.0
) -> pd.DataFrame:
    """Expected steady-state weekly contribution of each channel over a grid of constant weekly spend levels.

    Steady state: the same spend every week, whose (normalised) adstock equals the spend itself, so the weekly
    contribution is the model's saturation of ``spend / channel_scale`` times ``target_scale``, per draw.
    The grid has ``grid_points`` levels from 0 to ``max_multiple`` x the channel's historical maximum weekly spend,
    plus the channel's current (mean) weekly spend. Long table, one row per (channel, spend level):

    - ``channel``; ``weekly_spend``: constant weekly spend (spend units).
    - ``contribution_mean/_hdi_low/_hdi_high``: weekly contribution at that spend (target units per week).
    - ``is_current``: True on the one row per channel at the current mean weekly spend.
    """
    spend = checked_spend(mmm, features)
    parts = []
    for channel in mmm.channel_columns:
        current = float(spend[channel].mean())
        levels = np.union1d(np.linspace(0.0, max_multiple * float(spend[channel].max()), grid_points), [current])
        curve = xr.DataArray(ChannelMedia.of(mmm, channel).steady(levels), dims=(SAMPLE, "level"))
        part = mean_hdi(curve, "contribution_", (SAMPLE,))
        part.insert(0, "channel", channel)
        part.insert(1, "weekly_spend", levels)
        part["is_current"] = levels == current
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
