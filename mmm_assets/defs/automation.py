"""Unattended operations: the weekly schedule, the landing-folder sensor and the alert sensors.

The schedule and the landing sensor read the default scenario ($MMM_CONFIG or config/default.yaml): the cron once,
when the definitions load, the rest at every evaluation, so they follow the file as it is; both start one run per
market. Alerts go to the alerted run's own scenario's ``paths.alerts_log`` (always) and to the webhook in the
variable named by its ``operations.alert_webhook_env`` (when set), and name the run's market.
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
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    EventLogEntry,
    RunFailureSensorContext,
    RunRequest,
    RunStatusSensorContext,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    schedule,
    sensor,
)

from mmm_assets.core.config import ConfigError, MMMConfig, load_config
from mmm_assets.core.data.calendar import with_calendar
from mmm_assets.core.data.features import validate_features
from mmm_assets.core.data.ingest import SUPPORTED_SUFFIXES, landing_markets, read_landing_file, resolve_landing_file
from mmm_assets.core.errors import InputError
from mmm_assets.core.stores.alerts import Alert, AlertKind, WebhookError, fmt_number, send
from mmm_assets.defs.partitions import MARKETS, register_markets, unknown_markets
from mmm_assets.defs.recovery import release_dead_runs
from mmm_assets.defs.resources import PARTITION_TAG, default_config_path, default_operations

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo

JOB = "weekly_refresh"
#: The asset a landing file feeds; named in the alert of a rejected file.
LANDING_ASSET = "marketing_spend"

_OPS = default_operations()



def _scenario_markets(cfg: MMMConfig, instance: DagsterInstance) -> list[str]:
    """The markets a refresh of the scenario covers: the configured ones, else those its landing file brought."""
    return cfg.market_names if cfg.market_names is not None else instance.get_dynamic_partitions(MARKETS.name)


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
    """One run per market of the default scenario, each on its market's partition."""
    cfg = load_config(default_config_path())
    markets = _scenario_markets(cfg, context.instance)
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


@sensor(
    name="market_partitions_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Keeps the market partitions in step with the default scenario's markets.names: a market added to the YAML "
        "becomes a partition (to refresh or backfill from the UI) within a minute. Markets found in a landing file's "
        "market column are added by landing_file_sensor."
    ),
)
def market_partitions_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    """Add the default scenario's configured markets that are not partitions yet."""
    config_path = default_config_path()
    try:
        cfg = load_config(config_path)
    except ConfigError as err:
        return SkipReason(f"cannot read the default scenario: {err}")
    if cfg.market_names is None:
        return SkipReason(f"scenario {cfg.scenario} takes its markets from the landing file (landing_file_sensor)")
    new = unknown_markets(context.instance, cfg.market_names)
    if not new:
        return SkipReason(f"every market of scenario {cfg.scenario} is a partition: {', '.join(cfg.market_names)}")
    context.log.info(f"adding market partitions {', '.join(new)} (scenario {cfg.scenario}, {config_path})")
    return SensorResult(dynamic_partitions_requests=[MARKETS.build_add_request(new)])


@sensor(
    name="dead_run_sensor",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Marks runs whose process died (kill -9, out of memory, reboot) as failed and frees the pool slots they held, "
        "so the queue and the mmm_fit pool never wait for a run that will not finish (the local run launcher cannot "
        "tell; see mmm_assets/defs/recovery.py)."
    ),
)
def dead_run_sensor(context: SensorEvaluationContext) -> SkipReason:
    """Release runs whose worker is gone; the skip reason says which."""
    released = release_dead_runs(context.instance, context.log.warning)
    if not released:
        return SkipReason("no run with a dead worker, no slot held by a finished run")
    return SkipReason("; ".join(entry.line() for entry in released))


# --- landing folder ---------------------------------------------------------------------------------------------


def _read_cursor(cursor: str | None) -> dict[str, str]:
    """The cursor as {file name: sha256}; an empty or unreadable cursor counts as nothing seen yet."""
    try:
        seen = json.loads(cursor) if cursor else {}
    except json.JSONDecodeError:
        return {}
    return seen if isinstance(seen, dict) else {}


def _sha256(path: Path) -> str:
    """The SHA-256 of the file's bytes, hex, read block by block (a landing file may be hundreds of MB)."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _markets_of(cfg: MMMConfig, name: str) -> list[str]:
    """The markets landing file ``name`` feeds, every one of them valid; raises InputError for the first problem."""
    assert cfg.data.files is not None
    files = cfg.data.files.model_copy(update={"file": name})
    path = resolve_landing_file(files)
    markets = cfg.market_names or landing_markets(path, files.columns)
    for market in markets:
        narrowed = cfg.for_market(market)
        frame = read_landing_file(path, files.columns, market if files.market_column else None)
        where = f"{path} (market {market})" if files.market_column else str(path)
        weekly = with_calendar(frame, narrowed)
        validate_features(weekly, narrowed.channels, narrowed.controls, cfg.validation.min_weeks, where)
    return markets


def _run_request(config_path: str, name: str, sha: str, market: str) -> RunRequest:
    """A weekly_refresh run of one market on exactly this landing file; the run key makes one content launch one
    run per market."""
    scenario = {"config_path": str(Path(config_path).resolve()), "landing_file": name}
    return RunRequest(
        run_key=f"{name}:{sha[:16]}:{market}",
        partition_key=market,
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
        "*.parquet files. A file that passes the input checks launches weekly_refresh on exactly that file, one run "
        "per market it holds (new markets become partitions); a file that fails them raises one "
        "landing_file_rejected alert instead. Each file content is handled once."
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
    markets: set[str] = set()
    rejected: dict[str, Alert] = {}
    notes: list[str] = []
    for name in names:
        try:
            sha = _sha256(folder / name)
            changed = seen.get(name) != sha
            found, problem = _markets_of(cfg, name) if changed else [], None
        except InputError as err:
            found, problem = [], str(err)
        except OSError as err:  # vanished or unreadable since the listing: look again at the next tick
            notes.append(f"{name} could not be read ({err.strerror or type(err).__name__})")
            if name in seen:
                cursor[name] = seen[name]
            continue
        cursor[name] = sha
        if not changed:
            continue
        if problem is None:
            requests += [_run_request(config_path, name, sha, market) for market in found]
            markets.update(found)
        else:
            context.log.warning(f"rejected landing file {name} (sha256 {sha[:16]}): {problem}")
            rejected[name] = Alert(kind="landing_file_rejected", asset=LANDING_ASSET, message=problem)
    _deliver(context.log, cfg, list(rejected.values()))
    if rejected:
        notes.append(f"rejected {', '.join(rejected)} (see the alerts log)")
    skip = None if requests else "; ".join(notes) or f"no new or changed file in {folder}"
    new = unknown_markets(context.instance, sorted(markets))
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[MARKETS.build_add_request(new)] if new else None,
        cursor=json.dumps(cursor, sort_keys=True),
        skip_reason=skip,
    )


# --- alerts on runs ---------------------------------------------------------------------------------------------


def _scenario_of(run: DagsterRun) -> MMMConfig:
    """The scenario a run used (its run config's scenario file; the default one if it named none), narrowed to the
    run's market: its alerts go to that scenario's destinations."""
    scenario = run.run_config.get("resources", {}).get("scenario", {}).get("config", {})
    cfg = load_config(scenario.get("config_path") or default_config_path())
    market = run.tags.get(PARTITION_TAG)
    return cfg.for_market(market) if market else cfg


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
        cfg = _scenario_of(context.dagster_run)
        alerts = [_check_alert(cfg, run_id, e.dagster_event.event_specific_data) for e in failed]
        _raise_undelivered(_deliver(context.log, cfg, alerts))
