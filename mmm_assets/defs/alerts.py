"""Alert sensors: a failed run, or a successful one with failed non-blocking checks, raises alerts.

Alerts go to the alerted run's own scenario's ``paths.alerts_log`` (always) and to the webhook in the variable named
by its ``operations.alert_webhook_env`` (when set), and name the run's market.
"""

from typing import TYPE_CHECKING

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    EventLogEntry,
    RunFailureSensorContext,
    RunStatusSensorContext,
    run_failure_sensor,
    run_status_sensor,
)

from mmm_assets.core.config import MMMConfig, load_config
from mmm_assets.core.config.paths import default_config_path
from mmm_assets.core.stores.alerts import Alert, AlertKind, WebhookError, deliver, fmt_number
from mmm_assets.defs.constants import PARTITION_TAG

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo


def _scenario_of(run: DagsterRun) -> MMMConfig:
    """The scenario a run used (its run config's scenario file; the default one if it named none), narrowed to the
    run's market: its alerts go to that scenario's destinations."""
    scenario = run.run_config.get("resources", {}).get("scenario", {}).get("config", {})
    cfg = load_config(scenario.get("config_path") or default_config_path())
    market = run.tags.get(PARTITION_TAG)
    return cfg.for_market(market) if market else cfg


def _raise_undelivered(errors: list[str]) -> None:
    """Fail the sensor tick (visible in the UI) when the webhook refused alerts; they are in the JSONL log."""
    if errors:
        raise WebhookError(f"{len(errors)} alert(s) not posted (all are in the alerts log): {errors[0]}")


def _run_url(cfg: MMMConfig, run_id: str) -> str:
    """The run's page in the Dagster UI."""
    return f"{cfg.operations.ui_base_url.rstrip('/')}/runs/{run_id}"


def _number(evaluation: AssetCheckEvaluation, key: str) -> float | None:
    """A numeric metadata entry of the evaluation (e.g. ``value``, ``threshold``); None when absent or not a number."""
    entry = evaluation.metadata.get(key)
    value = entry.value if entry is not None else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _failed_checks(instance: DagsterInstance, run_id: str) -> list[EventLogEntry]:
    """The run's ASSET_CHECK_EVALUATION entries of checks that did not pass, in the order they ran."""
    entries = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    return [e for e in entries if e.dagster_event is not None and not e.dagster_event.event_specific_data.passed]


def _is_blocking(evaluation: AssetCheckEvaluation) -> bool:
    """Whether this failure stops the run: a blocking check that failed with ERROR severity."""
    return bool(evaluation.blocking) and evaluation.severity == AssetCheckSeverity.ERROR


def _embeds_image(value: object) -> bool:
    """Whether a metadata value is an inline image (a plot): shown in the UI, not pasted into an alert's text."""
    return isinstance(getattr(value, "value", None), str) and "](data:image/" in value.value


def _check_alert(cfg: MMMConfig, run_id: str, evaluation: AssetCheckEvaluation) -> Alert:
    """The alert for one failed check: value vs threshold, the check's other metadata and a link to the run."""
    asset, check = evaluation.asset_key.to_user_string(), evaluation.check_name
    value, threshold = _number(evaluation, "value"), _number(evaluation, "threshold")
    details = [f"{k}: {v.value}" for k, v in evaluation.metadata.items()
               if k not in {"value", "threshold"} and not _embeds_image(v)]
    kind: AlertKind = "blocking_check_failed" if _is_blocking(evaluation) else "check_failed"
    numbers = f"value {fmt_number(value)} vs threshold {fmt_number(threshold)}"
    message = f"check {check} of {asset} failed in run {run_id}{_of_market(cfg)}: {numbers}"
    return Alert(
        kind=kind,
        asset=asset,
        check=check,
        value=value,
        threshold=threshold,
        severity=evaluation.severity.value,
        run_id=run_id,
        run_url=_run_url(cfg, run_id),
        message="; ".join([message, *details]),
    )


def _of_market(cfg: MMMConfig) -> str:
    return f" (market {cfg.market})" if cfg.market else ""


def _root_message(error: "SerializableErrorInfo") -> str:
    """The innermost cause of a serialised error: the user's exception rather than Dagster's wrapper."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def _run_alert(cfg: MMMConfig, context: RunFailureSensorContext, steps: list[DagsterEvent]) -> Alert:
    """The alert for a failed run: the first failing step and its error, or the run's own failure message."""
    run_id = context.dagster_run.run_id
    if steps:
        first = steps[0]
        message = f"step {first.step_key} failed: {_root_message(first.event_specific_data.error)}"
        if len(steps) > 1:
            message += f" (also failed: {', '.join(e.step_key for e in steps[1:])})"
    else:
        error = getattr(context.failure_event.event_specific_data, "error", None)
        message = context.failure_event.message or "the run failed"
        message += f": {_root_message(error)}" if error is not None else ""
    return Alert(kind="run_failed", message=f"run {run_id}{_of_market(cfg)}: {message}", run_id=run_id,
                 run_url=_run_url(cfg, run_id))


@run_failure_sensor(
    name="run_failure_alert_sensor",
    monitor_all_code_locations=True,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Alerts on every failed run: one blocking_check_failed alert per failed check (value vs threshold and a "
        "link to the run), and one run_failed alert naming the failing step and its error when the failure is not "
        "explained by a failed blocking check. To the alerts log, and to the webhook when it is set."
    ),
)
def run_failure_alert_sensor(context: RunFailureSensorContext) -> None:
    """One alert per failed check of the run, plus one for the run when a step failed for another reason."""
    cfg = _scenario_of(context.dagster_run)
    run_id = context.dagster_run.run_id
    failed = _failed_checks(context.instance, run_id)
    alerts = [_check_alert(cfg, run_id, e.dagster_event.event_specific_data) for e in failed]
    explained = {e.step_key for e in failed if _is_blocking(e.dagster_event.event_specific_data)}
    other_steps = [e for e in context.get_step_failure_events() if e.step_key not in explained]
    if other_steps or not explained:
        alerts.append(_run_alert(cfg, context, other_steps))
    _raise_undelivered(deliver(context.log, cfg, alerts))


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    name="nonblocking_check_alert_sensor",
    monitor_all_code_locations=True,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Alerts on runs that succeeded with failed non-blocking checks: one check_failed alert per failed check "
        "(value vs threshold and a link to the run). To the alerts log, and to the webhook when it is set."
    ),
)
def nonblocking_check_alert_sensor(context: RunStatusSensorContext) -> None:
    """One check_failed alert per check that failed in a successful run."""
    run_id = context.dagster_run.run_id
    failed = _failed_checks(context.instance, run_id)
    if failed:
        cfg = _scenario_of(context.dagster_run)
        alerts = [_check_alert(cfg, run_id, e.dagster_event.event_specific_data) for e in failed]
        _raise_undelivered(deliver(context.log, cfg, alerts))
