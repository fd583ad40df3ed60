"""Dagster definitions: the weekly MMM asset graph, its checks, resources and the refresh job."""

import warnings

from dagster import BetaWarning, PreviewWarning

# dagster-mlflow marks its resource and run hook as beta; we use them on purpose (pinned versions, tested).
warnings.filterwarnings("ignore", category=BetaWarning, message=r".*(_create_mlflow_run_hook|MlFlow)")
# Checks partitioned like their asset (one result per market) are a preview feature; used on purpose, tested.
warnings.filterwarnings("ignore", category=PreviewWarning, message=r".*partitions_def on an AssetCheckSpec")


from dagster import (
    AssetSelection,
    Definitions,
    FilesystemIOManager,
    define_asset_job,
    in_process_executor,
)

from mmm_assets.defs import pool_wait
from mmm_assets.defs.alerts import nonblocking_check_alert_sensor, run_failure_alert_sensor
from mmm_assets.defs.champion import mmm_champion
from mmm_assets.defs.comparison import model_comparison
from mmm_assets.defs.console import console_logger
from mmm_assets.defs.constants import JOB
from mmm_assets.defs.cross_market import all_markets_budget, all_markets_sensor, markets_rollup, plan_all_markets
from mmm_assets.defs.cross_validation import cross_validation_gates, mmm_cross_validation
from mmm_assets.defs.decisions import (
    budget_recommendations,
    budget_scenarios,
    channel_contributions,
    channel_roas,
    mmm_report,
    optimized_budget,
    refresh_stability,
    response_curves,
    window_contributions,
)
from mmm_assets.defs.features import mmm_features, mmm_features_adequacy, mmm_features_quality
from mmm_assets.defs.holdout import pooled_holdout
from mmm_assets.defs.ingest import ground_truth, marketing_spend
from mmm_assets.defs.model import (
    mmm_posterior,
    mmm_quality_gates,
    mmm_validation,
)
from mmm_assets.defs.planner import goal_plans, plan_evaluations, score_plans
from mmm_assets.defs.plausibility import contribution_shares_plausible, roas_plausible
from mmm_assets.defs.prior_checks import channels_measured
from mmm_assets.defs.resources import ScenarioResource, end_mlflow_on_run_finished, mlflow_tracking_for_scenario
from mmm_assets.defs.schedules import weekly_refresh_schedule
from mmm_assets.defs.sensors import dead_run_sensor, landing_file_sensor, market_partitions_sensor, plan_file_sensor

# A step waiting for a pool slot sleeps, logs, frees dead runs' slots and answers Ctrl-C (see the module for why)
pool_wait.install()

ASSETS = [
    marketing_spend,
    ground_truth,
    mmm_features,
    model_comparison,
    pooled_holdout,
    mmm_posterior,
    mmm_validation,
    mmm_champion,
    mmm_cross_validation,
    channel_contributions,
    window_contributions,
    channel_roas,
    response_curves,
    optimized_budget,
    budget_scenarios,
    budget_recommendations,
    goal_plans,
    plan_evaluations,
    mmm_report,
    markets_rollup,
    all_markets_budget,
]
CHECKS = [mmm_features_quality, mmm_features_adequacy, mmm_quality_gates, channels_measured, cross_validation_gates,
          refresh_stability, roas_plausible, contribution_shares_plausible]

#: The whole graph in one process: the heavy PyMC stack is imported once, and DuckDB sees one writer.
weekly_refresh = define_asset_job(
    JOB,
    selection=AssetSelection.all() - AssetSelection.assets(markets_rollup, all_markets_budget),
    executor_def=in_process_executor,
    hooks={end_mlflow_on_run_finished},
    description=(
        "Refresh everything: spend -> features -> posterior -> validation gates -> champion -> decisions, for one "
        "market (the roll-up and the budget across markets are job plan_all_markets)."
    ),
)

defs = Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=[weekly_refresh, score_plans, plan_all_markets],
    schedules=[weekly_refresh_schedule],
    sensors=[
        market_partitions_sensor, landing_file_sensor, run_failure_alert_sensor, nonblocking_check_alert_sensor,
        dead_run_sensor, plan_file_sensor, all_markets_sensor,
    ],
    loggers={"console": console_logger},
    resources={
        "scenario": ScenarioResource(),
        "mlflow": mlflow_tracking_for_scenario,
        "io_manager": FilesystemIOManager(),
    },
)
