"""Prior checks of a fitted MMM: is its prior on the KPI's scale, and which parameters did the data inform?

The prior predictive check draws the model's parameters from their priors and the weekly KPI from the likelihood,
in the KPI's own units, and compares the typical level of those weeks with the observed KPI's. PyMC-Marketing divides
the KPI by its maximum before fitting, so with the default data-derived scales the prior predictive follows the KPI
whatever its units; it lands orders of magnitude away when a fixed scale (``model.scaling.target``) is in other
units than the KPI, or when priors were set for another scale. Measured (``python benchmarks/plausibility.py``,
benchmarks/results/plausibility-*.md): 0.56 orders on the reference scenario and 0.98 on config/realistic.yaml (the
default β priors put the prior's media near 10x the KPI with eight channels), 1.46 with 30 channels; a fixed target
scale 1000x off: 2.0-4.0 orders (blocked at the default 2); 100x off: 1.0-1.4 (not caught: the default priors are
themselves about one order loose).

The prior-to-posterior table compares each free parameter's prior (the same prior draws) with its posterior: the
posterior contraction ``1 - var_posterior / var_prior`` is near 1 when the data pinned the parameter down and near 0
(or below: a posterior wider than its prior) when the posterior is still essentially the prior. The priors are the
model's declared ones: ROI priors and lift tests enter the fit as likelihood terms, so their information counts as
data here.

``MMM.sample_prior_predictive`` returns only the prior predictive group; the parameters' prior draws are needed too,
so ``pm.sample_prior_predictive`` is called on the model (the call that method wraps).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from pymc_marketing.mmm import MMM

from mmm_assets.core.config import DATE_COLUMN, MMMConfig
from mmm_assets.core.evaluation.measurement import PRIOR_DRAWS, channel_measurement
from mmm_assets.core.inference.compiling import quick_compile
from mmm_assets.core.modelling.pooling import PRIOR_TOTALS_GROUP, view_is_pooled
from mmm_assets.core.modelling.posterior import HDI_PROB
from mmm_assets.core.modelling.priors import posterior_roas, roas_of
from mmm_assets.core.records import PriorChecks
from mmm_assets.core.variables import CONTRIBUTIONS

#: A parameter is "informed by the data" when its posterior variance is at most half its prior's. Measured: on the
#: reference scenario every parameter contracts by >= 0.999; on config/realistic.yaml β, the intercept, the
#: seasonality, the terms and σ contract by 0.989-1.0 while every adstock α (-0.02-0.28) and saturation λ (-0.8-0.01;
#: a posterior wider than its prior) stay at their prior: 0.5 lies in the empty gap between the two groups. A β
#: "informed" says the data ruled out most of its wide prior, not that the channels were told apart.
INFORMED_CONTRACTION = 0.5
INFORMED = "informed by the data"
PRIOR_DOMINATED = "prior-dominated"
SAMPLE_DIMS = ("chain", "draw")


#: The suffix pymc-extras' ``Scaled`` gives the free variable behind a scaled parameter.
UNSCALED = "_unscaled"


def channel_spend(mmm: MMM) -> xr.DataArray:
    """Each channel's total spend (activity, for owned media) over the weeks the model was built on, from its data
    (a built model's too, before it is fitted)."""
    dims = mmm.model.named_vars_to_dims["channel_data"]
    values = np.asarray(mmm.model["channel_data"].get_value(), dtype=float)
    return xr.DataArray(values, dims=dims, coords={d: np.asarray(mmm.model.coords[d]) for d in dims}).sum(DATE_COLUMN)


class PriorDraws(NamedTuple):
    """Draws from the model's prior: its free parameters (and the parameters they scale), the weekly KPI in its own
    units (chain, draw, date) and each channel's ROAS over the fitted weeks (chain, draw, channel; None when the model
    has no contributions in the KPI's units registered, as a model built for a quick look)."""

    parameters: xr.Dataset
    kpi: xr.DataArray
    roas: xr.DataArray | None


def sample_prior(mmm: MMM, draws: int = PRIOR_DRAWS, seed: int = 0) -> PriorDraws:
    """Prior draws of the model's free parameters and of the parameters they scale (the media's ceilings under a
    shared scale: ``saturation_beta`` beside ``saturation_beta_unscaled``), of the weekly KPI in its own units and
    of each channel's ROAS (its contribution over the fitted weeks per unit of spend, as ``posterior_roas``)."""
    free = [rv.name for rv in mmm.model.free_RVs]
    scaled = [n.removesuffix(UNSCALED) for n in free if n.endswith(UNSCALED) and n.removesuffix(UNSCALED) in mmm.model.named_vars]
    names = [*free, *scaled]
    contributions = [CONTRIBUTIONS] if CONTRIBUTIONS in mmm.model.named_vars else []
    with quick_compile(), mmm.model:
        drawn = pm.sample_prior_predictive(draws=draws, var_names=[*names, *contributions, mmm.output_var],
                                           random_seed=seed)
    target_scale = float(np.asarray(mmm.model["target_scale"].get_value()).reshape(-1)[0])
    kpi = drawn.prior_predictive[mmm.output_var] * target_scale
    roas = None
    if contributions:
        roas = roas_of(drawn.prior[CONTRIBUTIONS].sum(DATE_COLUMN), channel_spend(mmm)).transpose(*SAMPLE_DIMS, ...)
    return PriorDraws(drawn.prior.to_dataset()[names], kpi.transpose(*SAMPLE_DIMS, DATE_COLUMN), roas)


def observed_kpi(mmm: MMM) -> pd.Series:
    """The KPI the model was built on, in its own units, indexed by week."""
    values = np.asarray(mmm.model["target_data"].get_value(), dtype=float)
    return pd.Series(values, index=pd.DatetimeIndex(mmm.model.coords[DATE_COLUMN], name=DATE_COLUMN), name="actual")


def _orders(prior_level: float, observed_level: float) -> float:
    """How many powers of 10 separate two levels (inf when one is 0 or not finite)."""
    if not (prior_level > 0 and observed_level > 0 and math.isfinite(prior_level) and math.isfinite(observed_level)):
        return math.inf
    return abs(math.log10(prior_level / observed_level))


def _message(prior_level: float, observed_level: float, orders: float, max_orders: float) -> str:
    """What the check says, with both levels and, when it fails, what to check."""
    side = "above" if prior_level > observed_level else "below"
    levels = (f"the prior predictive's typical weekly KPI ({prior_level:.3g}) is {orders:.2g} orders of magnitude "
              f"{side} the observed KPI's ({observed_level:.3g})")
    if orders <= max_orders:
        return f"{levels}: within the {max_orders:g} allowed"
    return (
        f"{levels}, more than the {max_orders:g} allowed (validation.plausibility.prior_predictive_max_orders): the "
        "priors describe a KPI in other units. Check model.scaling.target (a fixed scale must be in the KPI's units), "
        "the units of the KPI column, and any priors set by hand"
    )


def scale_check(kpi_draws: xr.DataArray, observed: pd.Series, max_orders: float) -> dict:
    """The prior predictive's typical level (the median over draws of each draw's mean absolute weekly KPI) against
    the observed KPI's (its mean absolute week): both levels, the orders of magnitude between them and the message.
    Absolute values, so that a prior centred on zero still has a scale."""
    prior_level = float(np.abs(kpi_draws).mean(DATE_COLUMN).median())
    observed_level = float(np.abs(observed.to_numpy()).mean())
    orders = _orders(prior_level, observed_level)
    return {"prior_level": prior_level, "observed_level": observed_level, "orders_apart": orders,
            "max_orders": max_orders, "message": _message(prior_level, observed_level, orders, max_orders)}


def prior_band(kpi_draws: xr.DataArray, observed: pd.Series) -> pd.DataFrame:
    """Per week: the observed KPI and the prior predictive's median and central 94 % band."""
    tail = (1 - HDI_PROB) / 2
    q = kpi_draws.quantile([tail, 0.5, 1 - tail], dim=list(SAMPLE_DIMS)).transpose("quantile", DATE_COLUMN).to_numpy()
    return pd.DataFrame(
        {DATE_COLUMN: observed.index, "actual": observed.to_numpy(), "prior_low": q[0], "prior_median": q[1],
         "prior_high": q[2]}
    )


def _elements(samples: xr.DataArray) -> dict[str, np.ndarray]:
    """A parameter's draws per element: its coordinates joined by commas ("" for a scalar) -> the flat draws."""
    dims = [d for d in samples.dims if d not in SAMPLE_DIMS]
    flat = samples.stack(sample=SAMPLE_DIMS)
    if not dims:
        return {"": flat.to_numpy()}
    flat = flat.stack(element=dims).transpose("element", "sample")
    keys = flat.indexes["element"]
    labels = [",".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in keys]
    return dict(zip(labels, flat.to_numpy(), strict=True))


def _row(name: str, element: str, before: np.ndarray, after: np.ndarray) -> dict:
    prior_sd, posterior_sd = float(before.std()), float(after.std())
    contraction = 1 - (posterior_sd / prior_sd) ** 2 if prior_sd > 0 else math.nan
    return {
        "parameter": name, "element": element,
        "prior_mean": float(before.mean()), "prior_sd": prior_sd,
        "posterior_mean": float(after.mean()), "posterior_sd": posterior_sd,
        "shift_prior_sd": (float(after.mean()) - float(before.mean())) / prior_sd if prior_sd > 0 else math.nan,
        "contraction": contraction,
        "verdict": INFORMED if contraction >= INFORMED_CONTRACTION else PRIOR_DOMINATED,
    }


def prior_posterior_table(prior: xr.Dataset, posterior: xr.Dataset) -> pd.DataFrame:
    """One row per parameter and element (channel, Fourier mode, term): prior and posterior mean and sd, the
    posterior mean's shift in prior sds, the posterior contraction and whether the data informed it."""
    rows = []
    for name in prior.data_vars:
        after = _elements(posterior[name])
        rows += [_row(str(name), element, before, after[element]) for element, before in _elements(prior[name]).items()]
    return pd.DataFrame(rows)


def _prior_roas(mmm: MMM, prior: PriorDraws | None) -> xr.DataArray | None:
    """Prior draws of each channel's ROAS: a pooled market's view's from the pooled model's own prior, kept with it
    (pooling.PRIOR_TOTALS_GROUP; None when the pooled model predates it), else ``prior``'s or fresh ones."""
    if not view_is_pooled(mmm):
        return (prior or sample_prior(mmm)).roas
    if PRIOR_TOTALS_GROUP not in mmm.idata.children:
        return None
    return roas_of(mmm.idata[PRIOR_TOTALS_GROUP][CONTRIBUTIONS], channel_spend(mmm)).transpose(*SAMPLE_DIMS, ...)


def measure_channels(mmm: MMM, cfg: MMMConfig, prior: PriorDraws | None = None) -> pd.DataFrame | None:
    """Which channels' ROAS the data measured (:func:`~mmm_assets.core.evaluation.measurement.channel_measurement`),
    against ``prior`` or fresh prior draws, or for a market's view of a pooled model the pooled model's own prior
    draws; None without prior draws of the contributions."""
    roas = _prior_roas(mmm, prior)
    if roas is None:
        return None
    return channel_measurement(roas, posterior_roas(mmm), channel_spend(mmm).to_series(), cfg.paid_channels)


def prior_checks(mmm: MMM, cfg: MMMConfig, draws: int = PRIOR_DRAWS, seed: int = 0,
                 prior: PriorDraws | None = None) -> PriorChecks | None:
    """The prior predictive check and the prior-to-posterior table of a fitted model (from ``prior`` or fresh
    draws); None for a market's view of a pooled model, whose priors are the pooled model's hierarchy and not the
    view's nominal ones."""
    if view_is_pooled(mmm):
        return None
    prior = prior or sample_prior(mmm, draws, seed)
    observed = observed_kpi(mmm)
    return PriorChecks(
        **scale_check(prior.kpi, observed, cfg.validation.plausibility.prior_predictive_max_orders),
        band=prior_band(prior.kpi, observed),
        prior_posterior=prior_posterior_table(prior.parameters, mmm.idata.posterior.to_dataset()),
    )


def informed(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The ``parameter[element]`` labels the data informed, and those still at their prior."""
    labels = [f"{p}[{e}]" if e else p for p, e in zip(table["parameter"], table["element"], strict=True)]
    is_informed = (table["verdict"] == INFORMED).to_list()
    return ([x for x, i in zip(labels, is_informed, strict=True) if i],
            [x for x, i in zip(labels, is_informed, strict=True) if not i])
