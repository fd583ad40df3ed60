"""Cross-validation: the optional rolling-origin refits that forecast weeks they did not see, and their gates."""

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    MetadataValue,
    Output,
    asset,
    asset_check,
)

from mmm_assets.core.config import TARGET_COLUMN
from mmm_assets.core.records import ModelChoice
from mmm_assets.defs import metadata as md
from mmm_assets.defs.constants import MODEL_GROUP, OWNERS
from mmm_assets.defs.features import mmm_features
from mmm_assets.defs.model import FIT_POOL, shown, stored_features
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import ScenarioResource

CV_TABLE = "cv_folds"


@asset(
    group_name=MODEL_GROUP, kinds={"pymc", "duckdb"}, owners=OWNERS, deps=[mmm_features], partitions_def=MARKETS,
    pool=FIT_POOL, output_required=False,
)
def mmm_cross_validation(context: AssetExecutionContext, scenario: ScenarioResource, model_comparison: ModelChoice):
    """Optional time-slice cross-validation (`validation.cross_validation.enabled`): rolling-origin folds, each a
    refit (of the specification `model_comparison` chose) on the weeks before its origin that forecasts the next
    `horizon_weeks`; out-of-sample MAPE, CRPS, R² and
    HDI coverage per fold in DuckDB table `cv_folds`, checked on the average. Not materialised when switched off.
    """
    cfg = scenario.load().with_candidate(model_comparison.selected)
    settings = cfg.validation.cross_validation
    if not settings.enabled:
        context.log.info("time-slice cross-validation is off (validation.cross_validation.enabled: false)")
        return
    from mmm_assets.core.evaluation.cv import cross_validate
    from mmm_assets.core.presentation.plots import cv_plot

    features = stored_features(scenario, cfg)
    result = cross_validate(cfg, features, context.log.info)
    scenario.store(CV_TABLE, result.folds)
    history = features.rename(columns={TARGET_COLUMN: "actual"})
    yield Output(
        result,
        metadata={
            **{name: MetadataValue.float(shown(value)) for name, value in result.summary.items()},
            "folds": md.table_md(result.folds),
            "cv_plot": md.image(cv_plot(result.forecasts, result.folds, history, cfg.validation.cv_mape_max_pct),
                                "forecasts of every fold"),
            "duckdb_table": MetadataValue.text(CV_TABLE),
        },
    )


@asset_check(
    asset=mmm_cross_validation,
    blocking=False,
    partitions_def=MARKETS,
    description="The folds' mean out-of-sample MAPE (and mean relative CRPS, when configured) within its threshold.",
)
def cross_validation_gates(mmm_cross_validation) -> AssetCheckResult:
    """Passes when every cross-validation gate passed; each gate's value and threshold in the metadata."""
    gates = [g.as_dict() for g in mmm_cross_validation.gates]
    first = gates[0]
    return AssetCheckResult(
        passed=mmm_cross_validation.passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "value": MetadataValue.float(shown(first["value"])),
            "threshold": MetadataValue.float(float("nan") if first["threshold"] is None else first["threshold"]),
            "gates": md.table_md(pd.DataFrame(gates)[["gate", "value", "direction", "threshold", "passed"]]),
            "failed_gates": ", ".join(mmm_cross_validation.failed_gates) or "none",
        },
    )
