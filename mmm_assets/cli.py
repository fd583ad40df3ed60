"""`python -m mmm_assets run`: materialise the whole graph on the embedded instance and print a summary.

The run is recorded in the Dagster instance under $DAGSTER_HOME, so `make dev` shows it afterwards. The exit
status is non-zero when the run fails, which includes any failed blocking check. Refreshes on one instance take
turns: a second one started while another runs waits for it (an exclusive lock on $DAGSTER_HOME/refresh.lock).
"""

import argparse
import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from mmm_assets.core.config import ConfigError, load_config
from mmm_assets.core.records import ValidationReport


def _summary(result, cfg, config_path: Path, seconds: float) -> str:
    lines = [f"scenario {cfg.scenario} ({config_path}) - run {result.run_id} - {seconds:.0f} s"]
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
    if selected - materialized:
        lines.append(
            "not materialised (blocked by a failed check or an upstream failure): "
            + ", ".join(sorted(selected - materialized))
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
    return "\n".join(lines)


#: The file whose exclusive lock a refresh holds from start to end, under $DAGSTER_HOME.
LOCK_FILE = "refresh.lock"


@contextlib.contextmanager
def refresh_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``, with our pid in the file, for the duration of the block.

    While another process holds it, say so and wait. The lock goes with its process: a killed refresh never blocks
    the next one.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            print(f"waiting for the refresh already running (pid {holder}) to finish; lock {path}",
                  file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # no stale pid for the next one to report
    finally:
        os.close(fd)


def run(config_path: Path) -> int:
    from dagster import DagsterInstance

    from mmm_assets.definitions import defs

    try:
        cfg = load_config(config_path)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not os.environ.get("DAGSTER_HOME"):
        print("error: DAGSTER_HOME is not set (`make run` sets it to .dagster_home in the project)", file=sys.stderr)
        return 2
    job = defs.resolve_job_def("weekly_refresh")
    with refresh_lock(Path(os.environ["DAGSTER_HOME"]) / LOCK_FILE):  # also around the instance's first set-up
        instance = DagsterInstance.get()
        started = time.monotonic()
        result = job.execute_in_process(
            instance=instance,
            run_config={
                "resources": {"scenario": {"config": {"config_path": str(config_path.resolve())}}},
                "loggers": {"console": {"config": {"log_level": "INFO"}}},
            },
            raise_on_error=False,
            tags={"scenario": cfg.scenario, "launched_by": "make run"},
        )
    print(_summary(result, cfg, config_path, time.monotonic() - started))
    return 0 if result.success else 1


def sample_landing(config_path: Path, source_path: Path) -> int:
    """Write the synthetic scenario of ``source_path`` as a landing file in the columns ``config_path`` maps."""
    from mmm_assets.core.generator import generate, landing_export

    cfg, source = load_config(config_path), load_config(source_path).data.synthetic
    if cfg.data.files is None or source is None:
        print(f"error: {config_path} needs a data.files section and {source_path} a data.synthetic one", file=sys.stderr)
        return 2
    frame, _ = generate(source)
    target = cfg.data.files.landing_dir / (cfg.data.files.file or "spend.csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    landing_export(frame, cfg.data.files.columns).to_csv(target, index=False, date_format="%Y-%m-%d")
    print(f"wrote {len(frame)} weeks to {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmm_assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="materialise the whole graph (job weekly_refresh)")
    run_parser.add_argument("--config", type=Path, default=Path("config/default.yaml"), help="scenario YAML")
    sample = sub.add_parser("sample-landing", help="write a sample landing file from a synthetic scenario")
    sample.add_argument("--config", type=Path, default=Path("config/landing_example.yaml"), help="files scenario")
    sample.add_argument("--from", dest="source", type=Path, default=Path("config/default.yaml"), help="synthetic one")
    args = parser.parse_args(argv)
    if args.command == "sample-landing":
        return sample_landing(args.config, args.source)
    return run(args.config)


if __name__ == "__main__":
    sys.exit(main())
