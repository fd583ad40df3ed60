"""The weekly schedule: one refresh per market of the process's scenario ($MMM_CONFIG or config/default.yaml).

Its cron and time zone are read once, when the definitions load; the markets at every tick, so they follow the file.
"""

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from mmm_assets.core.config import load_config
from mmm_assets.core.config.paths import default_config_path, default_operations
from mmm_assets.core.data.inputs import scenario_markets
from mmm_assets.defs.constants import JOB
from mmm_assets.defs.partitions import MARKETS, register_markets

_OPS = default_operations()


@schedule(
    name="weekly_refresh_schedule",
    job_name=JOB,
    cron_schedule=_OPS.schedule_cron,
    execution_timezone=_OPS.schedule_timezone,
    default_status=DefaultScheduleStatus.RUNNING,
    description=(
        f"Refreshes the whole graph (job {JOB}), one run per market, on cron '{_OPS.schedule_cron}' in "
        f"{_OPS.schedule_timezone} (operations.schedule_cron / schedule_timezone of {default_config_path()}; "
        "the default is Mondays 06:00 UTC)."
    ),
)
def weekly_refresh_schedule(context: ScheduleEvaluationContext):
    """One run per market of the scenario, each on its market's partition (markets a landing file brought: those
    that are partitions already)."""
    cfg = load_config(default_config_path())
    markets = scenario_markets(cfg, seen=context.instance.get_dynamic_partitions(MARKETS.name))
    if not markets:
        return SkipReason(f"scenario {cfg.scenario} has no market yet: its landing file has not been read")
    register_markets(context.instance, markets)  # a market added to the YAML since the last tick
    stamp = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
    return [
        RunRequest(
            run_key=f"{stamp}:{market}",
            partition_key=market,
            tags={"launched_by": "weekly_refresh_schedule", "scenario": cfg.scenario},
        )
        for market in markets
    ]
