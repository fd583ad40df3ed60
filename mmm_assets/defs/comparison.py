"""Specification comparison: the scenario's `model.candidates` fitted, gated and compared by PSIS-LOO; the choice
is what the fit, its validation and the cross-validation use."""

import datetime as dt
from dataclasses import replace

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from mmm_assets.core.records import ChosenFit, ModelChoice
from mmm_assets.core.synthetic.generator import GroundTruth
from mmm_assets.defs import metadata as md
from mmm_assets.defs.constants import MODEL_GROUP, OWNERS
from mmm_assets.defs.features import mmm_features
from mmm_assets.defs.model import FIT_POOL, stored_features
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import ScenarioResource

TABLE = "model_comparison"


@asset(
    group_name=MODEL_GROUP, kinds={"pymc", "duckdb"}, owners=OWNERS, deps=[mmm_features], partitions_def=MARKETS,
    pool=FIT_POOL,
)
def model_comparison(
    context: AssetExecutionContext, scenario: ScenarioResource, ground_truth: GroundTruth | None
) -> ModelChoice:
    """Which specification the rest of the graph fits. Without `model.candidates`, the scenario's `model` (nothing is
    fitted here). With them, every candidate is fitted, holds the validation profile's gates (recovery too, on
    synthetic data) and is scored by PSIS-LOO ELPD with its standard error and Pareto k; `model.select: elpd`
    picks the best ELPD among those passing every gate, a tie within 2 SE going to the simpler one. One row per
    candidate in DuckDB table `model_comparison`; the choice and the reason also go to the fit's MLflow run. The
    chosen candidate's fit is saved and becomes `mmm_posterior` (not fitted twice).
    """
    cfg = scenario.load()
    if not cfg.model.candidates:
        context.log.info("no model.candidates: the fit uses the scenario's model")
        context.add_output_metadata({"selected": "the scenario's model (no model.candidates)"})
        return ModelChoice(selected=None, reason="no model.candidates: the scenario's model", table=pd.DataFrame())
    from mmm_assets.core.evaluation.comparison import compare_specifications
    from mmm_assets.core.presentation.plots import comparison_plot

    features = stored_features(scenario, cfg)
    comparison = compare_specifications(cfg, features, ground_truth, context.log.info)
    choice = comparison.choice
    if comparison.fit is not None:  # saved for mmm_posterior, which takes it instead of fitting the same again
        choice = replace(choice, fit=_saved(comparison.fit, cfg, choice.selected, context.run_id))
    scenario.store(TABLE, choice.table)
    context.log.info(f"chosen: {choice.selected or 'the scenario model'}: {choice.reason}")
    context.add_output_metadata({
        "selected": choice.selected or "the scenario's model",
        "reason": choice.reason,
        "candidates": md.table_md(choice.table.round(4)),
        "comparison_plot": md.image(comparison_plot(choice.table), "ELPD of each candidate specification"),
        "duckdb_table": MetadataValue.text(TABLE),
    })
    return choice


def _saved(result, cfg, name: str, run_id: str) -> ChosenFit:
    from mmm_assets.core.modelling.persistence import save_model

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = cfg.paths.models_dir / f"mmm_{cfg.scenario}_{cfg.market}_{stamp}_{run_id[:8]}_{name}.nc"
    save_model(result.mmm, path, cfg.operations.min_free_disk_mb)
    d = result.diagnostics
    return ChosenFit(path=str(path), sampler=result.sampler, wall_seconds=result.wall_seconds,
                     diagnostics=d.as_dict(), worst_rhat_parameter=d.worst_rhat_parameter, draws=result.draws,
                     tune=result.tune)
