"""Posterior summaries: means and HDIs, per-channel parameters, and the feature frame a fitted model was fitted on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from pymc_marketing.mmm import MMM

from mmm_assets.core.config import DATE_COLUMN, TARGET_COLUMN

#: Probability mass of every interval the project reports.
HDI_PROB = 0.94


@dataclass(frozen=True)
class Interval:
    """Posterior mean and 94 % HDI (``HDI_PROB``) of a quantity over the posterior draws."""

    mean: float
    hdi_low: float
    hdi_high: float

    @classmethod
    def of(cls, samples: np.ndarray) -> Interval:
        """Mean and 94 % HDI of ``samples``."""
        hdi = az.hdi(xr.DataArray(samples, dims=["sample"]), prob=HDI_PROB, dim=["sample"])
        return cls(float(samples.mean()), float(hdi.sel(ci_bound="lower")), float(hdi.sel(ci_bound="upper")))


def mean_hdi(samples: xr.DataArray, prefix: str = "", sample_dims: Sequence[str] = ("chain", "draw")) -> pd.DataFrame:
    """Posterior mean and 94 % HDI over ``sample_dims``: one row per value of the one remaining dimension."""
    dims = list(sample_dims)
    hdi = az.hdi(samples, prob=HDI_PROB, dim=dims)
    return pd.DataFrame(
        {
            f"{prefix}mean": samples.mean(dims).to_numpy(),
            f"{prefix}hdi_low": hdi.sel(ci_bound="lower").to_numpy(),
            f"{prefix}hdi_high": hdi.sel(ci_bound="upper").to_numpy(),
        }
    )

def interval_frame(samples: xr.DataArray, dates: pd.Index, prefix: str = "") -> pd.DataFrame:
    """Posterior mean and HDI of a (sample, date) array, one row per date."""
    frame = mean_hdi(samples, prefix, [d for d in samples.dims if d != DATE_COLUMN])
    frame.insert(0, DATE_COLUMN, dates)
    return frame

def posterior_parameters(mmm: MMM, names: tuple[str, ...] = ("saturation_lam", "adstock_alpha")) -> pd.DataFrame:
    """Posterior mean and 94 % HDI of per-channel parameters: one row per (channel, parameter)."""
    frames = []
    for name in names:
        draws = mmm.idata.posterior[name]
        frame = mean_hdi(draws).rename(columns={"mean": "estimate"})
        frame.insert(0, "parameter", name)
        frame.insert(0, "channel", [str(c) for c in draws.coords["channel"].values])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)

def fitted_features(mmm: MMM) -> pd.DataFrame:
    """The canonical feature frame a fitted model was trained on, read back from the model itself."""
    data = mmm.idata.fit_data.to_dataset()
    frame = data.to_dataframe().reset_index()
    columns = [DATE_COLUMN, TARGET_COLUMN, *mmm.channel_columns, *(mmm.control_columns or [])]
    return frame[columns]
