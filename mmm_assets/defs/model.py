"""Model: the fitted MMM posterior, its validation, and the blocking quality gates.

PyMC-Marketing is imported inside the asset bodies, not at module level, so the code location loads fast.
"""


import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Backoff,
    Failure,
    FreshnessPolicy,
    MetadataValue,
    ResourceParam,
    RetryPolicy,
    asset,
    multi_asset_check,
)

from mmm_assets.core.config import DATE_COLUMN, TARGET_COLUMN
from mmm_assets.core.config.paths import PROJECT_DIR, default_operations
from mmm_assets.core.evaluation.metrics import GATES, RECOVERY_CHECKS
from mmm_assets.core.records import FittedModel, ModelChoice, PriorChecks, ValidationReport
from mmm_assets.core.stores.duckdb_store import MODELS_ROLE, DiskSpaceError, content_hash, ensure_free_space
from mmm_assets.core.synthetic.generator import GroundTruth
from mmm_assets.defs import metadata as md
from mmm_assets.defs.constants import MODEL_GROUP, OWNERS
from mmm_assets.defs.features import TABLE as FEATURES_TABLE
from mmm_assets.defs.features import mmm_features
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.pooled import market_holdout, pooled_view
from mmm_assets.defs.prior_checks import PRIOR_SCALE_DESCRIPTION, prior_reports, prior_scale_result
from mmm_assets.defs.resources import LazyMlflow, ScenarioResource

HISTORY_TABLE = "validation_history"
#: Dagster pool of the steps that sample a posterior; dagster.yaml's `concurrency: pools:` bounds how many run at once.
FIT_POOL = "mmm_fit"

#: Stale (red in the UI) when not refreshed within the configured days, a warning one day before.
_STALE_DAYS = default_operations().freshness_days
FRESHNESS = FreshnessPolicy.time_window(
    fail_window=dt.timedelta(days=_STALE_DAYS),
    warn_window=dt.timedelta(days=_STALE_DAYS - 1) if _STALE_DAYS > 1 else None,
)


def stored_features(scenario: ScenarioResource, cfg) -> pd.DataFrame:
    """The run's market's feature rows, in the model's columns."""
    return scenario.read(FEATURES_TABLE, [DATE_COLUMN, TARGET_COLUMN, *cfg.channels, *cfg.controls])


def _champion_posterior(cfg, client, report):
    """The champion's posterior to warm-start the fit from; None when warm starts are off or there is no champion."""
    from mmm_assets.core.inference.warmstart import read_posterior
    from mmm_assets.core.stores import tracking

    if not cfg.sampler.warm_start:
        return None
    try:
        version, path = tracking.champion_model_file(client, cfg)
    except LookupError:
        report("no champion yet: the fit starts cold")
        return None
    try:
        return read_posterior(path, f"champion v{version.version}")
    except Exception as err:  # a warm start only saves time: an unreadable champion never stops the refresh
        report(f"the champion's posterior {path} cannot be read ({type(err).__name__}: {err}): the fit starts cold")
        return None


@contextlib.contextmanager
def _disk_errors_not_retried() -> Iterator[None]:
    """Turn a :class:`DiskSpaceError` into a ``dagster.Failure`` that the step's retry policy does not retry.

    The retries are there for failures that can pass by themselves (an MLflow hiccup, a lock, a sampler that starts
    badly); a full disk stays full through the back-off, and every retry would fit the posterior again (minutes)
    only to fail at the same save. The error stays the failure's cause, so the run's outcome names it.
    """
    try:
        yield
    except DiskSpaceError as err:
        raise Failure(description=str(err), allow_retries=False) from err


def _newest_model_bytes(cfg) -> int:
    """The size of the newest model file of the scenario and market in the models folder (0 when there is none):
    what the next fit's file is expected to take, its draws and weeks being much the same."""
    previous = list(cfg.paths.models_dir.glob(f"mmm_{cfg.scenario}_{cfg.market}_*.nc"))
    return max(previous, key=lambda p: p.stat().st_mtime).stat().st_size if previous else 0


def _ensure_room_for_the_model(cfg) -> None:
    """Before the fit: the models disk must hold another model file like the newest one and still keep
    `operations.min_free_disk_mb` free, or the fit's minutes would be lost at the save. (The save checks again with
    the exact size.)"""
    ensure_free_space(
        {MODELS_ROLE: cfg.paths.models_dir}, cfg.operations.min_free_disk_mb, new_file_bytes=_newest_model_bytes(cfg)
    )


@asset(
    group_name=MODEL_GROUP,
    kinds={"pymc", "mlflow"},
    owners=OWNERS,
    deps=[mmm_features],
    retry_policy=RetryPolicy(max_retries=2, delay=15, backoff=Backoff.EXPONENTIAL),
    freshness_policy=FRESHNESS,
    partitions_def=MARKETS,
    pool=FIT_POOL,
)
def mmm_posterior(
    context: AssetExecutionContext,
    scenario: ScenarioResource,
    mlflow: ResourceParam[LazyMlflow],
    model_comparison: ModelChoice,
) -> FittedModel:
    """The fitted PyMC-Marketing MMM (the configured adstock and saturation families, or the specification
    `model_comparison` chose among `model.candidates`), saved as netCDF.

    Sampled with the configured NUTS backend (numpyro by default), warm-started from the champion's posterior when
    there is one (`sampler.warm_start`); progress is written to the run log. Every
    materialisation writes a new file under the models directory, so the last good model is never overwritten.
    The fit is an MLflow run (params, tags with the Dagster run, code and data versions, diagnostics, the posterior,
    the scenario file and the feature table as input dataset) and a new version of the registered model.
    """
    from mmm_assets.core.stores import tracking

    cfg = scenario.load().with_candidate(model_comparison.selected)
    features = stored_features(scenario, cfg)
    client = tracking.client_for(cfg)
    with _disk_errors_not_retried():
        result, path, pooled_file = _fit_and_save(context, scenario, cfg, features, client, model_comparison)
    context.log.info(f"saved the posterior to {path}")
    run = mlflow.active_run()
    fitted = _track(context, scenario, cfg, client, run, result, path, features, pooled_file, model_comparison)
    context.log.info(f"MLflow run {run.info.run_id}, model {tracking.model_name(cfg)} version {fitted.model_version}")
    url = tracking.run_url(cfg, run.info.experiment_id, run.info.run_id)
    context.add_output_metadata(_posterior_metadata(cfg, result, fitted, len(features), url))
    return fitted


def _fit_and_save(context: AssetExecutionContext, scenario: ScenarioResource, cfg, features: pd.DataFrame, client,
                  choice: ModelChoice):
    """Fit (or take the market's slice of the pooled fit, or the chosen candidate's fit) and save it as a new model
    file; returns the fit, the file and the pooled model's file (None when the market is fitted on its own)."""
    from mmm_assets.core.inference.sampling import Diagnostics, FitResult
    from mmm_assets.core.modelling.fitting import fit
    from mmm_assets.core.modelling.persistence import load_model, save_model

    if choice.fit is not None:
        chosen = choice.fit
        context.log.info(f"candidate {choice.selected}'s fit from model_comparison, not fitted again: {chosen.path}")
        d = chosen.diagnostics
        diagnostics = Diagnostics(int(d["divergences"]), d["max_rhat"], d["min_ess_bulk"], d["min_ess_tail"],
                                  chosen.worst_rhat_parameter)
        result = FitResult(load_model(chosen.path), chosen.sampler, chosen.wall_seconds, diagnostics, chosen.draws,
                           chosen.tune)
        return result, Path(chosen.path), None
    pooled_file = None
    _ensure_room_for_the_model(cfg)
    if cfg.pooled:
        result, pooled_file = pooled_view(scenario, cfg, context.log.info)
    else:
        warm_from = _champion_posterior(cfg, client, context.log.info)
        result = fit(cfg, features, report=context.log.info, warm_from=warm_from)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"mmm_{cfg.scenario}_{cfg.market}_{stamp}_{context.run_id[:8]}.nc"
    return result, save_model(result.mmm, cfg.paths.models_dir / name, cfg.operations.min_free_disk_mb), pooled_file


def _track(context: AssetExecutionContext, scenario: ScenarioResource, cfg, client, run, result, path: Path,
           features: pd.DataFrame, pooled_file, choice: ModelChoice) -> FittedModel:
    """Log the fit to its MLflow run (lineage tags, params, metrics, inputs) and register the model file as a new
    version of the market's model; returns the record the downstream assets get."""
    from mmm_assets.core.modelling.build import fit_records
    from mmm_assets.core.stores import tracking

    data_version = content_hash(features)
    lineage = {
        "dagster_run_id": context.run_id,
        "dagster_asset_key": context.asset_key.to_user_string(),
        "dagster_partition": context.partition_key if context.has_partition_key else "",
        "code_version": tracking.code_version(PROJECT_DIR),
        "scenario": cfg.scenario,
        "market": cfg.market,
        "pooling": f"pooled ({pooled_file})" if pooled_file else "separate",
        "warm_start": result.warm_start or "none (cold)",
        "model_specification": choice.selected or "scenario model",
        "model_specification_reason": choice.reason,
        "media_transforms": f"{cfg.model.adstock.family} adstock + {cfg.model.saturation.family} saturation",
    }
    tracking.log_fit(
        client, run.info.run_id, cfg, tags=lineage,
        metrics={**result.diagnostics.as_dict(), "fit_wall_seconds": result.wall_seconds},
        config_file=Path(scenario.config_path), features=features, data_version=data_version,
        records=fit_records(result.mmm),
    )
    version = tracking.register_version(
        client, cfg, run.info.run_id, {**lineage, "data_version": data_version}, model_file=path
    )
    return FittedModel(
        path=str(path), scenario=cfg.scenario, sampler=result.sampler, chains=result.chains, draws=result.draws,
        tune=result.tune, wall_seconds=result.wall_seconds, diagnostics=result.diagnostics.as_dict(),
        data_version=data_version, mlflow_run_id=run.info.run_id, model_version=version,
        specification=choice.selected,
    )


def _posterior_metadata(cfg, result, fitted: FittedModel, weeks: int, url: str) -> dict:
    """What the UI shows of a fit: sampler, draws, diagnostics, the model file, the MLflow run and version."""
    from mmm_assets.core.modelling.build import fit_records
    from mmm_assets.core.stores import tracking

    d = result.diagnostics
    return {
        "media_transforms": f"{cfg.model.adstock.family} adstock + {cfg.model.saturation.family} saturation"
        + (f" (candidate {fitted.specification})" if fitted.specification else ""),
        "sampler": result.sampler,
        "draws_x_chains": f"{result.draws} x {result.chains} (after {result.tune} tuning steps)",
        "warm_start": result.warm_start or "none (cold)",
        "fit_wall_seconds": round(result.wall_seconds, 1),
        "divergences": d.divergences,
        "max_rhat": round(d.max_rhat, 4),
        "worst_rhat_parameter": d.worst_rhat_parameter,
        "min_ess_bulk": round(d.min_ess_bulk, 1),
        "min_ess_tail": round(d.min_ess_tail, 1),
        "weeks": weeks,
        "data_version": fitted.data_version,
        # not "path": the IO manager adds its own "path" (the pickled output), which would replace this one
        "model_file": MetadataValue.path(fitted.path),
        "mlflow_run_id": fitted.mlflow_run_id,
        "mlflow_run": MetadataValue.url(url),
        "model_version": f"{tracking.model_name(cfg)} v{fitted.model_version}",
        **{name: MetadataValue.json(record) for name, record in fit_records(result.mmm).items()},
    }


def fit_title(cfg) -> str:
    """The actual-vs-fitted plot's title, in the validation's metadata and in the report (one rendering for both)."""
    return f"{cfg.scenario}/{cfg.market}: actual vs fitted (holdout: last {cfg.validation.holdout_weeks} weeks)"


def shown(value: float) -> float:
    """A metric rounded to 4 significant digits for the UI (full precision stays in the history table and MLflow)."""
    return float(f"{float(value):.4g}")


def _history_rows(run_id: str, scenario: str, report: ValidationReport, thresholds) -> pd.DataFrame:
    """One row per metric: every gate, plus each channel's recovery error against its own threshold (the market
    column is added when the rows are stored)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [
        {"metric": g["metric"], "value": g["value"], "threshold": g["threshold"], "passed": g["passed"]}
        for g in report.gates
    ]
    if report.recovery is not None:
        limit = {check.parameter: getattr(thresholds, check.threshold) for check in RECOVERY_CHECKS}
        for r in report.recovery.itertuples(index=False):
            rows.append(
                {
                    "metric": f"{r.parameter}_{r.error_kind}_error.{r.channel}",
                    "value": r.error,
                    "threshold": limit[r.parameter],
                    "passed": limit[r.parameter] is None or r.error <= limit[r.parameter],
                }
            )
    frame = pd.DataFrame(rows)
    frame.insert(0, "scenario", scenario)
    frame.insert(0, "recorded_at", now)
    frame.insert(0, "run_id", run_id)
    frame["value"] = frame["value"].astype(float)
    frame["threshold"] = frame["threshold"].astype(float)
    return frame


@asset(
    group_name=MODEL_GROUP, kinds={"pymc", "duckdb", "mlflow"}, owners=OWNERS, deps=[mmm_features, "pooled_holdout"],
    partitions_def=MARKETS, pool=FIT_POOL,
)
def mmm_validation(
    context: AssetExecutionContext,
    scenario: ScenarioResource,
    mlflow: ResourceParam[LazyMlflow],
    mmm_posterior: FittedModel,
    ground_truth: GroundTruth | None,
) -> ValidationReport:
    """How far the model can be trusted: fit, forecast, convergence and (synthetic data) parameter recovery; and
    what the analyst told the model against what it made of it (ROI priors, lift tests, non-media terms).

    In-sample R² / MAPE of the posterior-mean prediction; R² / MAPE on the last N weeks from a posterior that did
    not see them (the fit's own, reweighted by PSIS, or a refit when the Pareto k says it cannot stand in); worst
    R-hat, smallest bulk/tail ESS, divergences; recovery of every channel's response curve and carry-over (and its
    λ and α when the model's families are the truth's).
    Every metric is appended to DuckDB table `validation_history` and logged to the fit's MLflow run. The blocking
    checks read this report.
    """
    from mmm_assets.core.evaluation.validation import validate, with_prior_checks
    from mmm_assets.core.modelling.persistence import load_model
    from mmm_assets.core.stores import tracking

    cfg = scenario.load().with_candidate(mmm_posterior.specification)
    features = stored_features(scenario, cfg)
    mmm = load_model(mmm_posterior.path)
    held_out = _holdout(scenario, cfg, features, mmm, context.log.info)
    report = validate(
        cfg, features, mmm, mmm_posterior.diagnostics, held_out, ground_truth, mmm_posterior.model_version
    )
    report = with_prior_checks(cfg, report, mmm)
    tracking.log_metrics(mlflow.tracking_client, mmm_posterior.mlflow_run_id, report.metrics, prefix="validation.")
    scenario.append(HISTORY_TABLE, _history_rows(context.run_id, cfg.scenario, report, cfg.validation.thresholds))
    failed = report.failed_gates()
    if failed:  # the verdict is known here; promotion waits for mmm_champion, which the blocking gates guard
        decision = tracking.promote_or_reject(tracking.client_for(cfg), cfg, mmm_posterior.model_version, failed)
        context.log.info(f"model {tracking.model_name(cfg)} v{mmm_posterior.model_version}: {decision}")
    context.log.info("all gates passed" if not failed else f"gates failed: {', '.join(failed)}")
    if failed and report.identification:
        context.log.warning(f"what the data cannot tell apart: {report.identification}")
    context.add_output_metadata(
        {**_validation_metadata(cfg, report, held_out.method), **_calibration_reports(scenario, cfg, mmm),
         **prior_reports(scenario, cfg, report.prior_checks, report.measurement)}
    )
    return report


def _holdout(scenario: ScenarioResource, cfg, features: pd.DataFrame, mmm, report):
    """The holdout forecast: one pooled refit shared by every market, or the market's own (core.evaluation)."""
    from mmm_assets.core.evaluation.validation import HoldoutResult, holdout

    if cfg.pooled and cfg.validation.holdout_weeks:
        return HoldoutResult(market_holdout(scenario, cfg, cfg.validation.holdout_weeks, report), "pooled refit")
    return holdout(cfg, features, mmm, report)


def _validation_metadata(cfg, report: ValidationReport, holdout_method: str) -> dict:
    """What the UI shows of a validation: every metric, the gates, the fit and recovery plots."""
    from mmm_assets.core.presentation.plots import fit_plot, recovery_plot

    gate_table = pd.DataFrame(report.gates)[["gate", "value", "direction", "threshold", "passed"]]
    gate_table = gate_table[gate_table["threshold"].notna()]  # the profile's gates; the others are metrics above
    meta = {
        **{name: MetadataValue.float(shown(value)) for name, value in report.metrics.items()},
        "gates": md.table_md(gate_table),
        "failed_gates": ", ".join(report.failed_gates()) or "none",
        "holdout_method": holdout_method,
        "fit_plot": md.image(fit_plot(report.in_sample, report.holdout, fit_title(cfg)), "actual vs fitted"),
        "history_table": MetadataValue.text(HISTORY_TABLE),
    }
    if report.recovery is not None:
        meta["recovery"] = md.table_md(report.recovery.drop(columns=["error_kind"]))
        meta["recovery_plot"] = md.image(recovery_plot(report.recovery), "recovered vs true parameters")
    return meta


def _calibration_reports(scenario: ScenarioResource, cfg, mmm) -> dict:
    """What the analyst told the model and what it made of it: the non-media terms (sign, effect), each ROI prior
    against the posterior ROAS, each lift test against the model's lift. Stored in DuckDB and shown as tables."""
    from mmm_assets.core.modelling.calibration import lift_test_report, load_lift_tests
    from mmm_assets.core.modelling.priors import roi_prior_report, term_estimates

    reports = {
        "terms": term_estimates(mmm) if cfg.controls or cfg.model.trend else None,
        "roi_priors": roi_prior_report(mmm, cfg) if cfg.model.roi_priors else None,
        "lift_tests": lift_test_report(mmm, tests) if (tests := load_lift_tests(cfg)) is not None else None,
    }
    meta = {}
    for name, table in reports.items():
        if table is not None:
            scenario.store(f"{name}_report", table)
            meta[name] = md.table_md(table)
    return meta


@multi_asset_check(
    specs=[
        *(AssetCheckSpec(
            gate.name, asset=mmm_validation, blocking=True, description=gate.description, partitions_def=MARKETS
        ) for gate in GATES),
        AssetCheckSpec(
            PriorChecks.CHECK, asset=mmm_validation, blocking=True, description=PRIOR_SCALE_DESCRIPTION,
            partitions_def=MARKETS,
        ),
    ],
)
def mmm_quality_gates(context: AssetCheckExecutionContext, mmm_validation: ValidationReport):
    """Blocking gates: a model that fails any of them stops every downstream asset in the run, `mmm_champion` first,
    so the registry's champion stays where it was (`mmm_validation` has tagged the version a rejected challenger).
    The checks only read the report: they move nothing.
    """
    decision = "rejected_challenger" if mmm_validation.failed_gates() else "to be promoted by mmm_champion"
    for gate in mmm_validation.gates:
        yield AssetCheckResult(
            check_name=gate["gate"],
            passed=bool(gate["passed"]),
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "value": MetadataValue.float(float("nan") if gate["value"] is None else shown(gate["value"])),
                "threshold": MetadataValue.float(float("nan") if gate["threshold"] is None else gate["threshold"]),
                "rule": f"{gate['metric']} {gate['direction']} threshold"
                if gate["threshold"] is not None else "reported, not gated (the validation profile sets no threshold)",
                "note": gate["note"],
                "registry": decision,
                **({"what_would_help": mmm_validation.identification}
                   if not gate["passed"] and mmm_validation.identification else {}),
            },
        )
    yield prior_scale_result(mmm_validation.prior_checks, decision)
