"""Weekly decomposition of the predicted target into channel contributions and the baseline, in target units."""

from __future__ import annotations

import pandas as pd
import xarray as xr
from pymc_marketing.mmm import MMM

from mmm_assets.core.config import DATE_COLUMN
from mmm_assets.core.modelling.posterior import mean_hdi

BASELINE = "baseline"
PREDICTED = "predicted"


def _summarise(samples: xr.DataArray, component: str) -> pd.DataFrame:
    frame = mean_hdi(samples)
    frame.insert(0, "component", component)
    frame.insert(0, DATE_COLUMN, pd.to_datetime(samples.coords[DATE_COLUMN].values))
    return frame


def weekly_contributions(mmm: MMM) -> pd.DataFrame:
    """Long table: one row per (date, component) with posterior mean and 94 % HDI.

    Components are every channel, ``baseline`` (intercept, controls and seasonality: the noise-free prediction
    minus the channels, draw by draw) and ``predicted`` (the noise-free prediction). Per draw, channels plus
    baseline equal the prediction exactly, so the posterior means add up too.
    """
    channels = mmm.data.get_contributions(original_scale=True)["channels"]
    predicted = mmm.data.to_original_scale("mu").transpose("chain", "draw", DATE_COLUMN)
    baseline = predicted - channels.sum("channel")
    parts = [_summarise(channels.sel(channel=c), str(c)) for c in channels.coords["channel"].values]
    parts += [_summarise(baseline, BASELINE), _summarise(predicted, PREDICTED)]
    return pd.concat(parts, ignore_index=True)


def wide_means(long: pd.DataFrame) -> pd.DataFrame:
    """Posterior means with one column per component (for plots and quick reading)."""
    return long.pivot(index=DATE_COLUMN, columns="component", values="mean").rename_axis(columns=None).reset_index()
