"""`python -m mmm_assets run`: materialise the whole graph on the embedded instance and print a summary.

One Dagster run per market (partition), recorded in the instance under $DAGSTER_HOME, so `make dev` shows them
afterwards; several markets run at once, at most `operations.max_parallel_runs` (by default what the machine's cores
and memory allow), each worker process refreshing one market after another while the others wait their turn. The exit status says how a run ended
(`defs.outcome.Exit`: 0 refreshed, 1 a blocking gate failed, 2 input rejected, 3 infrastructure, 4 unexpected,
130 interrupted), and the last lines on stdout say why. Refreshes of one market take turns: a second one started
while another runs waits for it (an exclusive lock on $DAGSTER_HOME/refresh.<market>.lock). Before a refresh starts,
runs whose process died (kill -9, out of memory, reboot) are marked failed and their pool slots freed.
"""

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd

from mmm_assets.core.config import ConfigError, MMMConfig, load_config
from mmm_assets.core.errors import InputError
from mmm_assets.core.records import ValidationReport
from mmm_assets.core.stores.duckdb_store import exclusive
from mmm_assets.work_queue import DONE_MARK, START_MARK, run_queued
from mmm_assets.work_queue import say as _say


def _summary(result, verdict, cfg, config_path: Path, seconds: float) -> str:
    lines = [
        f"scenario {cfg.scenario} ({config_path}), market {cfg.market} - run {result.run_id} - {seconds:.0f} s"
    ]
    checks = sorted(result.get_asset_check_evaluations(), key=lambda e: e.check_name)
    if checks:
        passed = sum(e.passed for e in checks)
        lines.append(f"checks: {passed}/{len(checks)} passed")
        for e in checks:
            value = e.metadata.get("value")
            shown = f" (value {value.value:.4g}, threshold {e.metadata['threshold'].value:.4g})" if value else ""
            lines.append(f"  {'PASS' if e.passed else 'FAIL'}  {e.asset_key.to_user_string()}:{e.check_name}{shown}")
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    lines.append(f"materialised: {', '.join(sorted(materialized)) or 'nothing'}")
    selected = {key.to_user_string() for key in result.job_def.asset_layer.selected_asset_keys}
    succeeded = {e.step_key for e in result.all_events if e.is_step_success}
    switched_off = (selected - materialized) & succeeded  # optional assets whose step ran and chose not to
    if switched_off:
        lines.append(f"switched off in the scenario: {', '.join(sorted(switched_off))}")
    if selected - materialized - switched_off:
        lines.append(
            "not materialised (blocked by a failed check or an upstream failure): "
            + ", ".join(sorted(selected - materialized - switched_off))
        )
    try:
        report: ValidationReport = result.output_for_node("mmm_validation")
    except Exception:  # the step did not produce an output (failed or skipped)
        report = None
    if report is not None and report.recovery is not None:
        table = report.recovery[["channel", "parameter", "true", "estimate", "hdi_low", "hdi_high", "error"]]
        with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 120):
            lines.append("recovered vs true parameters (error: relative for lam, absolute for alpha):")
            lines.append(table.to_string(index=False))
    lines.append(f"outputs: DuckDB {cfg.paths.duckdb}, models {cfg.paths.models_dir}")
    lines.append(f"browse: make dev (Dagster UI on 127.0.0.1, instance {os.environ.get('DAGSTER_HOME')})")
    lines.append("RESULT: " + ("success" if result.success else "FAILED"))
    lines.extend(verdict.lines())
    return "\n".join(lines)


def lock_file(market: str) -> str:
    """The file under $DAGSTER_HOME whose exclusive lock a market's refresh holds from start to end."""
    return f"refresh.{market}.lock"


def refresh_lock(path: Path, holder_is: str = "the refresh already running"):
    """An exclusive lock on ``path`` for the block; says on stderr whom it waits for while another process holds it."""
    return exclusive(
        path, lambda pid: print(f"waiting for {holder_is} (pid {pid}) to finish; lock {path}", file=sys.stderr, flush=True)
    )


def load_definitions(config_path: Path):
    """The Dagster definitions, imported with ``config_path`` as the process's scenario: the schedule's cron and time
    zone and the assets' freshness policy are that scenario's, not default.yaml's. They are built once per process,
    on first import, so call this before anything imports mmm_assets.definitions."""
    from mmm_assets.core.config.paths import serving

    with serving(config_path):
        from mmm_assets.definitions import defs
    return defs


def run(config_path: Path, market: str | None = None) -> int:
    """Refresh every market of the scenario (or only ``market``): one Dagster run per market; returns an `Exit`."""
    from dagster import DagsterInstance

    from mmm_assets.core.data.inputs import scenario_markets
    from mmm_assets.defs.outcome import Exit
    from mmm_assets.defs.partitions import register_markets
    from mmm_assets.defs.recovery import release_dead_runs

    try:
        cfg = load_config(config_path)
        markets = [cfg.for_market(market).market] if market else scenario_markets(cfg)
    except (ConfigError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        print(f"input rejected: {err}")
        return Exit.INPUT_REJECTED
    if not os.environ.get("DAGSTER_HOME"):
        print("error: DAGSTER_HOME is not set (`make run` sets it to .dagster_home in the project)", file=sys.stderr)
        return Exit.INPUT_REJECTED
    home = Path(os.environ["DAGSTER_HOME"])
    with refresh_lock(home / "instance.lock", "another process setting up the Dagster instance"):
        instance = DagsterInstance.get()
        release_dead_runs(instance, _say)
        register_markets(instance, markets)
    if len(markets) == 1:
        return _run_market(config_path, cfg.for_market(markets[0]))
    from mmm_assets.core.stores import tracking

    # the stores the market runs share are set up once, here, not by several processes racing to create them
    tracking.ensure_experiment(tracking.client_for(cfg), cfg)
    code = _run_markets(config_path, markets, *parallel_runs(cfg.operations.max_parallel_runs), inputs_first=cfg.pooled)
    if code != Exit.SUCCESS:
        print("every market at once (roll-up, one budget across markets): skipped, since a market's refresh did not "
              "succeed (its champion and horizon would be older than the others'); run again once every market "
              "refreshes")
        return code
    return _plan_all_markets(config_path, cfg)


def _plan_all_markets(config_path: Path, cfg: MMMConfig) -> int:
    """Job plan_all_markets (the roll-up, and the budget across markets under scope all_markets) in this process,
    after every market's refresh; returns an `Exit`."""
    from mmm_assets.defs.cross_market import CROSS_MARKET_JOB
    from mmm_assets.defs.outcome import outcome

    result = _execute(config_path, cfg, CROSS_MARKET_JOB, "make run (every market at once)")
    verdict = outcome(result)
    tables = "markets_rollup" + (", all_markets_budget" if cfg.decisions.budget.scope == "all_markets" else "")
    done = f"written to DuckDB table(s) {tables}" if result.success else f"FAILED: {'; '.join(verdict.lines())}"
    print(f"every market at once (run {result.run_id}): {done}")
    return verdict.code


#: What a pooled model needs of every market before any market's fit starts.
INPUT_ASSETS = ("marketing_spend", "ground_truth", "mmm_features")
#: The suffix of a worker's job that materialises a market's INPUT_ASSETS only (``"<market> inputs"``).
INPUTS_JOB = " inputs"
#: The ``launched_by`` tag of those runs.
INPUTS_LAUNCHED_BY = "make run (pooled model: every market's inputs first)"


def _inputs(config_path: Path, cfg: MMMConfig) -> int:
    """One market's inputs in this process, for a pooled model, which is fitted on every market's features: `make run`
    has the workers materialise them all before any market's refresh starts (a market whose inputs fail its checks
    then fails every market's fit, with the reason). Returns an `Exit`."""
    from dagster import AssetKey

    from mmm_assets.defs.constants import JOB
    from mmm_assets.defs.outcome import Exit

    result = _execute(config_path, cfg, JOB, INPUTS_LAUNCHED_BY, partition_key=cfg.market, log_level="WARNING",
                      asset_selection=[AssetKey(name) for name in INPUT_ASSETS])
    print(f"inputs of market {cfg.market}: {'ready' if result.success else 'FAILED'} (run {result.run_id})",
          file=sys.stderr, flush=True)
    return Exit.SUCCESS if result.success else Exit.INPUT_REJECTED


def _run_market(config_path: Path, cfg: MMMConfig) -> int:
    """One market's refresh in this process: job weekly_refresh for the market's partition; returns an `Exit`."""
    from mmm_assets.defs import pool_wait
    from mmm_assets.defs.constants import JOB
    from mmm_assets.defs.outcome import outcome

    pool_wait.configure(cfg.operations.pool_wait_timeout_s, _say)
    with refresh_lock(Path(os.environ["DAGSTER_HOME"]) / lock_file(cfg.market)):
        started = time.monotonic()
        selection = _after_inputs(config_path, cfg)
        result = _execute(config_path, cfg, JOB, "make run", partition_key=cfg.market, **selection)
    verdict = outcome(result)
    print(_summary(result, verdict, cfg, config_path, time.monotonic() - started))
    return verdict.code


def _after_inputs(config_path: Path, cfg: MMMConfig) -> dict:
    """The ``asset_selection`` of a pooled market's refresh without INPUT_ASSETS when the market's latest run is a
    successful `_inputs` run (its checks passed, moments before, in this `make run`'s first stage): materialised
    again they would read the same files and run the same checks, or, had the files changed since, no longer be what
    the pooled model is fitted on. Otherwise (a market's own model, or another run since) no selection: the whole
    job."""
    from dagster import AssetSelection, DagsterInstance, DagsterRunStatus, RunsFilter

    from mmm_assets.defs.constants import JOB

    if not cfg.pooled:
        return {}
    latest = DagsterInstance.get().get_runs(RunsFilter(job_name=JOB, tags={"dagster/partition": cfg.market}), limit=1)
    if not latest or latest[0].status != DagsterRunStatus.SUCCESS:
        return {}
    if latest[0].tags.get("launched_by") != INPUTS_LAUNCHED_BY:
        return {}
    defs = load_definitions(config_path)
    from mmm_assets.definitions import weekly_refresh

    rest = weekly_refresh.selection - AssetSelection.assets(*INPUT_ASSETS)
    return {"asset_selection": sorted(rest.resolve(defs.resolve_asset_graph()))}


def _execute(config_path: Path, cfg: MMMConfig, job_name: str, launched_by: str, log_level: str = "INFO", **kwargs):
    """Job ``job_name`` in this process on the scenario ``config_path``, logging at ``log_level``; never raises on
    failure."""
    from dagster import DagsterInstance

    from mmm_assets.defs.recovery import worker_tags

    return load_definitions(config_path).resolve_job_def(job_name).execute_in_process(
        instance=DagsterInstance.get(),
        run_config={
            "resources": {"scenario": {"config": {"config_path": str(config_path.resolve())}}},
            "loggers": {"console": {"config": {"log_level": log_level}}},
        },
        raise_on_error=False,
        tags={"scenario": cfg.scenario, "launched_by": launched_by, **worker_tags()},
        **kwargs,
    )


#: The BLAS libraries' thread counts, set to one in `make run`'s workers unless set already: several processes share
#: the cores, and a BLAS pool's threads can spin between calls. With the holdout refit beside the pooled fit, each
#: spreads' mode search took 24-30 s instead of 4-5 s; with one BLAS thread per process, 3.9-4.9 s
#: (docs/performance.md, "A whole refresh of many pooled markets"). One fit at a time never showed it.
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def worker_env() -> dict[str, str]:
    """Our environment for a market worker, with BLAS_THREADS at one where not set."""
    return {**os.environ, **{name: "1" for name in BLAS_THREADS if name not in os.environ}}


#: The most one market worker holds in memory at once, in MiB: the largest worker's peak resident memory was
#: 1,493-1,525 MiB over ten markets of 156 weeks each, one market run's 1,373-1,514 MiB (benchmarks/markets_parallel.py),
#: rounded up. The default number of workers keeps them within the memory available when `make run` starts.
RUN_PEAK_MIB = 1600

def _available_mib() -> float | None:
    """Memory available to new processes (Linux's MemAvailable), in MiB; None where /proc/meminfo is missing."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def parallel_runs(configured: int | None) -> tuple[int, str]:
    """How many market runs `make run` keeps going at once, and why: the setting, or the machine's cores and the
    memory available at ``RUN_PEAK_MIB`` a run (at least one)."""
    if configured is not None:
        return configured, "operations.max_parallel_runs"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    available = _available_mib()
    if available is None:
        return max(1, cores), f"{cores} cores"
    return max(1, min(cores, int(available // RUN_PEAK_MIB))), (
        f"{cores} cores, {available / 1024:.1f} GiB available at {RUN_PEAK_MIB} MiB a run"
    )


def _peak_child_mib() -> float:
    """The largest resident memory any finished child process reached, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _run_markets(config_path: Path, markets: list[str], limit: int, why: str, inputs_first: bool = False) -> int:
    """Every market's run, at most ``limit`` at once (``why``: where the number comes from), by as many worker
    processes, each refreshing one market after another in-process (``serve_markets``): the stack is imported and
    the samplers and optimisers compiled once per worker, not once per market. With ``inputs_first`` (a pooled
    model) the same workers first materialise every market's inputs (`_inputs`), and no market's refresh starts
    before they all have. Dagster's pool `mmm_fit` (dagster.yaml) decides how many fits sample at the same time. A
    failed market does not stop the others; the exit status is the most serious of the markets'
    (`defs.outcome.most_serious`).
    """
    from mmm_assets.defs.outcome import from_returncode, most_serious

    started = time.monotonic()
    _say(f"{len(markets)} market runs, at most {limit} at once ({why}): {', '.join(markets)}")
    command = [sys.executable, "-m", "mmm_assets", "run", "--config", str(config_path), "--worker"]
    first = [market + INPUTS_JOB for market in markets] if inputs_first else []
    results = run_queued(command, markets, limit, max(map(len, [*markets, *first])), first, worker_env())
    codes = {market: from_returncode(results[market][0]) for market in markets}
    for market in markets:
        print(f"===== market {market} =====\n{results[market][1].rstrip()}")
    verdicts = ", ".join(f"{m} {'success' if codes[m] == 0 else f'FAILED (exit {int(codes[m])})'}" for m in markets)
    print(f"markets: {verdicts} - {time.monotonic() - started:.0f} s, at most {limit} at once, the largest worker's "
          f"peak memory {_peak_child_mib():.0f} MiB")
    return most_serious(codes.values())


def serve_markets(config_path: Path) -> int:
    """A market worker of `make run`: refreshes each market named on stdin (a line each; ``<market> inputs``: only
    its inputs, `_inputs`) in this process, writing its summary and then ``DONE_MARK <job> <status>`` on stdout (its
    log lines on stderr after ``START_MARK <job>``); returns when stdin closes. An error outside the run (a lock, the
    instance) fails that job, not the worker."""
    from mmm_assets.defs.outcome import Exit

    cfg = load_config(config_path)
    while line := sys.stdin.readline():
        job = line.strip()
        market = job.removesuffix(INPUTS_JOB)
        print(START_MARK, job, file=sys.stderr, flush=True)
        try:
            code = (_inputs if job.endswith(INPUTS_JOB) else _run_market)(config_path, cfg.for_market(market))
        except Exception as err:  # noqa: BLE001 - any error is this market's failure, said and counted
            print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
            print(f"market {market}: FAILED before its run ended: {type(err).__name__}: {err}")
            code = Exit.UNEXPECTED
        print(f"{DONE_MARK} {job} {int(code)}", flush=True)
    return Exit.SUCCESS


def sample_landing(config_path: Path, source_path: Path) -> int:
    """Write the synthetic scenario of ``source_path`` as a landing file in the columns ``config_path`` maps."""
    from mmm_assets.core.synthetic.generator import generate, landing_export

    cfg, origin = load_config(config_path), load_config(source_path)
    source = origin.data.synthetic
    if cfg.data.files is None or source is None:
        print(f"error: {config_path} needs a data.files section and {source_path} a data.synthetic one", file=sys.stderr)
        return 2
    frame, _ = generate(source, origin.model.calendar)
    target = cfg.data.files.landing_dir / (cfg.data.files.file or "spend.csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    landing_export(frame, cfg.data.files.columns).to_csv(target, index=False, date_format="%Y-%m-%d")
    print(f"wrote {len(frame)} weeks to {target}")
    return 0


def install_stop_signals() -> None:
    """SIGTERM (systemd, Kubernetes, `kill`) stops a refresh the way Ctrl-C does: the run is marked failed, not left
    STARTED with its pool slot held.

    Dagster maps SIGTERM onto SIGINT's handler whenever a run starts (``dagster._utils.interrupts``), so a process
    started with SIGINT ignored (a background job of a non-interactive shell, e.g. ``nohup make run &``; CI starts
    the tests that way) would ignore SIGTERM from its first run on, and so would the workers it starts after it: SIGINT
    gets Python's default handler too. Main thread only (signal handlers cannot be set elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command; returns the process's exit status."""
    parser = argparse.ArgumentParser(prog="python -m mmm_assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="materialise the whole graph (job weekly_refresh)")
    run_parser.add_argument("--config", type=Path, default=Path("config/default.yaml"), help="scenario YAML")
    run_parser.add_argument("--market", help="refresh only this market (default: every market of the scenario)")
    run_parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # make run's market workers
    sample = sub.add_parser("sample-landing", help="write a sample landing file from a synthetic scenario")
    sample.add_argument("--config", type=Path, default=Path("config/landing_example.yaml"), help="files scenario")
    sample.add_argument("--from", dest="source", type=Path, default=Path("config/default.yaml"), help="synthetic one")
    args = parser.parse_args(argv)
    if args.command == "sample-landing":
        return sample_landing(args.config, args.source)
    install_stop_signals()
    try:
        return int(serve_markets(args.config) if args.worker else run(args.config, args.market))
    except KeyboardInterrupt:  # outside a run's steps, e.g. while waiting for another refresh's lock
        from mmm_assets.defs.outcome import Exit

        print("interrupted", file=sys.stderr)
        return Exit.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
