"""Unattended operations: the weekly schedule, the landing-folder sensor and the alert sensors, on real runs."""

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    asset,
    asset_check,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
    materialize,
    validate_run_config,
)

from mmm_assets import cli
from mmm_assets.core.config import DEFAULT_MARKET, load_config
from mmm_assets.core.stores.alerts import WebhookError, fmt_number
from mmm_assets.core.synthetic.generator import generate, landing_export
from mmm_assets.definitions import defs
from mmm_assets.defs import automation
from mmm_assets.defs.automation import (
    landing_file_sensor,
    market_partitions_sensor,
    nonblocking_check_alert_sensor,
    run_failure_alert_sensor,
)
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import DEFAULT_CONFIG
from mmm_assets_tests.conftest import SMALL, merge
from mmm_assets_tests.core.stores.test_alerts import SECRET, Webhook

UNDERSAMPLED = merge(SMALL, {"sampler": {"chains": 2, "draws": 15, "tune": 15},
                             "validation": {"thresholds": {"ess_bulk_min": 400, "rhat_max": 1.01}}})


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook() as hook:
        yield hook


def _alerts(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- schedule ---------------------------------------------------------------------------------------------------


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


def test_partitions_sensor_adds_the_markets_of_the_yaml(write_config, monkeypatch):
    path = write_config({"markets": {"names": ["north"]}})
    monkeypatch.setenv("MMM_CONFIG", str(path))
    instance = DagsterInstance.get()

    def tick():
        result = market_partitions_sensor.evaluate_tick(build_sensor_context(instance=instance))
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return result

    assert [list(r.partition_keys) for r in tick().dynamic_partitions_requests] == [["north"]]
    assert "every market of scenario" in tick().skip_message
    path.write_text(path.read_text().replace("names:\n  - north", "names:\n  - north\n  - south"))
    assert [list(r.partition_keys) for r in tick().dynamic_partitions_requests] == [["south"]]
    assert instance.get_dynamic_partitions(MARKETS.name) == ["north", "south"]


def test_schedule_reads_cron_and_time_zone_from_the_default_scenario(write_config):
    path = write_config({"operations": {"schedule_cron": "30 7 * * 2", "schedule_timezone": "Europe/Berlin"}})
    code = (
        "from mmm_assets.defs.automation import weekly_refresh_schedule as s; "
        "print(s.cron_schedule, '|', s.execution_timezone)"
    )
    env = {**os.environ, "MMM_CONFIG": str(path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "30 7 * * 2 | Europe/Berlin"


def test_sensors_are_registered_and_on_by_default():
    names = {"market_partitions_sensor", "landing_file_sensor", "run_failure_alert_sensor",
             "nonblocking_check_alert_sensor", "dead_run_sensor"}
    sensors: dict[str, SensorDefinition] = {s.name: s for s in defs.sensors}
    assert set(sensors) == names
    assert all(s.default_status == DefaultSensorStatus.RUNNING and s.description for s in sensors.values())
    assert sensors["landing_file_sensor"].minimum_interval_seconds == 60
    assert sensors["landing_file_sensor"].job_name == "weekly_refresh"


def test_the_dead_run_sensor_releases_a_run_whose_process_died():
    """Under `make dev` nothing else notices a run whose process was killed: the sensor fails it, frees its slot."""
    from mmm_assets.defs.automation import dead_run_sensor
    from mmm_assets.defs.model import FIT_POOL
    from mmm_assets.defs.recovery import WORKER_HOST_TAG, WORKER_PID_TAG, worker_tags

    instance = DagsterInstance.get()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = DagsterRun(job_name="weekly_refresh", status=DagsterRunStatus.STARTED,
                     tags={WORKER_HOST_TAG: worker_tags()[WORKER_HOST_TAG], WORKER_PID_TAG: str(gone.pid)})
    instance.add_run(run)
    instance.event_log_storage.initialize_concurrency_limit_to_default(FIT_POOL)
    assert instance.event_log_storage.claim_concurrency_slot(FIT_POOL, run.run_id, "mmm_posterior").is_claimed

    result = dead_run_sensor(build_sensor_context(instance=instance))
    assert isinstance(result, SkipReason) and f"released run {run.run_id}" in result.skip_message
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    assert not instance.event_log_storage.get_concurrency_info(FIT_POOL).claimed_slots
    again = dead_run_sensor(build_sensor_context(instance=instance))
    assert again.skip_message.startswith("no run with a dead worker")


# --- landing folder ---------------------------------------------------------------------------------------------


@pytest.fixture
def landing(write_config, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A files scenario as the default scenario (via MMM_CONFIG): its config path and its empty landing folder."""
    path = write_config(
        {"scenario": "landing", "data": {"source": "files", "files": {
            "landing_dir": str(tmp_path / "landing"),
            "columns": {"date": "Week Start", "target": "Revenue (EUR)",
                        "channels": {"adwords": "Google Ads", "facebook": "Facebook", "linkedin": "LinkedIn"}},
        }}}
    )
    monkeypatch.setenv("MMM_CONFIG", str(path))
    folder = tmp_path / "landing"
    folder.mkdir()
    return path, folder


def _landing_frame(config: Path) -> pd.DataFrame:
    frame, _ = generate(load_config(DEFAULT_CONFIG).data.synthetic)
    return landing_export(frame, load_config(config).data.files.columns)


def _tick(cursor: str | None):
    """One evaluation as the daemon does it (an instance ref, so partitions load from the instance with the sensor's
    own additions pending), then the partitions it asks for are added."""
    instance = DagsterInstance.get()
    context = SensorEvaluationContext(
        instance_ref=instance.get_ref(), instance=instance, cursor=cursor, repository_def=defs.get_repository_def()
    )
    result = landing_file_sensor.evaluate_tick(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_landing_sensor_launches_once_per_new_content(landing):
    config, folder = landing
    good = _landing_frame(config)
    good.to_csv(folder / "spend.csv", index=False)
    (folder / "notes.txt").write_text("not a landing file")

    first = _tick(None)
    (request,) = first.run_requests
    sha = _sha(folder / "spend.csv")
    assert request.run_key == f"spend.csv:{sha[:16]}:{DEFAULT_MARKET}" and request.partition_key == DEFAULT_MARKET
    assert {"landing_file": "spend.csv", "sha256": sha}.items() <= request.tags.items()
    assert request.run_config == {
        "resources": {"scenario": {"config": {"config_path": str(config.resolve()), "landing_file": "spend.csv"}}}
    }
    validate_run_config(defs.resolve_job_def("weekly_refresh"), request.run_config)
    assert json.loads(first.cursor) == {"spend.csv": sha}

    unchanged = _tick(first.cursor)
    assert not unchanged.run_requests and "no new or changed file" in unchanged.skip_message

    good.iloc[:-1].to_csv(folder / "spend.csv", index=False)
    (changed,) = _tick(unchanged.cursor).run_requests
    assert changed.run_key == f"spend.csv:{_sha(folder / 'spend.csv')[:16]}:{DEFAULT_MARKET}" != request.run_key
    assert not _alerts(load_config(config).paths.alerts_log)


def test_landing_sensor_alerts_once_for_a_rejected_file(landing, webhook, monkeypatch):
    config, folder = landing
    monkeypatch.setenv("MMM_ALERT_WEBHOOK_URL", webhook.url)
    good = _landing_frame(config)
    pd.concat([good.iloc[:10], good.iloc[[9]], good.iloc[10:]]).to_csv(folder / "spend.csv", index=False)

    rejected = _tick(None)
    assert not rejected.run_requests and "rejected spend.csv" in rejected.skip_message
    assert json.loads(rejected.cursor) == {"spend.csv": _sha(folder / "spend.csv")}
    again = _tick(rejected.cursor)
    assert not again.run_requests

    (alert,) = _alerts(load_config(config).paths.alerts_log)
    assert alert["kind"] == "landing_file_rejected" and alert["asset"] == "marketing_spend"
    assert "spend.csv" in alert["message"] and "duplicate dates: 2019-03-11" in alert["message"]
    (body,) = webhook.bodies
    assert "Landing file rejected" in body["text"]

    good.to_csv(folder / "spend.csv", index=False)  # the fixed file is launched
    assert len(_tick(again.cursor).run_requests) == 1


def test_landing_sensor_skips_what_it_cannot_read(landing, monkeypatch):
    config, folder = landing
    _landing_frame(config).to_csv(folder / "spend.csv", index=False)

    def vanished(path: Path) -> str:
        raise FileNotFoundError(2, "No such file or directory", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(automation, "_sha256", vanished)  # deleted between the listing and the read
        gone = _tick(None)
    assert not gone.run_requests and "spend.csv could not be read" in gone.skip_message
    assert json.loads(gone.cursor) == {}  # not recorded: looked at again next tick
    assert len(_tick(gone.cursor).run_requests) == 1

    folder.rename(folder.with_name("elsewhere"))
    missing = _tick(None)
    assert not missing.run_requests and "cannot list the landing folder" in missing.skip_message


def test_landing_sensor_skips_a_synthetic_scenario():
    result = _tick(None)
    assert not result.run_requests and "synthetic data" in result.skip_message


# --- alerts on runs ---------------------------------------------------------------------------------------------


def _evaluate(sensor, run_id: str, event_type: DagsterEventType):
    """Evaluate a run-status sensor for one finished run, as the daemon would."""
    instance = DagsterInstance.get()
    (entry,) = instance.all_logs(run_id, of_type=event_type)
    context = build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_instance=instance, dagster_run=instance.get_run_by_id(run_id),
        dagster_event=entry.dagster_event,
    )
    return sensor(context)


def _last_run_id() -> str:
    return DagsterInstance.get().get_runs(limit=1)[0].run_id


@pytest.mark.slow
def test_failed_gates_raise_one_alert_per_failed_check(write_config, webhook, monkeypatch, capsys):
    path = write_config(UNDERSAMPLED)
    monkeypatch.setenv("MMM_CONFIG", str(path))
    monkeypatch.setenv("MMM_ALERT_WEBHOOK_URL", webhook.url)
    assert cli.main(["run", "--config", str(path)]) == 1  # a blocking gate failed
    out = capsys.readouterr().out
    assert "EXIT 1 (gates failed)" in out
    assert re.search(r"failed gate\(s\): .*mmm_validation:min_ess_bulk [0-9.e+]+ \(threshold 400\)", out), out
    run_id = _last_run_id()
    evaluations = [e.dagster_event.event_specific_data for e in
                   DagsterInstance.get().all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)]
    failed = {(e.asset_key.to_user_string(), e.check_name): e.metadata for e in evaluations if not e.passed}
    assert ("mmm_validation", "min_ess_bulk") in failed

    _evaluate(run_failure_alert_sensor, run_id, DagsterEventType.RUN_FAILURE)
    alerts = _alerts(load_config(path).paths.alerts_log)
    assert len(alerts) == len(failed) == len(webhook.bodies)
    run_url = f"http://127.0.0.1:3000/runs/{run_id}"
    assert {(a["asset"], a["check"]) for a in alerts} == set(failed)
    for alert, body in zip(alerts, webhook.bodies):
        metadata = failed[alert["asset"], alert["check"]]
        assert alert["kind"] == "blocking_check_failed" and alert["run_url"] == run_url
        assert alert["value"] == pytest.approx(metadata["value"].value)
        assert alert["threshold"] == pytest.approx(metadata["threshold"].value)
        facts = [f["text"] for f in body["blocks"][1]["fields"]]
        numbers = f"{fmt_number(alert['value'])} vs {fmt_number(alert['threshold'])}"
        assert facts[:3] == [
            f"*Asset*\n{alert['asset']}", f"*Check*\n{alert['check']}", f"*Value vs threshold*\n{numbers}"
        ]
        assert f"<{run_url}|{run_id[:8]}>" in facts[-1] and run_url in body["text"]


def test_a_run_failing_for_another_reason_raises_one_run_alert(landing, webhook, monkeypatch, capsys):
    config, _ = landing  # an empty landing folder: marketing_spend fails
    monkeypatch.setenv("MMM_ALERT_WEBHOOK_URL", webhook.url)
    assert cli.main(["run", "--config", str(config)]) == 2  # input rejected
    out = capsys.readouterr().out
    assert "EXIT 2 (input rejected)" in out and "step marketing_spend: InputError: " in out and "holds no .csv" in out
    run_id = _last_run_id()

    _evaluate(run_failure_alert_sensor, run_id, DagsterEventType.RUN_FAILURE)
    (alert,) = _alerts(load_config(config).paths.alerts_log)
    assert alert["kind"] == "run_failed" and alert["run_url"].endswith(f"/runs/{run_id}")
    assert alert["message"].startswith(f"run {run_id} (market {DEFAULT_MARKET}): step marketing_spend failed: ")
    assert "holds no .csv" in alert["message"]
    assert len(webhook.bodies) == 1


@asset
def weekly_kpi() -> float:
    """A tiny asset whose non-blocking checks give a successful run with one failed check."""
    return 1.0


@asset_check(asset=weekly_kpi, blocking=False)
def kpi_above_floor() -> AssetCheckResult:
    return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN, metadata={"value": 1.0, "threshold": 5.0})


@asset_check(asset=weekly_kpi, blocking=False)
def kpi_present() -> AssetCheckResult:
    return AssetCheckResult(passed=True, metadata={"value": 1.0, "threshold": 0.0})


def test_failed_non_blocking_check_of_a_successful_run_raises_one_alert(write_config, webhook, monkeypatch):
    path = write_config()
    monkeypatch.setenv("MMM_CONFIG", str(path))
    monkeypatch.setenv("MMM_ALERT_WEBHOOK_URL", webhook.url)
    result = materialize([weekly_kpi, kpi_above_floor, kpi_present], instance=DagsterInstance.get())
    assert result.success

    _evaluate(nonblocking_check_alert_sensor, result.run_id, DagsterEventType.RUN_SUCCESS)
    (alert,) = _alerts(load_config(path).paths.alerts_log)
    assert (alert["kind"], alert["asset"], alert["check"]) == ("check_failed", "weekly_kpi", "kpi_above_floor")
    assert (alert["value"], alert["threshold"], alert["severity"]) == (1.0, 5.0, "WARN")
    assert len(webhook.bodies) == 1

    webhook.statuses = [403]  # a refused webhook fails the tick, without the URL; the log still has the alert
    with pytest.raises(WebhookError) as raised:
        _evaluate(nonblocking_check_alert_sensor, result.run_id, DagsterEventType.RUN_SUCCESS)
    assert SECRET not in str(raised.value) and "$MMM_ALERT_WEBHOOK_URL" in str(raised.value)
    assert len(_alerts(load_config(path).paths.alerts_log)) == 2

