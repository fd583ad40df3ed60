"""Sensors that start or repair work: market partitions from the YAML, runs from the landing folder and the plans
folder, dead runs.

The market and landing sensors read the process's scenario ($MMM_CONFIG or config/default.yaml) at every evaluation,
so they follow the file as it is; the landing sensor starts one run per market of each new valid file.
"""

import hashlib
import json
from pathlib import Path

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from mmm_assets.core.config import ConfigError, MMMConfig, load_config
from mmm_assets.core.config.paths import default_config_path
from mmm_assets.core.data import landing_folder
from mmm_assets.core.stores.alerts import Alert, deliver
from mmm_assets.defs.constants import JOB, LANDING_ASSET
from mmm_assets.defs.partitions import MARKETS, unknown_markets
from mmm_assets.defs.planner import SCORE_JOB, score_plans
from mmm_assets.defs.recovery import release_dead_runs


def _default_scenario(config_path: str) -> MMMConfig | SkipReason:
    """The default scenario the sensors follow, or the reason to skip this tick when it cannot be read."""
    try:
        return load_config(config_path)
    except ConfigError as err:
        return SkipReason(f"cannot read the default scenario: {err}")


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
    cfg = _default_scenario(config_path)
    if isinstance(cfg, SkipReason):
        return cfg
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
        f"*.parquet files. A file that passes the input checks launches {JOB} on exactly that file, one run "
        "per market it holds (new markets become partitions); a file that fails them raises one "
        "landing_file_rejected alert instead. Each file content is handled once."
    ),
)
def landing_file_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    """Launch a refresh per new or changed valid landing file; alert once per rejected one."""
    config_path = default_config_path()
    cfg = _default_scenario(config_path)
    if isinstance(cfg, SkipReason):
        return cfg
    if cfg.data.source != "files" or cfg.data.files is None:
        return SkipReason(f"scenario {cfg.scenario} ({config_path}) uses synthetic data: no landing folder to watch")
    folder = cfg.data.files.landing_dir
    try:
        found = landing_folder.scan(cfg, landing_folder.read_cursor(context.cursor))
    except OSError as err:
        return SkipReason(f"cannot list the landing folder {folder}: {err.strerror or type(err).__name__}")
    requests = [_run_request(config_path, f.name, f.sha256, m) for f in found.accepted for m in f.markets]
    for name, (sha, problem) in found.rejected.items():
        context.log.warning(f"rejected landing file {name} (sha256 {sha[:16]}): {problem}")
    deliver(context.log, cfg, [
        Alert(kind="landing_file_rejected", asset=LANDING_ASSET, message=problem)
        for _, problem in found.rejected.values()
    ])
    notes = found.notes + ([f"rejected {', '.join(found.rejected)} (see the alerts log)"] if found.rejected else [])
    new = unknown_markets(context.instance, sorted({m for f in found.accepted for m in f.markets}))
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[MARKETS.build_add_request(new)] if new else None,
        cursor=json.dumps(found.cursor, sort_keys=True),
        skip_reason=None if requests else "; ".join(notes) or f"no new or changed file in {folder}",
    )


def _digest(files) -> str:
    """One hash of the plan files' names and contents: a changed, added or removed file changes it."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{landing_folder.sha256(path)}\0".encode())
    return digest.hexdigest()


@sensor(
    name="plan_file_sensor",
    job=score_plans,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Watches the default scenario's decisions.planner.plans_dir: when a what-if plan file is added, changed or "
        f"removed, {SCORE_JOB} scores the plans again for every market with a budget, without refitting."
    ),
)
def plan_file_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    """One score_plans run per market that has an optimised budget, for each new content of the plans folder."""
    from mmm_assets.core.decisions.plans import plan_files

    config_path = default_config_path()
    cfg = _default_scenario(config_path)
    if isinstance(cfg, SkipReason):
        return cfg
    folder = cfg.decisions.planner.plans_dir
    if folder is None:
        return SkipReason(f"scenario {cfg.scenario} sets no decisions.planner.plans_dir")
    try:
        files = plan_files(folder)
        digest = _digest(files)
    except OSError as err:
        return SkipReason(f"cannot read the plans folder {folder}: {err.strerror or type(err).__name__}")
    if digest == context.cursor:
        return SkipReason(f"no new, changed or removed plan file in {folder}")
    markets = sorted(context.instance.get_materialized_partitions(AssetKey("optimized_budget")))
    scenario = {"config_path": str(config_path)}
    requests = [RunRequest(run_key=f"plans:{digest[:16]}:{market}", partition_key=market,
                           run_config={"resources": {"scenario": {"config": scenario}}},
                           tags={"plan_files": json.dumps([p.name for p in files])[:200]})
                for market in markets]
    return SensorResult(run_requests=requests, cursor=digest,
                        skip_reason=None if requests else "no market has an optimised budget to compare plans with yet")
