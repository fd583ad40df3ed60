"""One budget across markets (`decisions.budget.scope: all_markets`): the total split over market x channel from
every market's champion, compared with the markets' own plans at the same total.

`all_markets_budget` is the one asset not partitioned by market: it takes every market's `mmm_champion`. Its job
`plan_all_markets` runs after `make run` has refreshed every market, and `all_markets_budget_sensor` starts it in the
UI / daemon once the last market's refresh of a round has succeeded.
"""

import hashlib

import pandas as pd
from dagster import (
    AllPartitionMapping,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetRecordsFilter,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    RunsFilter,
    RunStatusSensorContext,
    SkipReason,
    asset,
    define_asset_job,
    in_process_executor,
    run_status_sensor,
)

from mmm_assets.core.records import Champion
from mmm_assets.defs import metadata as md
from mmm_assets.defs.constants import DECISIONS_GROUP, JOB, OWNERS
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import ScenarioResource

TABLE = "all_markets_budget"
CROSS_MARKET_JOB = "plan_all_markets"


@asset(
    group_name=DECISIONS_GROUP, kinds={"pymc", "scipy", "duckdb"}, owners=OWNERS,
    ins={"mmm_champion": AssetIn(partition_mapping=AllPartitionMapping())},
)
def all_markets_budget(
    context: AssetExecutionContext, scenario: ScenarioResource, mmm_champion: dict[str, Champion]
) -> pd.DataFrame:
    """One total across every market's channels, from each market's champion (its own model or its slice of the
    pooled one): the split that maximises the markets' summed expected incremental KPI within each market's channel
    bounds, against the sum of the markets' own plans at the same total (each market keeping today's share), with
    the uplift's 94 % HDI. Needs `decisions.budget.scope: all_markets` and a champion in every market. DuckDB
    `all_markets_budget` under market `*` (one row per `market_name` and channel, with the market's totals and
    responses).
    """
    from mmm_assets.core.decisions.cross_market import MarketModel, allocate_across_markets
    from mmm_assets.core.formatting import number
    from mmm_assets.core.modelling.persistence import load_model
    from mmm_assets.core.modelling.posterior import fitted_features
    from mmm_assets.core.presentation.plots import cross_market_plot

    cfg = scenario.load_scenario()
    if cfg.decisions.budget.scope != "all_markets":
        raise ValueError(f"scenario {cfg.scenario} plans each market on its own (decisions.budget.scope: market); "
                         "set scope: all_markets for one budget across markets")
    models = {}
    for market, champion in sorted(mmm_champion.items()):
        mmm = load_model(champion.path)
        models[market] = MarketModel(mmm, fitted_features(mmm), cfg.for_market(market).owned_channels)
        context.log.info(f"market {market}: {champion.model_name} v{champion.version}")
    result = allocate_across_markets(models, cfg.decisions.budget)
    context.log.info(f"one budget of {number(result.total_budget)} across {len(models)} markets: expected "
                     f"{number(result.joint_response.mean)} against {number(result.separate_response.mean)} from the "
                     f"markets' own plans ({result.uplift_pct:+.2f} %, {result.method})")
    table = result.allocation.merge(result.markets.drop(columns="current_spend").rename(
        columns={"separate_spend": "market_separate_spend", "joint_spend": "market_joint_spend"}), on="market")
    # the table's own market column says it is over every market (ALL_MARKETS); each row's market is market_name
    table = table.rename(columns={"market": "market_name"})
    scenario.store_all_markets(TABLE, table)
    context.add_output_metadata({
        "dagster/row_count": len(table),
        "total_budget": MetadataValue.float(result.total_budget),
        "horizon": f"{result.horizon_weeks} weeks from {result.start_date:%Y-%m-%d}",
        "expected_response_joint": MetadataValue.float(result.joint_response.mean),
        "expected_response_separate": MetadataValue.float(result.separate_response.mean),
        "uplift_pct": MetadataValue.float(round(result.uplift_pct, 3)),
        "uplift_hdi": f"{number(result.uplift.hdi_low)} .. {number(result.uplift.hdi_high)}",
        "method": result.method,
        "markets": md.table_md(result.markets),
        "allocation": md.table_md(result.allocation),
        "plot": md.image(cross_market_plot(result.allocation, result.markets), "one budget across markets"),
        "duckdb_table": TABLE,
    })
    return table


plan_all_markets = define_asset_job(
    CROSS_MARKET_JOB,
    selection=[all_markets_budget],
    executor_def=in_process_executor,
    description="One budget across every market's channels, from the markets' champions (scope: all_markets).",
)


@run_status_sensor(
    name="all_markets_budget_sensor",
    run_status=DagsterRunStatus.SUCCESS,
    request_job=plan_all_markets,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        f"When a market's {JOB} succeeds and no other market's refresh is queued or running, plans one budget across "
        "the markets (job plan_all_markets), once per set of champions, for a scenario with scope: all_markets."
    ),
)
def all_markets_budget_sensor(context: RunStatusSensorContext):
    """Request plan_all_markets after the last market refresh of a round, keyed by every market's champion."""
    from mmm_assets.core.config import ConfigError, load_config

    run = context.dagster_run
    if run.job_name != JOB:
        return SkipReason(f"run {run.run_id} is not a {JOB} run")
    config_path = run.run_config.get("resources", {}).get("scenario", {}).get("config", {}).get("config_path")
    try:
        cfg = load_config(config_path) if config_path else None
    except ConfigError as err:
        return SkipReason(f"cannot read the run's scenario: {err}")
    if cfg is None or cfg.decisions.budget.scope != "all_markets":
        return SkipReason("the run's scenario plans each market on its own (decisions.budget.scope: market)")
    instance = context.instance
    busy = instance.get_runs(RunsFilter(job_name=JOB, statuses=[
        DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]))
    if busy:
        return SkipReason(f"{len(busy)} market refresh(es) still to finish; the budget across markets waits for them")
    markets = instance.get_dynamic_partitions(MARKETS.name)
    champions = {m: instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("mmm_champion"), asset_partitions=[m]), limit=1).records
        for m in markets}
    missing = sorted(m for m, records in champions.items() if not records)
    if missing:
        return SkipReason(f"market(s) {', '.join(missing)} have no champion yet")
    key = hashlib.sha256(",".join(f"{m}:{r[0].storage_id}" for m, r in sorted(champions.items())).encode()).hexdigest()
    return RunRequest(run_key=f"all_markets:{key[:16]}",
                      run_config={"resources": {"scenario": {"config": {"config_path": config_path}}}})
