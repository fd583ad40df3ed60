"""Forecasts of weeks a fit did not see: refits on a training window, the holdout by refit or by PSIS
reweighting (approximate leave-future-out), and the in-sample prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from pymc_marketing.mmm import MMM

from mmm_assets.core.config import DATE_COLUMN, TARGET_COLUMN, MMMConfig
from mmm_assets.core.inference.compiling import quick_compile
from mmm_assets.core.inference.progress import Reporter, silent
from mmm_assets.core.inference.sampling import FitResult
from mmm_assets.core.modelling.build import split_xy
from mmm_assets.core.modelling.fitting import fit, refit_sampler
from mmm_assets.core.modelling.posterior import interval_frame
from mmm_assets.core.variables import PREDICTED


def in_sample_prediction(mmm: MMM, features: pd.DataFrame) -> pd.DataFrame:
    """Actual target with the posterior-predictive mean and 94 % HDI for every fitted week."""
    predictive = mmm.idata.posterior_predictive[PREDICTED]
    frame = interval_frame(predictive, pd.Index(features[DATE_COLUMN]), "predicted_")
    frame.insert(1, "actual", features[TARGET_COLUMN].to_numpy())
    return frame

@dataclass
class Forecast:
    """A forecast of weeks a fit did not see: the per-week table, the predictive draws and the fit that made them.

    ``frame``: ``date, actual, predicted_mean, predicted_hdi_low, predicted_hdi_high`` (target units);
    ``samples``: the posterior-predictive draws ``(chain, draw, date)`` in target units.
    """

    frame: pd.DataFrame
    samples: xr.DataArray
    fit: FitResult

def forecast_unseen(
    cfg: MMMConfig, train: pd.DataFrame, test: pd.DataFrame, draws: int, report: Reporter = silent
) -> Forecast:
    """Fit the configured MMM on ``train`` and forecast ``test``, the weeks right after it.

    Adstock is carried over from the training weeks (``include_last_observations``). The refit samples at most
    ``draws`` draws per chain (and as many tuning steps, both capped at the sampler's own): it only predicts, its
    diagnostics gate nothing.
    """
    if test.empty:
        raise ValueError("nothing to forecast: the test window has no weeks")
    if pd.Timestamp(test[DATE_COLUMN].iloc[0]) <= pd.Timestamp(train[DATE_COLUMN].iloc[-1]):
        raise ValueError(
            f"the test window starts on {pd.Timestamp(test[DATE_COLUMN].iloc[0]):%Y-%m-%d}, not after the training "
            f"window's last week {pd.Timestamp(train[DATE_COLUMN].iloc[-1]):%Y-%m-%d}"
        )
    result = fit(cfg, train, report, sampler_cfg=refit_sampler(cfg, draws), in_sample_predictive=False)
    frame, predictive = predict_weeks(result.mmm, test, cfg.sampler.seed)
    return Forecast(frame=frame, samples=predictive, fit=result)

def predict_weeks(mmm: MMM, test: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, xr.DataArray]:
    """Forecast ``test``'s weeks with a fitted model, adstock carried over from the weeks it was fitted on: per week
    the actual, the posterior-predictive mean and 94 % HDI (target units), and the draws ``(chain, draw, date)``."""
    columns = [DATE_COLUMN, TARGET_COLUMN, *mmm.channel_columns, *(mmm.control_columns or [])]
    X_test, _ = split_xy(test[columns])
    with quick_compile():
        predictive = mmm.sample_posterior_predictive(
            X_test,
            var_names=[PREDICTED],
            include_last_observations=True,
            extend_idata=False,
            combined=False,
            progressbar=False,
            random_seed=seed,
        )[PREDICTED]
    frame = interval_frame(predictive, pd.Index(test[DATE_COLUMN]), "predicted_")
    frame.insert(1, "actual", test[TARGET_COLUMN].to_numpy())
    return frame, predictive

@dataclass
class Holdout:
    """The forecast of the last weeks by a posterior that did not see them: ``frame`` as :func:`predict_weeks`'s;
    ``method`` "psis" (the fit's own posterior, reweighted) or "refit"; ``pareto_k`` of the reweighting when it was
    tried (also when it was rejected); ``fit`` the refit when one was made."""

    frame: pd.DataFrame
    method: str
    pareto_k: float | None = None
    fit: FitResult | None = None

def holdout_forecast(
    cfg: MMMConfig, features: pd.DataFrame, weeks: int, report: Reporter = silent, fitted: MMM | None = None
) -> Holdout:
    """Forecast the last ``weeks`` weeks from a posterior that did not see them (adstock carried over from before).

    With ``validation.holdout_method: psis`` and the model ``fitted`` on every week, that posterior is the fitted one
    reweighted (:func:`leave_future_out`) unless its Pareto k is above ``validation.holdout_pareto_k_max``; otherwise
    the model is refitted on all but those weeks.
    """
    v, k = cfg.validation, None
    if fitted is not None and v.holdout_method == "psis":
        approx = leave_future_out(fitted, features.iloc[-weeks:], cfg.sampler.seed)
        k = approx.pareto_k
        if k <= v.holdout_pareto_k_max:
            report(f"holdout: the last {weeks} weeks forecast by the posterior reweighted to leave them out "
                   f"(PSIS, Pareto k {k:.2f} <= {v.holdout_pareto_k_max}, {approx.ess:.0f} effective draws); no refit")
            return Holdout(approx.frame, "psis", k)
        report(f"holdout: Pareto k {k:.2f} > {v.holdout_pareto_k_max}: the reweighted posterior cannot stand in for a "
               "fit without the last weeks")
    report(f"holdout: refitting on {len(features) - weeks} weeks to forecast the last {weeks} weeks it does not see")
    forecast = forecast_unseen(
        cfg, features.iloc[:-weeks], features.iloc[-weeks:], cfg.validation.holdout_draws, report
    )
    return Holdout(forecast.frame, "refit", k, forecast.fit)

@dataclass(frozen=True)
class Reweighted:
    """A forecast from importance-reweighted draws: the per-week frame, the Pareto k of the weights and the effective
    number of draws they leave (Kish)."""

    frame: pd.DataFrame
    pareto_k: float
    ess: float

def pointwise_log_likelihood(mmm: MMM) -> xr.DataArray:
    """log p(y_t | draw) of every fitted week under each posterior draw ``(chain, draw, date)``: the model's Normal
    likelihood of the scaled target around its ``mu`` with ``y_sigma``."""
    posterior = mmm.idata.posterior
    observed = mmm.idata.observed_data["y"]
    sigma = posterior["y_sigma"]
    return -0.5 * ((observed - posterior["mu"]) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)

def leave_future_out(mmm: MMM, test: pd.DataFrame, seed: int) -> Reweighted:
    """Forecast ``test`` (the last weeks ``mmm`` was fitted on) as if the model had not seen them: approximate
    leave-future-out cross-validation (Bürkner, Gabry & Vehtari 2020).

    p(θ | weeks before) ∝ p(θ | every week) / p(test weeks | θ), so every posterior draw is weighted by the inverse of
    its likelihood of the test weeks, Pareto-smoothed (PSIS); the forecast is the in-sample posterior predictive of
    those weeks under the weighted draws (its adstock carries over from the weeks before, as a refit's forecast with
    ``include_last_observations``). A Pareto k above 0.7 means the weights are too uneven to trust.
    """
    dates = pd.Index(pd.to_datetime(test[DATE_COLUMN]))
    log_lik = pointwise_log_likelihood(mmm).sel(date=dates).sum(DATE_COLUMN)
    log_weights, pareto_k = (-log_lik).azstats.psislw(dim=["chain", "draw"])
    weights = np.exp(log_weights - log_weights.max()).stack(sample=("chain", "draw"))
    weights = (weights / weights.sum()).to_numpy()
    predictive = mmm.idata.posterior_predictive[PREDICTED].sel(date=dates).stack(sample=("chain", "draw"))
    drawn = np.random.default_rng(seed).choice(len(weights), size=len(weights), p=weights)
    frame = interval_frame(predictive.isel(sample=drawn), dates, "predicted_")
    frame["predicted_mean"] = (predictive * weights).sum("sample").to_numpy()  # exact, not resampled
    frame.insert(1, "actual", test[TARGET_COLUMN].to_numpy())
    return Reweighted(frame=frame, pareto_k=float(pareto_k), ess=float(1.0 / np.sum(weights**2)))
