"""Unattended operations: the weekly schedule, the landing-folder sensor and the alert sensors.

Everything reads the default scenario ($MMM_CONFIG or config/default.yaml): the schedule once, when the definitions
load; the sensors at every evaluation, so they follow the file as it is. Alerts go to the scenario's
``paths.alerts_log`` (always) and to the webhook in the variable named by ``operations.alert_webhook_env`` (when set).
"""

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    EventLogEntry,
    RunFailureSensorContext,
    RunRequest,
    RunStatusSensorContext,
    ScheduleDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from mmm_assets.core.alerts import Alert, AlertKind, WebhookError, fmt_number, send
from mmm_assets.core.config import ConfigError, MMMConfig, load_config
from mmm_assets.core.errors import InputError
from mmm_assets.core.features import validate_features
from mmm_assets.core.ingest import SUPPORTED_SUFFIXES, read_landing_file, resolve_landing_file
from mmm_assets.defs.resources import default_config_path, default_operations

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo

JOB = "weekly_refresh"
#: The asset a landing file feeds; named in the alert of a rejected file.
LANDING_ASSET = "marketing_spend"

_OPS = default_operations()

weekly_refresh_schedule = ScheduleDefinition(
    name="weekly_refresh_schedule",
    job_name=JOB,
    cron_schedule=_OPS.schedule_cron,
    execution_timezone=_OPS.schedule_timezone,
    default_status=DefaultScheduleStatus.RUNNING,
    tags={"launched_by": "weekly_refresh_schedule"},
    description=(
        f"Refreshes the whole graph (job {JOB}) on cron '{_OPS.schedule_cron}' in {_OPS.schedule_timezone} "
        f"(operations.schedule_cron / schedule_timezone of {default_config_path()}; the default is Mondays 06:00 UTC)."
    ),
)


# --- landing folder ---------------------------------------------------------------------------------------------


def _read_cursor(cursor: str | None) -> dict[str, str]:
    """The cursor as {file name: sha256}; an empty or unreadable cursor counts as nothing seen yet."""
    try:
        seen = json.loads(cursor) if cursor else {}
    except json.JSONDecodeError:
        return {}
    return seen if isinstance(seen, dict) else {}


def _sha256(path: Path) -> str:
    """The SHA-256 of the file's bytes, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rejection(cfg: MMMConfig, name: str) -> str | None:
    """Why landing file ``name`` cannot be modelled (the InputError message), or None when it can."""
    assert cfg.data.files is not None
    files = cfg.data.files.model_copy(update={"file": name})
    try:
        path = resolve_landing_file(files)
        frame = read_landing_file(path, files.columns)
        validate_features(frame, cfg.channels, cfg.controls, cfg.validation.min_weeks, str(path))
    except InputError as err:
        return str(err)
    return None


def _run_request(config_path: str, name: str, sha: str) -> RunRequest:
    """A weekly_refresh run on exactly this landing file; the run key makes one content launch one run."""
    scenario = {"config_path": str(Path(config_path).resolve()), "landing_file": name}
    return RunRequest(
        run_key=f"{name}:{sha[:16]}",
        run_config={"resources": {"scenario": {"config": scenario}}},
        tags={"landing_file": name, "sha256": sha},
    )


@sensor(
    name="landing_file_sensor",
    job_name=JOB,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Watches the landing folder of the default scenario (data.source: files) for new or changed *.csv / "
        "*.parquet files. A file that passes the input checks launches weekly_refresh on exactly that file; a file "
        "that fails them raises one landing_file_rejected alert instead. Each file content is handled once."
    ),
)
def landing_file_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    """Launch a refresh per new or changed valid landing file; alert once per rejected one."""
    config_path = default_config_path()
    try:
        cfg = load_config(config_path)
    except ConfigError as err:
        return SkipReason(f"cannot read the default scenario: {err}")
    files = cfg.data.files
    if cfg.data.source != "files" or files is None:
        return SkipReason(f"scenario {cfg.scenario} ({config_path}) uses synthetic data: no landing folder to watch")
    folder = files.landing_dir
    try:
        names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES and p.is_file())
    except OSError as err:
        return SkipReason(f"cannot list the landing folder {folder}: {err.strerror or type(err).__name__}")

    seen = _read_cursor(context.cursor)
    cursor: dict[str, str] = {}
    requests: list[RunRequest] = []
    rejected: dict[str, Alert] = {}
    notes: list[str] = []
    for name in names:
        try:
            sha = _sha256(folder / name)
            changed = seen.get(name) != sha
            problem = _rejection(cfg, name) if changed else None
        except OSError as err:  # vanished or unreadable since the listing: look again at the next tick
            notes.append(f"{name} could not be read ({err.strerror or type(err).__name__})")
            if name in seen:
                cursor[name] = seen[name]
            continue
        cursor[name] = sha
        if not changed:
            continue
        if problem is None:
            requests.append(_run_request(config_path, name, sha))
        else:
            context.log.warning(f"rejected landing file {name} (sha256 {sha[:16]}): {problem}")
            rejected[name] = Alert(kind="landing_file_rejected", asset=LANDING_ASSET, message=problem)
    _deliver(context.log, cfg, list(rejected.values()))
    if rejected:
        notes.append(f"rejected {', '.join(rejected)} (see the alerts log)")
    skip = None if requests else "; ".join(notes) or f"no new or changed file in {folder}"
    return SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True), skip_reason=skip)


# --- alerts on runs ---------------------------------------------------------------------------------------------


def _deliver(log: logging.Logger, cfg: MMMConfig, alerts: Sequence[Alert]) -> list[str]:
    """Send every alert (JSONL always, webhook when its variable is set); log and return the webhook errors."""
    env = cfg.operations.alert_webhook_env
    url = os.environ.get(env) or None
    errors = []
    for alert in alerts:
        done = send(alert, url, cfg.paths.alerts_log, webhook_env=env)
        posted = f", posted to the webhook in ${env}" if done.posted else ""
        log.info(f"alert {alert.title}: logged to {done.logged_to}{posted}")
        if done.webhook_error:
            log.error(done.webhook_error)
            errors.append(done.webhook_error)
    return errors


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


def _check_alert(cfg: MMMConfig, run_id: str, evaluation: AssetCheckEvaluation) -> Alert:
    """The alert for one failed check: value vs threshold, the check's other metadata and a link to the run."""
    asset, check = evaluation.asset_key.to_user_string(), evaluation.check_name
    value, threshold = _number(evaluation, "value"), _number(evaluation, "threshold")
    details = [f"{k}: {v.value}" for k, v in evaluation.metadata.items() if k not in {"value", "threshold"}]
    kind: AlertKind = "blocking_check_failed" if _is_blocking(evaluation) else "check_failed"
    numbers = f"value {fmt_number(value)} vs threshold {fmt_number(threshold)}"
    message = f"check {check} of {asset} failed in run {run_id}: {numbers}"
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
    return Alert(kind="run_failed", message=message, run_id=run_id, run_url=_run_url(cfg, run_id))


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
    cfg = load_config(default_config_path())
    run_id = context.dagster_run.run_id
    failed = _failed_checks(context.instance, run_id)
    alerts = [_check_alert(cfg, run_id, e.dagster_event.event_specific_data) for e in failed]
    explained = {e.step_key for e in failed if _is_blocking(e.dagster_event.event_specific_data)}
    other_steps = [e for e in context.get_step_failure_events() if e.step_key not in explained]
    if other_steps or not explained:
        alerts.append(_run_alert(cfg, context, other_steps))
    _raise_undelivered(_deliver(context.log, cfg, alerts))


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
        cfg = load_config(default_config_path())
        alerts = [_check_alert(cfg, run_id, e.dagster_event.event_specific_data) for e in failed]
        _raise_undelivered(_deliver(context.log, cfg, alerts))
