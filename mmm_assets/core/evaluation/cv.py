"""Time-slice (rolling-origin) cross-validation: how well the configured MMM forecasts weeks it has not seen.

Each fold refits the model on the weeks before its *origin* and forecasts the ``horizon_weeks`` weeks from the
origin on, with adstock carried over from the training weeks (the same refit-and-forecast as the holdout,
:func:`mmm_assets.core.modelling.forecast.forecast_unseen`). Origins are anchored at the end of the data: the last fold
forecasts the data's last ``horizon_weeks`` weeks, each earlier one starts ``step_weeks`` before the next, and no fold
trains on fewer than ``initial_weeks`` weeks; ``max_folds`` keeps the most recent ones. Anchoring at the end keeps the
folds on the weeks that matter most (the recent ones) and makes the last fold comparable across refreshes.

Per fold: MAPE (%) of the posterior-predictive mean, CRPS of the predictive draws (target units, lower is better;
it rewards a forecast that is both close and honestly uncertain), CRPS as % of the fold's mean actual (comparable
with MAPE), R² and the share of actual weeks inside the 94 % HDI. The gates hold the *mean* over the folds to the
configured thresholds; the Dagster layer turns them into asset checks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pandas as pd

from mmm_assets.core.config import DATE_COLUMN, CrossValidationConfig, MMMConfig
from mmm_assets.core.evaluation.metrics import GateResult, crps, mape_pct, r2
from mmm_assets.core.inference.progress import Reporter
from mmm_assets.core.modelling.forecast import forecast_unseen

#: Sample dimensions of the posterior-predictive draws.
SAMPLE_DIMS = ("chain", "draw")


@dataclass(frozen=True)
class CVResult:
    """The folds of one cross-validation, the forecasts they made, the summary and the gates.

    ``folds``: one row per fold: ``fold, train_start, train_end, test_start, test_end, train_weeks, weeks, mape_pct,
    crps, crps_rel_pct, r2, hdi_coverage, divergences, fit_seconds`` (dates are the first and last week of each
    window; ``crps`` in target units, ``crps_rel_pct`` = 100 x mean CRPS / mean actual of the fold).
    ``forecasts``: one row per (fold, forecast week): ``fold, date, actual, predicted_mean, predicted_hdi_low,
    predicted_hdi_high, crps``. ``summary``: ``cv_folds`` and the mean / worst of the fold metrics (``cv_*``).
    """

    folds: pd.DataFrame
    forecasts: pd.DataFrame
    summary: dict[str, float]
    gates: list[GateResult]

    @property
    def passed(self) -> bool:
        """Whether every fold passed every gate."""
        return all(g.passed for g in self.gates)

    @property
    def failed_gates(self) -> list[str]:
        """The names of the gates some fold failed."""
        return [g.gate for g in self.gates if not g.passed]


def fold_origins(n_weeks: int, settings: CrossValidationConfig) -> list[int]:
    """Index of every fold's first forecast week (= its number of training weeks), oldest first."""
    last = n_weeks - settings.horizon_weeks
    if last < settings.initial_weeks:
        raise ValueError(
            f"cross-validation needs at least validation.cross_validation.initial_weeks + horizon_weeks = "
            f"{settings.initial_weeks} + {settings.horizon_weeks} = {settings.initial_weeks + settings.horizon_weeks} "
            f"weeks, the data has {n_weeks}; lower initial_weeks or horizon_weeks, or disable cross_validation"
        )
    origins = list(range(last, settings.initial_weeks - 1, -settings.step_weeks))
    if settings.max_folds is not None:
        origins = origins[: settings.max_folds]
    return sorted(origins)


def _day(value: object) -> str:
    return f"{pd.Timestamp(value):%Y-%m-%d}"


def _gate(name: str, metric: str, value: float, threshold: float | None, description: str) -> GateResult:
    """``value <= threshold``; NaN fails (as in :func:`mmm_assets.core.evaluation.metrics.evaluate_gates`); no
    threshold (the validation profile does not gate it): reported, passed."""
    if threshold is None:
        return GateResult(name, metric, value, threshold, "<=", True, f"not gated (no threshold): {description}")
    if math.isnan(value):
        return GateResult(name, metric, value, threshold, "<=", False, f"metric is undefined (NaN): {description}")
    passed = value <= threshold
    note = "passed" if passed else f"{value:.4g} is not <= {threshold:.4g}: {description}"
    return GateResult(name, metric, value, threshold, "<=", passed, note)


def summarize(folds: pd.DataFrame) -> dict[str, float]:
    """Mean and worst of the per-fold metrics (worst: max for the errors, min for R² and coverage)."""
    summary: dict[str, float] = {"cv_folds": float(len(folds))}
    for column in ("mape_pct", "crps", "crps_rel_pct"):
        summary[f"cv_mean_{column}"] = float(folds[column].mean())
        summary[f"cv_max_{column}"] = float(folds[column].max())
    for column in ("r2", "hdi_coverage"):
        summary[f"cv_mean_{column}"] = float(folds[column].mean())
        summary[f"cv_min_{column}"] = float(folds[column].min())
    return summary


def cv_gates(summary: dict[str, float], cfg: MMMConfig) -> list[GateResult]:
    """The mean MAPE over the folds against its threshold, and the mean relative CRPS when one is configured."""
    gates = [
        _gate(
            "cv_mean_mape", "cv_mean_mape_pct", summary["cv_mean_mape_pct"], cfg.validation.cv_mape_max_pct,
            "mean out-of-sample MAPE (%) over the cross-validation folds",
        )
    ]
    crps_max = cfg.validation.cross_validation.crps_rel_max_pct
    if crps_max is not None:
        gates.append(
            _gate(
                "cv_mean_crps_rel", "cv_mean_crps_rel_pct", summary["cv_mean_crps_rel_pct"], crps_max,
                "mean CRPS over the folds, as % of the mean actual",
            )
        )
    return gates


def cross_validate(cfg: MMMConfig, features: pd.DataFrame, report: Reporter) -> CVResult:
    """Rolling-origin cross-validation of the configured MMM on ``features`` (see the module docstring).

    ``report`` receives one line per fold before and after its refit, and the refit's own progress lines. It runs
    whatever ``cross_validation.enabled`` says: that switch is for the caller (the asset) to read.
    """
    settings = cfg.validation.cross_validation
    origins = fold_origins(len(features), settings)
    total = len(origins)
    rows, forecasts = [], []
    for number, origin in enumerate(origins, start=1):
        train = features.iloc[:origin]
        test = features.iloc[origin : origin + settings.horizon_weeks]
        dates = train[DATE_COLUMN], test[DATE_COLUMN]
        report(
            f"fold {number}/{total}: fitting {len(train)} weeks ({_day(dates[0].iloc[0])} .. {_day(dates[0].iloc[-1])})"
            f" to forecast {len(test)} weeks ({_day(dates[1].iloc[0])} .. {_day(dates[1].iloc[-1])})"
        )
        started = time.monotonic()
        forecast = forecast_unseen(cfg, train, test, settings.draws, report)
        seconds = time.monotonic() - started
        frame = forecast.frame
        draws = forecast.samples.stack(sample=SAMPLE_DIMS).transpose("sample", DATE_COLUMN).to_numpy()
        actual = frame["actual"].to_numpy(float)
        scores = crps(draws, actual)
        inside = (frame["predicted_hdi_low"] <= frame["actual"]) & (frame["actual"] <= frame["predicted_hdi_high"])
        row = {
            "fold": number,
            "train_start": dates[0].iloc[0],
            "train_end": dates[0].iloc[-1],
            "test_start": dates[1].iloc[0],
            "test_end": dates[1].iloc[-1],
            "train_weeks": len(train),
            "weeks": len(test),
            "mape_pct": mape_pct(actual, frame["predicted_mean"]),
            "crps": float(scores.mean()),
            "crps_rel_pct": 100.0 * float(scores.mean()) / float(actual.mean()) if actual.mean() else math.nan,
            "r2": r2(actual, frame["predicted_mean"]),
            "hdi_coverage": float(inside.mean()),
            "divergences": forecast.fit.diagnostics.divergences,
            "fit_seconds": seconds,
        }
        rows.append(row)
        forecasts.append(frame.assign(crps=scores).assign(fold=number))
        report(
            f"fold {number}/{total}: MAPE {row['mape_pct']:.3g} %, CRPS {row['crps']:,.4g} "
            f"({row['crps_rel_pct']:.3g} % of the mean actual), {100 * row['hdi_coverage']:.0f} % of weeks in the "
            f"94 % HDI, {seconds:.0f} s"
        )
    folds = pd.DataFrame(rows)
    long = pd.concat(forecasts, ignore_index=True)
    long = long[["fold", *[c for c in long.columns if c != "fold"]]]
    summary = summarize(folds)
    gates = cv_gates(summary, cfg)
    report(
        f"cross-validation: {total} folds, mean MAPE {summary['cv_mean_mape_pct']:.3g} % (worst "
        f"{summary['cv_max_mape_pct']:.3g} %), mean CRPS {summary['cv_mean_crps_rel_pct']:.3g} % of the mean actual; "
        + ("gates passed" if all(g.passed for g in gates) else "; ".join(g.note for g in gates if not g.passed))
    )
    return CVResult(folds=folds, forecasts=long, summary=summary, gates=gates)

