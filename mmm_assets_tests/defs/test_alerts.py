"""Alert sensors on real runs: failed gates, a run failing for another reason, a failed non-blocking check."""

import re

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    DagsterEventType,
    DagsterInstance,
    asset,
    asset_check,
    build_run_status_sensor_context,
    materialize,
)

from mmm_assets import cli
from mmm_assets.core.config import DEFAULT_MARKET, load_config
from mmm_assets.core.stores.alerts import WebhookError, fmt_number
from mmm_assets.defs.alerts import nonblocking_check_alert_sensor, run_failure_alert_sensor
from mmm_assets_tests.conftest import SMALL, merge
from mmm_assets_tests.core.stores.test_alerts import SECRET
from mmm_assets_tests.defs.conftest import read_alerts

UNDERSAMPLED = merge(SMALL, {"sampler": {"chains": 2, "draws": 15, "tune": 15},
                             "validation": {"thresholds": {"ess_bulk_min": 400, "rhat_max": 1.01}}})


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
    alerts = read_alerts(load_config(path).paths.alerts_log)
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
    (alert,) = read_alerts(load_config(config).paths.alerts_log)
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
    (alert,) = read_alerts(load_config(path).paths.alerts_log)
    assert (alert["kind"], alert["asset"], alert["check"]) == ("check_failed", "weekly_kpi", "kpi_above_floor")
    assert (alert["value"], alert["threshold"], alert["severity"]) == (1.0, 5.0, "WARN")
    assert len(webhook.bodies) == 1

    webhook.statuses = [403]  # a refused webhook fails the tick, without the URL; the log still has the alert
    with pytest.raises(WebhookError) as raised:
        _evaluate(nonblocking_check_alert_sensor, result.run_id, DagsterEventType.RUN_SUCCESS)
    assert SECRET not in str(raised.value) and "$MMM_ALERT_WEBHOOK_URL" in str(raised.value)
    assert len(read_alerts(load_config(path).paths.alerts_log)) == 2


