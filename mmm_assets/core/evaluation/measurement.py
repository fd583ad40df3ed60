"""Which channels did the data measure? Each channel's ROAS before the data (its prior) against after (its posterior).

The prior-to-posterior table (:mod:`mmm_assets.core.evaluation.prior_checks`) asks this of every free parameter, but a
β that contracts only says the data ruled out most of its wide prior, not that the channel's return was measured: the
decisions read each channel's ROAS, which combines β, the saturation λ and the adstock α. This module asks it of the
ROAS itself: the total contribution over the fitted weeks per unit of spend, drawn once from the prior and once from the
posterior. Its posterior contraction ``1 - var_posterior / var_prior`` is near 0 when the posterior ROAS is as wide as
the prior's: whatever the model says of that channel (its ROAS, its contribution, its share of an optimised budget)
is the priors' assumption, not something the weekly data showed. It is the question Meridian's model review asks with
its prior-posterior shift check (a REVIEW, not a failure); here it is a WARN check with an alert.

Measured (``python benchmarks/many_channels.py --channels 8 10 20 30 --grouped``; benchmarks/results/
many-channels-20261205T213819Z.md): on config/realistic.yaml (8 channels, 7 % noise, 156 weeks) the data measured the
ROAS of 2 of 8 channels (tv and facebook, the two largest budgets); with its channels repeated to 10 / 20 / 30, of 0 /
3 / 2. Every true ROAS outside its 94 % HDI (1 / 5 / 12 of them at 10 / 20 / 30 channels) was on a channel this check
flags; summing the repeats back into 8 channels measured 0-1 of the 8. ROI priors and lift tests enter the fit as
likelihood terms, not as priors, so a channel they inform counts as measured: ROI priors (sd 25 %) on the three largest
unmeasured channels of the realistic scenario made all three measured (benchmarks/results/
roi-prior-measurement-20261205T213944Z.md). They are what this check points to.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from mmm_assets.core.modelling.posterior import HDI_PROB, mean_hdi

#: Prior draws of every prior check: a variance from 500 draws is within ~6 % (sqrt(2/500)), a contraction ~0.06.
PRIOR_DRAWS = 500
#: The ROAS counts as measured when its posterior variance is at most half its prior's: the threshold of the
#: parameters' table (prior_checks.INFORMED_CONTRACTION), for the same reason.
MEASURED_CONTRACTION = 0.5
MEASURED = "measured"
AT_PRIOR = "at its prior"
NO_SPEND = "no spend"
SAMPLE_DIMS = ("chain", "draw")
COLUMNS = ["channel", "spend_share", "prior_mean", "prior_low", "prior_high", "posterior_mean", "hdi_low", "hdi_high",
           "contraction", "verdict", "most_anticorrelated", "correlation"]


def _central(samples: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """The central HDI_PROB interval of each channel's draws (the prior's range; its draws are independent)."""
    tail = (1 - HDI_PROB) / 2
    q = samples.quantile([tail, 1 - tail], dim=list(SAMPLE_DIMS)).transpose("quantile", ...).to_numpy()
    return q[0], q[1]


def _anticorrelated(posterior: xr.DataArray, channels: list[str]) -> tuple[list[str], np.ndarray]:
    """Per channel, the channel whose posterior ROAS is most negatively correlated with its own, and the correlation
    (a strongly negative one: the data fix the pair's sum better than how it splits)."""
    draws = posterior.stack(sample=SAMPLE_DIMS).transpose("sample", ...).to_numpy()
    if len(channels) < 2:
        return [""] * len(channels), np.full(len(channels), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(draws, rowvar=False)
    np.fill_diagonal(corr, np.inf)
    corr = np.where(np.isnan(corr), np.inf, corr)
    partner = corr.argmin(axis=1)
    value = corr[np.arange(len(channels)), partner]
    return ([channels[p] if np.isfinite(v) else "" for p, v in zip(partner, value, strict=True)],
            np.where(np.isfinite(value), value, np.nan))


def channel_measurement(prior: xr.DataArray, posterior: xr.DataArray, spend: pd.Series,
                        paid: list[str]) -> pd.DataFrame:
    """One row per channel: its share of the paid spend, its prior ROAS (mean, central 94 % range), posterior ROAS
    (mean, 94 % HDI), the posterior contraction, the verdict (measured | at its prior | no spend) and the channel its
    posterior ROAS is most negatively correlated with. ``prior`` / ``posterior``: ROAS draws (chain, draw, channel);
    ``spend``: each channel's total over the fitted weeks; ``paid``: the channels bought with money."""
    channels = [str(c) for c in posterior["channel"].to_numpy()]
    prior = prior.sel(channel=channels)
    low, high = _central(prior)
    frame = mean_hdi(posterior).rename(columns={"mean": "posterior_mean"})
    frame.insert(0, "channel", channels)
    paid_total = float(sum(spend[c] for c in channels if c in paid))
    frame.insert(1, "spend_share", [spend[c] / paid_total if c in paid and paid_total > 0 else np.nan
                                    for c in channels])
    frame.insert(2, "prior_mean", prior.mean(SAMPLE_DIMS).to_numpy())
    frame.insert(3, "prior_low", low)
    frame.insert(4, "prior_high", high)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["contraction"] = 1 - (posterior.var(SAMPLE_DIMS).to_numpy() / prior.var(SAMPLE_DIMS).to_numpy())
    spent = np.array([spend[c] > 0 for c in channels])
    frame["verdict"] = np.where(~spent, NO_SPEND,
                                np.where(frame["contraction"] >= MEASURED_CONTRACTION, MEASURED, AT_PRIOR))
    frame["most_anticorrelated"], frame["correlation"] = _anticorrelated(posterior, channels)
    return frame[COLUMNS]


def measurement_metrics(table: pd.DataFrame) -> dict[str, float]:
    """How many channels the data measured, and the share of the paid spend whose ROAS is still at its prior."""
    at_prior = table["verdict"] == AT_PRIOR
    return {"channels_measured": float((table["verdict"] == MEASURED).sum()),
            "channels_at_prior": float(at_prior.sum()),
            "unmeasured_spend_share": float(table.loc[at_prior, "spend_share"].fillna(0).sum())}


def _listed(rows: pd.DataFrame) -> str:
    """Channel names, each with its share of the paid spend when it has one."""
    return ", ".join(c if np.isnan(s) else f"{c} ({s:.0%})" for c, s in zip(rows["channel"], rows["spend_share"],
                                                                              strict=True))


def measurement_message(table: pd.DataFrame) -> str:
    """What the check says: the channels the data measured, those still at their prior (largest spend first) and
    what would measure them."""
    measured = table[table["verdict"] == MEASURED]
    at_prior = table[table["verdict"] == AT_PRIOR].sort_values("spend_share", ascending=False, na_position="last")
    said = f"The data measured the ROAS of {_listed(measured) if len(measured) else 'no channel'}."
    if at_prior.empty:
        return f"{said} Every channel's posterior ROAS is at most half as variable as its prior's."
    share = float(at_prior["spend_share"].fillna(0).sum())
    return (
        f"{said} The ROAS of {len(at_prior)} channel(s) is still essentially its prior ({share:.0%} of the paid "
        f"spend): {_listed(at_prior)}. Their posterior ROAS is about as wide as the prior's (contraction below "
        f"{MEASURED_CONTRACTION:g}), so their ROAS, contributions and budget shares state the priors' assumptions, "
        "not what the weekly data showed. A lift test (model.lift_tests) or an ROI prior (model.roi_priors) on the "
        "largest of them would measure them; so would more weeks in which their spend moves on its own."
    )


def with_basis(roas: pd.DataFrame, measurement: pd.DataFrame | None) -> pd.DataFrame:
    """The ROAS table with, per channel, what its ROAS rests on: ``roas_basis`` (the measurement's verdict) and
    ``roas_contraction``; unchanged when no measurement was made (a pooled model saved before its prior draws were
    kept with it)."""
    if measurement is None:
        return roas
    verdicts = measurement.set_index("channel")
    return roas.assign(roas_basis=roas["channel"].map(verdicts["verdict"]),
                       roas_contraction=roas["channel"].map(verdicts["contraction"]))
