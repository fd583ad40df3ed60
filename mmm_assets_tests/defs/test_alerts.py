"""Alert sensors on real runs: a run failing for another reason, a failed non-blocking check (failed gates: the
whole-graph test's failing refresh, system/test_graph.py)."""


import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    DagsterEventType,
    DagsterInstance,
    asset,
    asset_check,
    materialize,
)

from mmm_assets import cli
from mmm_assets.core.config import DEFAULT_MARKET, load_config
from mmm_assets.core.stores.alerts import WebhookError
from mmm_assets.defs.alerts import nonblocking_check_alert_sensor, run_failure_alert_sensor
from mmm_assets_tests.core.stores.test_alerts import SECRET
from mmm_assets_tests.defs.conftest import evaluate_sensor, read_alerts


def _last_run_id() -> str:
    return DagsterInstance.get().get_runs(limit=1)[0].run_id


def test_a_run_failing_for_another_reason_raises_one_run_alert(landing, webhook, monkeypatch, capsys):
    config, _ = landing  # an empty landing folder: marketing_spend fails
    monkeypatch.setenv("MMM_ALERT_WEBHOOK_URL", webhook.url)
    assert cli.main(["run", "--config", str(config)]) == 2  # input rejected
    out = capsys.readouterr().out
    assert "EXIT 2 (input rejected)" in out and "step marketing_spend: InputError: " in out and "holds no .csv" in out
    run_id = _last_run_id()

    evaluate_sensor(run_failure_alert_sensor, run_id, DagsterEventType.RUN_FAILURE)
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

    evaluate_sensor(nonblocking_check_alert_sensor, result.run_id, DagsterEventType.RUN_SUCCESS)
    (alert,) = read_alerts(load_config(path).paths.alerts_log)
    assert (alert["kind"], alert["asset"], alert["check"]) == ("check_failed", "weekly_kpi", "kpi_above_floor")
    assert (alert["value"], alert["threshold"], alert["severity"]) == (1.0, 5.0, "WARN")
    assert len(webhook.bodies) == 1

    webhook.statuses = [403]  # a refused webhook fails the tick, without the URL; the log still has the alert
    with pytest.raises(WebhookError) as raised:
        evaluate_sensor(nonblocking_check_alert_sensor, result.run_id, DagsterEventType.RUN_SUCCESS)
    assert SECRET not in str(raised.value) and "$MMM_ALERT_WEBHOOK_URL" in str(raised.value)
    assert len(read_alerts(load_config(path).paths.alerts_log)) == 2


