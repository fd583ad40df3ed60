"""Fit metrics, parameter recovery and the quality gates they are held to.

A *gate* is a named comparison of one metric with one threshold from the configuration. The Dagster layer turns
each gate into a blocking asset check; this module only computes and compares.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from mmm_assets.core.config import Thresholds

Direction = Literal[">=", "<="]


def r2(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination, 1 - SS_res / SS_tot."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    ss_tot = float(((actual - actual.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(((actual - predicted) ** 2).sum()) / ss_tot


def mape_pct(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute percentage error, in percent (undefined when any actual is zero)."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    if np.any(actual == 0):
        return float("nan")
    return 100.0 * float(np.mean(np.abs((actual - predicted) / actual)))


def mase(actual: np.ndarray, predicted: np.ndarray, history: np.ndarray, season: int = 52) -> float:
    """Mean absolute scaled error (Hyndman & Koehler 2006) of a forecast: its MAE divided by the in-sample MAE of the
    seasonal naive forecast (each week predicted by the same week ``season`` weeks earlier) over ``history``, the
    weeks before the forecast. Below 1 the forecast beats what repeating last year would have done on average. With
    fewer than ``season`` + 1 weeks of history the naive forecast is last week's value (season 1)."""
    actual, predicted, history = (np.asarray(a, float) for a in (actual, predicted, history))
    lag = season if len(history) > season else 1
    scale = float(np.mean(np.abs(history[lag:] - history[:-lag]))) if len(history) > lag else float("nan")
    if not scale > 0:
        return float("nan")
    return float(np.mean(np.abs(actual - predicted))) / scale


def coverage(actual: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """Share of the actuals inside their interval ``[low, high]``."""
    actual = np.asarray(actual, float)
    return float(np.mean((actual >= np.asarray(low, float)) & (actual <= np.asarray(high, float))))


def lag1_autocorrelation(residuals: np.ndarray) -> float:
    """The lag-1 autocorrelation of a residual series: near 0 (within about 2 / sqrt(n)) when the residuals are the
    independent noise the model assumes; well above it when the model misses a slow pattern (a trend, a season, a
    control), which then shows in consecutive weeks' residuals together."""
    r = np.asarray(residuals, float)
    r = r - r.mean()
    denominator = float(r @ r)
    return float(r[1:] @ r[:-1]) / denominator if denominator > 0 else float("nan")


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(actual, float) - np.asarray(predicted, float)) ** 2)))


def crps(samples: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Continuous ranked probability score of a sampled forecast, one value per observation (lower is better).

    ``samples`` is (n_samples, n_obs) draws of the predictive distribution, ``actual`` the n_obs observations. The
    score is the CRPS of the samples' empirical distribution, ``E|X - y| - 0.5 E|X - X'|``, in the target's units;
    it reduces to the absolute error for a point forecast. ``E|X - X'|`` over all n² pairs is computed from the
    sorted samples in O(n log n): ``sum_ij |x_i - x_j| = 2 sum_i (2i - n - 1) x_(i)`` (1-based ranks).
    """
    x = np.asarray(samples, float)
    y = np.asarray(actual, float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or y.shape != (x.shape[1],):
        raise ValueError(f"samples must be (n_samples, n_obs) and actual (n_obs,), got {x.shape} and {y.shape}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("crps needs at least one sample per observation")
    x = np.sort(x, axis=0)
    ranks = 2.0 * np.arange(1, n + 1) - n - 1
    spread = 2.0 * (ranks @ x) / n**2
    return np.abs(x - y).mean(axis=0) - 0.5 * spread


def recovery(estimates: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Compare posterior estimates with the true parameters.

    ``estimates`` has one row per (channel, parameter) with ``estimate``, ``hdi_low``, ``hdi_high``; ``truth`` is
    indexed by channel with one column per parameter. Saturation ``lam`` is compared relatively, adstock ``alpha``
    absolutely (it is a fraction already).
    """
    rows = []
    for row in estimates.itertuples(index=False):
        true = float(truth.loc[row.channel, row.parameter])
        absolute = abs(row.estimate - true)
        relative = row.parameter == "saturation_lam"
        rows.append(
            {
                "channel": row.channel,
                "parameter": row.parameter,
                "true": true,
                "estimate": row.estimate,
                "hdi_low": row.hdi_low,
                "hdi_high": row.hdi_high,
                "error": absolute / abs(true) if relative else absolute,
                "error_kind": "relative" if relative else "absolute",
                "true_in_hdi": bool(row.hdi_low <= true <= row.hdi_high),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Gate:
    """One quality gate: the metric it reads, the threshold key in the config and the direction of 'good'."""

    name: str
    metric: str
    threshold: str
    direction: Direction
    description: str


GATES: tuple[Gate, ...] = (
    Gate("in_sample_r2", "in_sample_r2", "r2_min", ">=", "In-sample R² of the posterior-mean prediction."),
    Gate("in_sample_mape", "in_sample_mape_pct", "mape_max_pct", "<=", "In-sample MAPE (%)."),
    Gate("holdout_r2", "holdout_r2", "oos_r2_min", ">=", "R² on the held-out last weeks, from a fit that did not see them."),
    Gate("holdout_mape", "holdout_mape_pct", "oos_mape_max_pct", "<=", "MAPE (%) on the held-out last weeks."),
    Gate(
        "holdout_skill",
        "holdout_mase",
        "holdout_mase_max",
        "<=",
        "Holdout MAE relative to the in-sample MAE of a seasonal naive forecast (MASE; < 1 beats it).",
    ),
    Gate(
        "holdout_coverage",
        "holdout_hdi_coverage",
        "holdout_coverage_min",
        ">=",
        "Share of the held-out weeks inside the forecast's 94 % HDI.",
    ),
    Gate(
        "holdout_noise_ratio",
        "holdout_noise_ratio",
        "holdout_noise_ratio_max",
        "<=",
        "Holdout RMSE relative to the noise the model estimates (its sigma): far above 1, the model over-fits.",
    ),
    Gate(
        "residual_autocorrelation",
        "in_sample_residual_acf1",
        "residual_acf1_max",
        "<=",
        "Lag-1 autocorrelation of the in-sample residuals: high when the model misses a slow pattern.",
    ),
    Gate(
        "unmeasured_spend",
        "unmeasured_spend_share",
        "unmeasured_spend_share_max",
        "<=",
        "Share of the paid spend on channels whose ROAS the data left at its prior (the channels_measured check); "
        "not gated unless a threshold is set.",
    ),
    Gate("max_rhat", "max_rhat", "rhat_max", "<=", "Worst R-hat over the model's free parameters."),
    Gate("min_ess_bulk", "min_ess_bulk", "ess_bulk_min", ">=", "Smallest bulk effective sample size."),
    Gate("min_ess_tail", "min_ess_tail", "ess_tail_min", ">=", "Smallest tail effective sample size."),
    Gate("divergences", "divergences", "divergences_max", "<=", "Divergent transitions of the sampler."),
    Gate(
        "saturation_lam_recovery",
        "saturation_lam_max_rel_error",
        "lam_rel_error_max",
        "<=",
        "Worst relative error of a channel's saturation λ against the ground truth (synthetic data only).",
    ),
    Gate(
        "adstock_alpha_recovery",
        "adstock_alpha_max_abs_error",
        "alpha_abs_error_max",
        "<=",
        "Worst absolute error of a channel's adstock α against the ground truth (synthetic data only).",
    ),
    Gate(
        "response_curve_recovery",
        "response_curve_max_rel_error",
        "curve_rel_error_max",
        "<=",
        "Worst error of a channel's steady-state response curve over its observed spend, relative to the true "
        "response at its largest spend (synthetic data only; any saturation family).",
    ),
    Gate(
        "carryover_recovery",
        "adstock_mean_lag_max_abs_error",
        "mean_lag_abs_error_max",
        "<=",
        "Worst error of a channel's mean carry-over lag, in weeks (synthetic data only; any adstock family).",
    ),
)


@dataclass(frozen=True)
class RecoveryCheck:
    """One recovery gate (:mod:`mmm_assets.core.evaluation.recovery`): the recovery table's rows it reads, the metric (worst channel) and its threshold key."""

    parameter: str
    metric: str
    threshold: str


RECOVERY_CHECKS: tuple[RecoveryCheck, ...] = (
    RecoveryCheck("saturation_lam", "saturation_lam_max_rel_error", "lam_rel_error_max"),
    RecoveryCheck("adstock_alpha", "adstock_alpha_max_abs_error", "alpha_abs_error_max"),
    RecoveryCheck("response_curve", "response_curve_max_rel_error", "curve_rel_error_max"),
    RecoveryCheck("adstock_mean_lag", "adstock_mean_lag_max_abs_error", "mean_lag_abs_error_max"),
)


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict: its value against its threshold."""
    gate: str
    metric: str
    value: float | None  # None: not applicable (e.g. no ground truth, holdout disabled)
    threshold: float | None  # None: reported, not gated (the validation profile does not hold this metric)
    direction: Direction
    passed: bool
    note: str

    def as_dict(self) -> dict:
        """The result as plain values (for metadata and tables)."""
        return asdict(self)


def evaluate_gates(metrics: dict[str, float | None], thresholds: Thresholds) -> list[GateResult]:
    """Hold every metric to its threshold. A metric that is absent is 'not applicable' and passes; NaN fails."""
    results = []
    for gate in GATES:
        threshold = getattr(thresholds, gate.threshold)
        value = metrics.get(gate.metric)
        if threshold is None:
            shown = None if value is None else float(value)
            results.append(GateResult(gate.name, gate.metric, shown, None, gate.direction, True, "not gated"))
            continue
        threshold = float(threshold)
        if value is None:
            results.append(
                GateResult(gate.name, gate.metric, None, threshold, gate.direction, True, "not applicable")
            )
            continue
        value = float(value)
        if math.isnan(value):
            passed, note = False, "metric is undefined (NaN)"
        else:
            passed = value >= threshold if gate.direction == ">=" else value <= threshold
            note = "passed" if passed else f"{value:.4g} is not {gate.direction} {threshold:.4g}"
        results.append(GateResult(gate.name, gate.metric, value, threshold, gate.direction, passed, note))
    return results
