"""One model's validation: in-sample fit, holdout forecast, convergence, parameter recovery, and the gates' verdict.

What `mmm_validation` reports and the blocking checks read, computed without Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mmm_assets.core.config import DATE_COLUMN, MMMConfig
from mmm_assets.core.evaluation.adequacy import adequacy_table, identification_summary
from mmm_assets.core.evaluation.metrics import (
    coverage,
    evaluate_gates,
    lag1_autocorrelation,
    mape_pct,
    mase,
    r2,
    rmse,
)
from mmm_assets.core.records import ValidationReport

if TYPE_CHECKING:  # the generator imports PyMC-Marketing, which validation defers
    from mmm_assets.core.synthetic.generator import GroundTruth


@dataclass(frozen=True)
class HoldoutResult:
    """The last weeks forecast by a posterior that did not see them, and how that posterior was had."""

    frame: pd.DataFrame | None
    method: str
    pareto_k: float | None = None


def holdout(cfg: MMMConfig, features: pd.DataFrame, mmm, report) -> HoldoutResult:
    """The single-market holdout forecast (the fit's own posterior reweighted by PSIS, or a refit)."""
    from mmm_assets.core.modelling.forecast import holdout_forecast

    weeks = cfg.validation.holdout_weeks
    if not weeks:
        return HoldoutResult(None, "switched off")
    forecast = holdout_forecast(cfg, features, weeks, report=report, fitted=mmm)
    return HoldoutResult(forecast.frame, forecast.method, forecast.pareto_k)


def noise_sigma(mmm) -> float:
    """The posterior mean of the model's noise standard deviation, in target units."""
    scale = float(np.asarray(mmm.idata.constant_data["target_scale"]).reshape(-1)[0])
    return float(mmm.idata.posterior["y_sigma"].mean()) * scale


def holdout_metrics(frame: pd.DataFrame, in_sample: pd.DataFrame, sigma: float) -> dict[str, float]:
    """How the holdout forecast ``frame`` did: absolute fit (R², MAPE) and the references of the real-data profile:
    skill against a seasonal naive forecast (MASE, scaled on the weeks before the holdout), the share of weeks inside
    the 94 % HDI, and the holdout RMSE over the model's own noise ``sigma`` (an over-fitted model claims little
    noise and then misses the weeks it did not see by much more)."""
    actual, predicted = frame["actual"].to_numpy(), frame["predicted_mean"].to_numpy()
    before = in_sample.loc[in_sample[DATE_COLUMN] < frame[DATE_COLUMN].min(), "actual"].to_numpy()
    return {
        "holdout_r2": r2(actual, predicted),
        "holdout_mape_pct": mape_pct(actual, predicted),
        "holdout_mase": mase(actual, predicted, before),
        "holdout_hdi_coverage": coverage(actual, frame["predicted_hdi_low"], frame["predicted_hdi_high"]),
        "holdout_noise_ratio": rmse(actual, predicted) / sigma if sigma > 0 else float("nan"),
        "noise_sigma": sigma,
    }


def validate(
    cfg: MMMConfig,
    features: pd.DataFrame,
    mmm,
    diagnostics: Mapping[str, float],
    held_out: HoldoutResult,
    truth: GroundTruth | None,
    model_version: str | None,
) -> ValidationReport:
    """Every metric of the fitted ``mmm`` and the gates' verdict on them; ``truth``: the truth behind synthetic data
    to score the recovery against (:mod:`mmm_assets.core.evaluation.recovery`), or None."""
    from mmm_assets.core.evaluation.recovery import recovery_metrics, recovery_table
    from mmm_assets.core.modelling.forecast import in_sample_prediction

    in_sample = in_sample_prediction(mmm, features)
    metrics: dict[str, float] = {
        "in_sample_r2": r2(in_sample["actual"], in_sample["predicted_mean"]),
        "in_sample_mape_pct": mape_pct(in_sample["actual"], in_sample["predicted_mean"]),
        "in_sample_residual_acf1": lag1_autocorrelation(in_sample["actual"] - in_sample["predicted_mean"]),
        **diagnostics,
    }
    frame = held_out.frame
    if held_out.pareto_k is not None:
        metrics["holdout_pareto_k"] = held_out.pareto_k
    if frame is not None:
        metrics.update(holdout_metrics(frame, in_sample, noise_sigma(mmm)))
    table = None
    if truth is not None:
        table = recovery_table(mmm, truth, features)
        metrics.update(recovery_metrics(table))
    gates = [g.as_dict() for g in evaluate_gates(metrics, cfg.validation.thresholds)]
    return ValidationReport(
        metrics=metrics, gates=gates, recovery=table, in_sample=in_sample, holdout=frame, model_version=model_version,
        identification=identification_summary(adequacy_table(cfg, features)),
    )


def with_prior_checks(cfg: MMMConfig, report: ValidationReport, mmm) -> ValidationReport:
    """The report with the fitted ``mmm``'s prior checks (none for a pooled market's view) and which channels' ROAS
    the data measured (:func:`~mmm_assets.core.evaluation.prior_checks.measure_channels`), from one set of prior
    draws; the measurement's metrics (``channels_measured``, ``channels_at_prior``, ``unmeasured_spend_share``) join
    the report's, and its gate holds only when ``validation.thresholds.unmeasured_spend_share_max`` is set."""
    from mmm_assets.core.evaluation.prior_checks import measure_channels, prior_checks, sample_prior
    from mmm_assets.core.modelling.pooling import view_is_pooled

    prior = None if view_is_pooled(mmm) else sample_prior(mmm)
    return with_measurement(cfg, replace(report, prior_checks=prior_checks(mmm, cfg, prior=prior)),
                            measure_channels(mmm, cfg, prior))


def with_measurement(cfg: MMMConfig, report: ValidationReport, measurement: pd.DataFrame | None) -> ValidationReport:
    """The report with a channel measurement, its metrics and the gates evaluated again over them."""
    from mmm_assets.core.evaluation.measurement import measurement_metrics

    if measurement is None:
        return report
    metrics = {**report.metrics, **measurement_metrics(measurement)}
    gates = [g.as_dict() for g in evaluate_gates(metrics, cfg.validation.thresholds)]
    return replace(report, metrics=metrics, gates=gates, measurement=measurement)
