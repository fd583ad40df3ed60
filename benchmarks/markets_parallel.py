"""`make run` over many markets: wall time, peak memory and processes alive, with every market's run started at once
(the old behaviour) against the bounded default (operations.max_parallel_runs: null, from cores and memory).

    python benchmarks/markets_parallel.py [--markets 8] [--limits all,auto] [--weeks 52] [--full] [--pooling pooled]
                                          [--channels 3] [--own-truths]

Each setting runs `python -m mmm_assets run` on a fresh instance and fresh stores: N synthetic markets (the
reference scenario's channels, --weeks weeks from 2019-01-01, reseeded per market; small draws and no holdout, or with
--full the reference scenario's own sampler and validation settings; fitted one by one, or with --pooling pooled
by one hierarchical model), sampling the machine's available memory
(/proc/meminfo) and the number of `mmm_assets run` processes every 0.25 s. Writes
benchmarks/results/markets-parallel-<UTC stamp>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def _scenario(folder: Path, markets: int, limit: int | None, a: argparse.Namespace) -> Path:
    """The scenario file: config/default.yaml over ``markets`` markets, reseeded, or each with its own truth and size
    (--own-truths: benchmarks/geos.py's geo_truth), with --channels channels (many_channels.repeat_channels)."""
    sys.path.insert(0, str(HERE))
    from geos import geo_truth
    from many_channels import repeat_channels

    raw = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    base = raw["data"]["synthetic"]
    base["channels"] = repeat_channels(base["channels"], a.channels)
    names = [f"m{i:02d}" for i in range(markets)]
    data = {n: geo_truth(i, base) if a.own_truths else {"synthetic": {"seed": 1000 + i}} for i, n in enumerate(names)}
    data = json.loads(json.dumps(data, default=float))  # numpy numbers as plain ones, for YAML
    raw |= {
        "scenario": "parallel",
        "markets": {"names": names, "pooling": a.pooling, "data": data},
        "paths": {k: str(folder / k) for k in ("duckdb", "models_dir", "reports_dir", "alerts_log", "mlflow_dir")},
    }
    start = pd.Timestamp(raw["data"]["synthetic"]["start_date"])
    raw["data"]["synthetic"]["end_date"] = str((start + pd.Timedelta(weeks=a.weeks) - pd.Timedelta(days=1)).date())
    if not a.full:
        raw["sampler"] |= {"chains": 2, "draws": 150, "tune": 300}
        raw["validation"] |= {"holdout_weeks": 0, "min_weeks": 26}
    raw["operations"]["max_parallel_runs"] = limit
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def _alive() -> int:
    out = subprocess.run(["pgrep", "-f", "mmm_assets run --config"], capture_output=True, text=True).stdout
    return len(out.split())


def _children_cpu_s() -> float:
    """User + system CPU seconds of every finished descendant process (the market workers included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _step_seconds(home: Path) -> Counter:
    """Seconds each step of the market runs took, summed over the markets (Dagster's step stats)."""
    from dagster import DagsterInstance

    totals: Counter = Counter()
    os.environ["DAGSTER_HOME"] = str(home)  # dagster.yaml's storage reads it
    with DagsterInstance.from_config(str(home)) as instance:
        for record in instance.get_run_records():
            for stats in instance.get_run_step_stats(record.dagster_run.run_id):
                if stats.start_time and stats.end_time:
                    totals[stats.step_key] += stats.end_time - stats.start_time
    return totals


def _measure(markets: int, limit: int | None, a: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="markets-parallel-"))
    home = folder / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    config = _scenario(folder, markets, limit, a)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.pop("MMM_CONFIG", None)
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((_available_mib(), _alive()))
            time.sleep(0.25)

    before, cpu_before = _available_mib(), _children_cpu_s()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "mmm_assets", "run", "--config", str(config)], env=env,
                         capture_output=True, text=True)
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    cpu = _children_cpu_s() - cpu_before
    steps = _step_seconds(home)
    if run.returncode == 0 and not a.keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:  # kept for inspection: the instance, the stores and what the run printed
        (folder / "run.out").write_text(run.stdout)
        (folder / "run.err").write_text(run.stderr)
        print(f"exit {run.returncode}: the run's instance, stores and output are kept in {folder}", flush=True)
    verdict = [line for line in run.stdout.splitlines() if line.startswith("markets:")]
    return {
        "markets": markets, "channels": a.channels, "pooling": a.pooling, "max_parallel_runs": limit or "auto", "exit": run.returncode,
        "wall_s": round(seconds),
        "cpu_s": round(cpu), "busiest_steps_s": ", ".join(f"{k} {v:.0f}" for k, v in steps.most_common(6)),
        "peak_memory_used_gib": round((before - min(a for a, _ in samples)) / 1024, 2),
        "max_processes_alive": max(n for _, n in samples) - 1,  # less the parent `make run` process
        "summary": verdict[0] if verdict else run.stdout[-300:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=8)
    parser.add_argument("--limits", default="all,auto", help="all = every market at once; auto = the default; or K")
    parser.add_argument("--weeks", type=int, default=52, help="weeks of data per market")
    parser.add_argument("--full", action="store_true", help="the scenario's own draws and holdout (else small draws)")
    parser.add_argument("--pooling", choices=("separate", "pooled"), default="separate")
    parser.add_argument("--channels", type=int, default=3, help="channels per market (repeat_channels)")
    parser.add_argument("--own-truths", action="store_true",
                        help="each market its own truth and size (geos.geo_truth), not the same one reseeded")
    parser.add_argument("--keep", action="store_true",
                        help="keep the instance, stores and output of a run that succeeds too (for timelines.py)")
    args = parser.parse_args()
    rows = []
    for limit in args.limits.split(","):
        k = args.markets if limit == "all" else None if limit == "auto" else int(limit)
        rows.append(_measure(args.markets, k, args))
        print(rows[-1], flush=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"markets-parallel-{stamp}.md"
    out.write_text(f"# `make run` over {args.markets} markets ({stamp})\n\n`python benchmarks/markets_parallel.py "
                   f"--markets {args.markets} --limits {args.limits} --weeks {args.weeks}{' --full' * args.full} "
                   f"--pooling {args.pooling} --channels {args.channels}{' --own-truths' * args.own_truths}`\n\n"
                   f"{pd.DataFrame(rows).to_markdown(index=False)}\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
