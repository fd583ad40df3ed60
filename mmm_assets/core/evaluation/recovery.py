"""How well a fitted model recovers the truth behind synthetic data, for any adstock and saturation family.

What can be compared depends on the families:

- **Parameters**, where model and truth share a family and the parameter is identified on weekly data: the
  geometric adstock's ``alpha`` (absolute error) and the logistic saturation's ``lam`` (relative error). The other
  families' parameters trade off against each other (hill's ``slope`` and ``kappa``, weibull's ``lam`` and ``k``)
  and are not compared one by one.
- **The response curve**, always: each channel's steady-state weekly contribution at 25 spend levels from 0 to its
  largest observed weekly spend, posterior mean against the truth; the error is the largest difference relative to
  the true contribution at that largest spend (``response_curve``).
- **The carry-over**, always: the mean lag of the normalised adstock weights, in weeks (``adstock_mean_lag``), the
  delay a family's parameters imply whatever they are.

Each channel's ROAS against the truth is the decisions' business (``channel_roas`` and the tests that check it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from mmm_assets.core.evaluation.metrics import RECOVERY_CHECKS, recovery
from mmm_assets.core.modelling.build import fitted_scales
from mmm_assets.core.modelling.posterior import mean_hdi, posterior_parameters
from mmm_assets.core.synthetic.generator import GroundTruth
from mmm_assets.core.transforms.media import (
    SAMPLE,
    ChannelMedia,
    adstock_transformation,
    apply_adstock,
    family_of,
    parameter_draws,
)

#: Spend levels of the response-curve comparison, from 0 to the largest observed weekly spend.
CURVE_POINTS = 25
#: The family parameters compared one by one when the model's family is the truth's: (kind, family) -> parameter.
IDENTIFIED = {("adstock", "geometric"): "adstock_alpha", ("saturation", "logistic"): "saturation_lam"}


def _row(channel: str, parameter: str, true: float, draws: np.ndarray, error: float, kind: str) -> dict:
    interval = mean_hdi(xr.DataArray(draws[:, None], dims=(SAMPLE, "value")), sample_dims=(SAMPLE,)).iloc[0]
    return {
        "channel": channel, "parameter": parameter, "true": true, "estimate": float(interval["mean"]),
        "hdi_low": float(interval["hdi_low"]), "hdi_high": float(interval["hdi_high"]), "error": error,
        "error_kind": kind, "true_in_hdi": bool(interval["hdi_low"] <= true <= interval["hdi_high"]),
    }


def _mean_lag(adstock, params: dict) -> np.ndarray:
    """Mean lag (weeks) of a normalised adstock's weights, per sample of ``params``."""
    impulse = np.zeros(adstock.l_max)
    impulse[0] = 1.0
    weights = apply_adstock(adstock, impulse, params)
    return weights @ np.arange(adstock.l_max) / weights.sum(axis=1)


def _curve_and_lag_rows(mmm, truth: GroundTruth, channel: str, spend_max: float) -> list[dict]:
    media = ChannelMedia.of(mmm, channel)
    levels = np.linspace(0.0, spend_max, CURVE_POINTS)
    model = media.steady(levels)
    true = truth.steady_response(channel, levels)
    error = float(np.abs(model.mean(axis=0) - true).max() / true[-1])
    true_adstock, _ = truth.family_parameters(channel)
    true_lag = float(_mean_lag(adstock_transformation(truth.adstock_family, mmm.adstock.l_max), true_adstock)[0])
    lag = _mean_lag(mmm.adstock, parameter_draws(mmm, mmm.adstock, channel))
    return [
        _row(channel, "response_curve", float(true[-1]), model[:, -1], error, "relative"),
        _row(channel, "adstock_mean_lag", true_lag, lag, float(abs(lag.mean() - true_lag)), "absolute"),
    ]


def recovery_table(mmm, truth: GroundTruth, features: pd.DataFrame) -> pd.DataFrame:
    """One row per (channel, compared quantity): ``channel, parameter, true, estimate, hdi_low, hdi_high, error,
    error_kind, true_in_hdi`` (see the module docstring); ``features``: the frame the model was fitted on."""
    identified = [
        name for (kind, family), name in IDENTIFIED.items()
        if family == family_of(getattr(mmm, kind)) == getattr(truth, f"{kind}_family")
    ]
    channels = [str(c) for c in mmm.channel_columns]
    parts = []
    if identified:
        on_scales = truth.parameters_on_scales(fitted_scales(mmm).channels or {})
        parts.append(recovery(posterior_parameters(mmm, tuple(identified)), on_scales))
    rows = [row for c in channels for row in _curve_and_lag_rows(mmm, truth, c, float(features[c].max()))]
    return pd.concat([*parts, pd.DataFrame(rows)], ignore_index=True)


def recovery_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The worst channel's error of every recovery check the table has rows for."""
    return {
        check.metric: float(table.loc[table["parameter"] == check.parameter, "error"].max())
        for check in RECOVERY_CHECKS
        if (table["parameter"] == check.parameter).any()
    }
