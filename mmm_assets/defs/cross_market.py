"""Every market at once: the roll-up of the markets' contributions and returns, and one budget across markets
(`decisions.budget.scope: all_markets`): the total split over market x channel from every market's champion, compared
with the markets' own plans at the same total.

`markets_rollup` and `all_markets_budget` are the assets not partitioned by market: they take every market's
`mmm_champion` (the roll-up also every market's `window_contributions`, the draws it adds up). Their job
`plan_all_markets` runs after `make run` has refreshed every market of a multi-market scenario, and
`all_markets_sensor` starts it in the UI / daemon once the last market's refresh of a round has succeeded. The budget
is planned only under scope all_markets; otherwise the job rolls up and skips it.
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
    Output,
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
ROLLUP_TABLE = "markets_rollup"
CROSS_MARKET_JOB = "plan_all_markets"
#: Every market's champion, for the assets over all markets.
ALL_CHAMPIONS = {"mmm_champion": AssetIn(partition_mapping=AllPartitionMapping())}


def scenario_champions(cfg, champions: dict[str, Champion], log) -> dict[str, Champion]:
    """The champions of the scenario's own markets. The instance's market partitions are every scenario's run on it,
    so the others' markets are left out (said in the log), and a market of this scenario whose latest champion is
    another scenario's model (the same market name refreshed under another scenario last) fails the step. Markets
    from a landing file's market column are the partitions whose champion is this scenario's model."""
    from dagster import Failure

    from mmm_assets.core.stores.tracking import model_name

    names = cfg.market_names
    if names is None:
        names = [m for m, champion in champions.items() if champion.model_name == model_name(cfg.for_market(m))]
    wrong = {}
    for market in names:
        expected = model_name(cfg.for_market(market))
        if market in champions and champions[market].model_name != expected:
            wrong[market] = f"{champions[market].model_name} instead of {expected}"
    if wrong:
        raise Failure(description=(
            f"scenario {cfg.scenario}: the latest champion of market(s) {', '.join(sorted(wrong))} is another "
            f"scenario's model ({'; '.join(f'{m}: {w}' for m, w in sorted(wrong.items()))}); refresh those markets "
            "under this scenario, then run plan_all_markets again"), allow_retries=False)
    others = sorted(set(champions) - set(names))
    if others:
        log.info(f"left out market(s) {', '.join(others)}: not markets of scenario {cfg.scenario}")
    return {market: champions[market] for market in names if market in champions}


@asset(group_name=DECISIONS_GROUP, kinds={"pymc", "duckdb"}, owners=OWNERS, ins={
    **ALL_CHAMPIONS,
    # markets of other scenarios on the instance may have none (they are left out anyway)
    "window_contributions": AssetIn(partition_mapping=AllPartitionMapping(),
                                    metadata={"allow_missing_partitions": True}),
})
def markets_rollup(
    context: AssetExecutionContext, scenario: ScenarioResource, mmm_champion: dict[str, Champion],
    window_contributions: dict,
) -> pd.DataFrame:
    """Every market's channels and their sum over the markets (rows `all markets`), each with a row over all
    channels: spend, incremental contribution and return (CPA for conversions) with 94 % HDIs, summed draw by draw
    from every market's `window_contributions` (core/decisions/rollup.py), and each channel's share of the media's
    contribution. DuckDB `markets_rollup` under market `*` (each row's market in `market_name`).
    """
    from dagster import Failure

    from mmm_assets.core.decisions.kpi import KpiTerms
    from mmm_assets.core.decisions.rollup import ALL_CHANNELS_ROW, ALL_MARKETS_ROW, roll_up
    from mmm_assets.core.formatting import number
    from mmm_assets.core.presentation.plots import rollup_plot

    cfg = scenario.load_scenario()
    windows, stale = {}, {}
    for market, champion in sorted(scenario_champions(cfg, mmm_champion, context.log).items()):
        name = f"{champion.model_name} v{champion.version}"
        draws = window_contributions.get(market)
        if draws is None or draws.champion != name:
            stale[market] = f"{'none' if draws is None else draws.champion}, the champion is {name}"
            continue
        windows[market] = draws
        context.log.info(f"market {market}: {name}")
    if stale:
        raise Failure(description=(
            f"scenario {cfg.scenario}: the window_contributions of market(s) {', '.join(stale)} are not their "
            f"champion's ({'; '.join(f'{m}: {w}' for m, w in stale.items())}); refresh those markets (or "
            "materialise window_contributions for them), then run plan_all_markets again"), allow_retries=False)
    table = roll_up(windows, cfg.kpi)
    overall = table[(table["market_name"] == ALL_MARKETS_ROW) & (table["channel"] == ALL_CHANNELS_ROW)].iloc[0]
    context.log.info(f"{len(windows)} markets together: {number(overall['contribution_mean'])} incremental KPI from "
                     f"{number(overall['spend'])} spend (return {overall['roas_mean']:.3f}, 94 % HDI "
                     f"{overall['roas_hdi_low']:.3f}..{overall['roas_hdi_high']:.3f})")
    scenario.store_all_markets(ROLLUP_TABLE, table)
    context.add_output_metadata({
        "dagster/row_count": len(table),
        "markets": MetadataValue.int(len(windows)),
        "all_markets_return": MetadataValue.float(float(overall["roas_mean"])),
        "all_markets": md.table_md(table[table["market_name"] == ALL_MARKETS_ROW]),
        "plot": md.image(rollup_plot(table, KpiTerms.of(cfg.kpi)), "every market and all markets together"),
        "duckdb_table": ROLLUP_TABLE,
    })
    return table


@asset(group_name=DECISIONS_GROUP, kinds={"pymc", "scipy", "duckdb"}, owners=OWNERS, ins=ALL_CHAMPIONS,
       output_required=False)
def all_markets_budget(context: AssetExecutionContext, scenario: ScenarioResource, mmm_champion: dict[str, Champion]):
    """One total across every market's channels, from each market's champion (its own model or its slice of the
    pooled one): the split that maximises the markets' summed expected incremental KPI within each market's channel
    bounds, against the sum of the markets' own plans at the same total (each market keeping today's share), with
    the uplift's 94 % HDI. Planned under `decisions.budget.scope: all_markets` (skipped, with a log line, under
    scope market); needs a champion in every market. DuckDB `all_markets_budget` under market `*` (one row per
    `market_name` and channel, with the market's totals and responses).
    """
    from mmm_assets.core.decisions.cross_market import MarketModel, allocate_across_markets
    from mmm_assets.core.formatting import number
    from mmm_assets.core.modelling.persistence import load_model
    from mmm_assets.core.modelling.posterior import fitted_features
    from mmm_assets.core.presentation.plots import cross_market_plot

    cfg = scenario.load_scenario()
    if cfg.decisions.budget.scope != "all_markets":
        context.log.info(f"scenario {cfg.scenario} plans each market on its own (decisions.budget.scope: market): no "
                         "budget across markets (set scope: all_markets for one)")
        return
    models = {}
    for market, champion in sorted(scenario_champions(cfg, mmm_champion, context.log).items()):
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
    yield Output(table)


plan_all_markets = define_asset_job(
    CROSS_MARKET_JOB,
    selection=[markets_rollup, all_markets_budget],
    executor_def=in_process_executor,
    description=("Every market at once, from the markets' champions: the roll-up of contributions and returns, and "
                 "one budget across every market's channels (scope: all_markets)."),
)


@run_status_sensor(
    name="all_markets_sensor",
    run_status=DagsterRunStatus.SUCCESS,
    request_job=plan_all_markets,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        f"When a market's {JOB} succeeds and no other market's refresh is queued or running, rolls the markets up "
        "and, for a scenario with scope: all_markets, plans one budget across them (job plan_all_markets), once per "
        "set of champions."
    ),
)
def all_markets_sensor(context: RunStatusSensorContext):
    """Request plan_all_markets after the last market refresh of a round, keyed by every market's champion."""
    from mmm_assets.core.config import ConfigError, load_config
    from mmm_assets.core.config.paths import default_config_path

    run = context.dagster_run
    if run.job_name != JOB:
        return SkipReason(f"run {run.run_id} is not a {JOB} run")
    # a run launched without config (schedule, backfill) used the code location's scenario, as this sensor does
    config_path = run.run_config.get("resources", {}).get("scenario", {}).get("config", {}).get("config_path")
    config_path = config_path or str(default_config_path())
    try:
        cfg = load_config(config_path)
    except ConfigError as err:
        return SkipReason(f"cannot read the run's scenario: {err}")
    instance = context.instance
    busy = instance.get_runs(RunsFilter(job_name=JOB, statuses=[
        DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]))
    if busy:
        return SkipReason(f"{len(busy)} market refresh(es) still to finish; the view across markets waits for them")
    # the instance's partitions hold every scenario's markets; the run's own are its configured ones
    markets = cfg.market_names if cfg.market_names is not None else instance.get_dynamic_partitions(MARKETS.name)
    if len(markets) < 2:
        return SkipReason(f"one market ({', '.join(markets)}): nothing to roll up or plan across markets")
    champions = {m: instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("mmm_champion"), asset_partitions=[m]), limit=1).records
        for m in markets}
    missing = sorted(m for m, records in champions.items() if not records)
    if missing:
        return SkipReason(f"market(s) {', '.join(missing)} have no champion yet")
    key = hashlib.sha256(",".join(f"{m}:{r[0].storage_id}" for m, r in sorted(champions.items())).encode()).hexdigest()
    return RunRequest(run_key=f"all_markets:{key[:16]}",
                      run_config={"resources": {"scenario": {"config": {"config_path": config_path}}}})
