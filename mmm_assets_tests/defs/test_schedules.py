"""The weekly schedule: its cron from the process's scenario, one run per market; the CLI's own scenario."""

import datetime as dt
import os
import subprocess
import sys

from dagster import DagsterInstance, DefaultScheduleStatus, build_schedule_context

from mmm_assets.core.config import DEFAULT_MARKET, load_config
from mmm_assets.core.config.paths import DEFAULT_CONFIG
from mmm_assets.definitions import defs
from mmm_assets.defs.partitions import MARKETS


def test_weekly_schedule_runs_the_refresh_on_the_configured_cron():
    schedule = defs.resolve_schedule_def("weekly_refresh_schedule")
    ops = load_config(DEFAULT_CONFIG).operations
    assert (schedule.cron_schedule, schedule.execution_timezone) == (ops.schedule_cron, ops.schedule_timezone)
    assert (ops.schedule_cron, ops.schedule_timezone) == ("0 6 * * 1", "UTC")
    assert schedule.job_name == "weekly_refresh" and defs.resolve_job_def(schedule.job_name)
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    assert "weekly_refresh" in schedule.description and "0 6 * * 1" in schedule.description
    monday = dt.datetime(2024, 1, 8, 6, tzinfo=dt.UTC)
    instance = DagsterInstance.get()
    context = build_schedule_context(
        instance=instance, scheduled_execution_time=monday, repository_def=defs.get_repository_def()
    )
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.job_name in (None, "weekly_refresh")  # None: the schedule's own job
    assert request.tags["dagster/schedule_name"] == "weekly_refresh_schedule"
    assert request.partition_key == DEFAULT_MARKET
    assert instance.get_dynamic_partitions(MARKETS.name) == [DEFAULT_MARKET]  # registered for the run


def test_schedule_starts_one_run_per_market_of_the_default_scenario(write_config, monkeypatch):
    markets = {"names": ["north", "south", "west"], "data": {"south": {"synthetic": {"seed": 3}}}}
    monkeypatch.setenv("MMM_CONFIG", str(write_config({"markets": markets})))
    instance = DagsterInstance.get()
    tick = dt.datetime(2024, 1, 15, 6, tzinfo=dt.UTC)
    schedule = defs.resolve_schedule_def("weekly_refresh_schedule")
    requests = schedule.evaluate_tick(build_schedule_context(
        instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()
    ))
    assert [r.partition_key for r in requests.run_requests] == ["north", "south", "west"]
    assert len({r.run_key for r in requests.run_requests}) == 3
    assert sorted(instance.get_dynamic_partitions(MARKETS.name)) == ["north", "south", "west"]



def test_schedule_reads_cron_and_time_zone_from_the_default_scenario(write_config):
    path = write_config({"operations": {"schedule_cron": "30 7 * * 2", "schedule_timezone": "Europe/Berlin"}})
    code = (
        "from mmm_assets.defs.schedules import weekly_refresh_schedule as s; "
        "print(s.cron_schedule, '|', s.execution_timezone)"
    )
    env = {**os.environ, "MMM_CONFIG": str(path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "30 7 * * 2 | Europe/Berlin"



def test_the_cli_builds_the_definitions_for_its_own_scenario(write_config):
    """`python -m mmm_assets run --config X` loads the definitions the way this child does (`cli.load_definitions`):
    the schedule and the freshness policy are X's, not default.yaml's, even with $MMM_CONFIG naming another file."""
    path = write_config({"operations": {"schedule_cron": "15 4 * * 3", "schedule_timezone": "Europe/Paris",
                                        "freshness_days": 3}})
    default = load_config(DEFAULT_CONFIG).operations
    assert (default.schedule_cron, default.freshness_days) != ("15 4 * * 3", 3)
    code = (
        "import os, sys; from pathlib import Path; from mmm_assets import cli; "
        "defs = cli.load_definitions(Path(sys.argv[1])); "
        "s = defs.resolve_schedule_def('weekly_refresh_schedule'); graph = defs.resolve_asset_graph(); "
        "days = sorted({graph.get(k).freshness_policy.fail_window.to_timedelta().days "
        "for k in graph.get_all_asset_keys() if graph.get(k).freshness_policy is not None}); "
        "print(s.cron_schedule, '|', s.execution_timezone, '|', days, '|', os.environ.get('MMM_CONFIG'))"
    )
    env = {**os.environ, "MMM_CONFIG": str(DEFAULT_CONFIG)}
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"15 4 * * 3 | Europe/Paris | [3] | {DEFAULT_CONFIG}", out.stderr
