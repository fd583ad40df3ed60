"""`make bench`: the reference fit and our whole weekly refresh, measured side by side on the same data and machine.

Each repeat gets its own work folder under benchmarks/.work/ and runs five measurements, one after the other so they
share the machine's noise, each a whole process measured by measure.py (wall time, peak resident memory):

1. baseline cold - PyMC-Marketing's MMM fitted the reference way (PyMC's default NUTS, 4 x (1000 + 1000)),
   benchmarks/baseline_fit.py, with an empty PyTensor compile cache of its own (<work>/baseline_pytensor_cache);
2. baseline warm - the same command again, that cache now filled;
3. ours cold - `python -m mmm_assets run` (every asset and check of the graph) with empty PyTensor and JAX compile
   caches (<work>/pytensor_cache, <work>/jax_cache) and a fresh Dagster instance, DuckDB file and MLflow store;
4. ours warm - the same command again, caches, instance, DuckDB file and MLflow store kept;
5. ours warm, one more week - the real weekly refresh: the same scenario with data.synthetic.end_date 7 days later
   (scenario_next_week.yaml), on the same caches, instance, DuckDB file and MLflow store.

Repeat i samples ours with the scenario's sampler.seed + i, so the repeats show the spread of the sampler's luck too
(e.g. a warm-started fit that misses the R-hat gate by chance and samples again); the baseline keeps its own seed.

Every process gets the parent's environment without MLFLOW_TRACKING_URI, MMM_CONFIG, MMM_DUCKDB_PATH, PYTENSOR_FLAGS
and JAX_*CACHE* variables, plus PYTENSOR_FLAGS=base_compiledir=<its PyTensor cache>,
JAX_COMPILATION_CACHE_DIR=<its JAX cache> (the baseline's: <work>/baseline_jax_cache, unused by PyMC's sampler) and
JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 (JAX caches every compiled function); ours also
DAGSTER_HOME=<work>/dagster_home (the project's dagster.yaml). No cache is the project's (.cache/) or the user's.

Ratios are taken within the same repeat (baseline / ours for time, ours / baseline for ESS per second); the tables
give min / median / max over repeats. "Fit alone" is the time of the baseline's `mmm.fit` (compiling, on a cold cache,
and sampling) without its process start and data; ours is always the whole refresh. A configuration only counts
when its quality bar holds: R-hat <= 1.01, bulk ESS >= 400, no divergences and lambda / alpha recovered within the
scenario's thresholds (for ours: every gate of the run passed). The last line checks ours' peak memory against the
1536 MiB target. Writes benchmarks/results/bench-<UTC stamp>.{json,md} and prints the tables.
"""

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import duckdb
import yaml
from mlflow import MlflowClient

from mmm_assets.core.config import load_config

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PY = sys.executable
PEAK_TARGET_MIB = 1536

KINDS = {
    "baseline_cold": "baseline: PyMC-Marketing, PyMC NUTS 4 x 1000, cold compile cache",
    "baseline_warm": "baseline: PyMC-Marketing, PyMC NUTS 4 x 1000, warm compile cache",
    "cold": "ours: whole refresh, cold caches",
    "warm": "ours: whole refresh, warm caches",
    "warm_next_week": "ours: whole refresh, warm caches, one more week of data",
}
OURS = ("cold", "warm", "warm_next_week")
# key: (label, numerator (kind, measure), denominator (kind, measure)), each taken within one repeat
RATIOS = {
    "baseline_cold_process_over_cold_refresh": (
        "baseline cold process / ours cold refresh", ("baseline_cold", "wall_seconds"), ("cold", "wall_seconds")),
    "baseline_warm_process_over_warm_refresh": (
        "baseline warm process / ours warm refresh", ("baseline_warm", "wall_seconds"), ("warm", "wall_seconds")),
    "baseline_warm_fit_over_warm_refresh": (
        "baseline warm fit alone / ours warm refresh (target >= 5x)",
        ("baseline_warm", "fit_seconds"), ("warm", "wall_seconds")),
    "baseline_cold_fit_over_cold_refresh": (
        "baseline cold fit alone / ours cold refresh (target >= 3x)",
        ("baseline_cold", "fit_seconds"), ("cold", "wall_seconds")),
    "baseline_warm_fit_over_next_week_refresh": (
        "baseline warm fit alone / ours warm refresh with one more week",
        ("baseline_warm", "fit_seconds"), ("warm_next_week", "wall_seconds")),
    "warm_fit_ess_per_second_over_baseline_warm": (
        "ours warm fit ESS per second / baseline warm fit ESS per second",
        ("warm", "ess_per_second"), ("baseline_warm", "ess_per_second")),
}


def _measure(command: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run([PY, str(HERE / "measure.py"), *command], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True).stdout
    return json.loads(out)


def _scenarios(config: Path, work: Path, repeat: int = 0) -> tuple[Path, Path]:
    """The benchmarked scenario and the same one with its data a week longer, every output of both inside ``work``
    (one DuckDB file, MLflow store and model folder), sampled with the scenario's seed + ``repeat``."""
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config(config)
    base = {
        "extends": str(config.resolve()),
        "sampler": {"seed": cfg.sampler.seed + repeat},
        "paths": {"duckdb": str(work / "mmm.duckdb"), "models_dir": str(work / "models"),
                  "reports_dir": str(work / "reports"), "alerts_log": str(work / "alerts.jsonl"),
                  "mlflow_dir": str(work / "mlruns")},
    }
    end_date = cfg.data.synthetic.end_date + dt.timedelta(days=7)
    now, next_week = work / "scenario.yaml", work / "scenario_next_week.yaml"
    now.write_text(yaml.safe_dump(base))
    next_week.write_text(yaml.safe_dump({**base, "data": {"synthetic": {"end_date": end_date}}}))
    return now, next_week


def cache_env(pytensor_cache: Path, jax_cache: Path) -> dict[str, str]:
    """The parent's environment without its scenario, tracking and compile-cache settings, with PyTensor's and JAX's
    compile caches in the given folders (JAX caching every compiled function)."""
    dropped = {"MLFLOW_TRACKING_URI", "MMM_CONFIG", "MMM_DUCKDB_PATH", "PYTENSOR_FLAGS"}
    env = {k: v for k, v in os.environ.items() if k not in dropped and not (k.startswith("JAX_") and "CACHE" in k)}
    for folder in (pytensor_cache, jax_cache):
        folder.mkdir(parents=True, exist_ok=True)
    env.update(PYTENSOR_FLAGS=f"base_compiledir={pytensor_cache}", JAX_COMPILATION_CACHE_DIR=str(jax_cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return env


def _env(work: Path) -> dict[str, str]:
    """Ours: the Dagster instance and both compile caches inside ``work``."""
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = cache_env(work / "pytensor_cache", work / "jax_cache")
    env.update(DAGSTER_HOME=str(home))
    return env


def _ours(scenario: Path, work: Path) -> dict:
    measured = _measure([PY, "-m", "mmm_assets", "run", "--config", str(scenario)], _env(work))
    match = re.search(r"- run ([0-9a-f-]{36}) -", measured["stdout"])
    if measured["returncode"] != 0 or match is None:
        raise RuntimeError(f"the refresh failed:\n{measured['stdout'][-3000:]}\n{measured['stderr']}")
    run_id = match.group(1)
    with duckdb.connect(str(work / "mmm.duckdb"), read_only=True) as conn:
        gates = conn.execute(
            "SELECT metric, value, passed FROM validation_history WHERE run_id = ? AND metric NOT LIKE '%.%'",
            [run_id],
        ).fetchall()
    client = MlflowClient(f"sqlite:///{work / 'mlruns' / 'mlflow.db'}")
    run = client.search_runs(client.search_experiments()[0].experiment_id, f"tags.dagster_run_id = '{run_id}'")[0]
    metrics = {metric: value for metric, value, _ in gates}
    fit_seconds = run.data.metrics["fit_wall_seconds"]
    return {
        "wall_seconds": measured["wall_seconds"],
        "peak_rss_mib": measured["peak_rss_mib"],
        "fit_seconds": fit_seconds,
        "min_ess_bulk": metrics["min_ess_bulk"],
        "ess_per_second": metrics["min_ess_bulk"] / fit_seconds,
        "quality_ok": all(passed for _, _, passed in gates),
        "gates": metrics,
    }


def _baseline(config: Path, work: Path) -> dict:
    """The baseline fit on its own compile cache in ``work`` (empty on a repeat's first call, filled after)."""
    env = cache_env(work / "baseline_pytensor_cache", work / "baseline_jax_cache")
    measured = _measure([PY, str(HERE / "baseline_fit.py"), str(config)], env)
    if measured["returncode"] != 0:
        raise RuntimeError(f"the baseline fit failed:\n{measured['stderr']}")
    result = json.loads(measured["stdout"].strip().splitlines()[-1])
    t = load_config(config).validation.thresholds
    quality = (result["max_rhat"] <= t.rhat_max and result["min_ess_bulk"] >= t.ess_bulk_min
               and result["divergences"] <= t.divergences_max
               and result["saturation_lam_max_rel_error"] <= t.lam_rel_error_max
               and result["adstock_alpha_max_abs_error"] <= t.alpha_abs_error_max)
    return {**result, "wall_seconds": measured["wall_seconds"], "peak_rss_mib": measured["peak_rss_mib"],
            "ess_per_second": result["min_ess_bulk"] / result["fit_seconds"], "quality_ok": quality}


def _repeat(config: Path, work: Path, label: str, index: int) -> dict:
    """One repeat's five measurements, in order, keyed by kind."""
    scenario, next_week = _scenarios(config, work, index)
    steps = [("baseline_cold", _baseline, config), ("baseline_warm", _baseline, config), ("cold", _ours, scenario),
             ("warm", _ours, scenario), ("warm_next_week", _ours, next_week)]
    results = {}
    for kind, measure, path in steps:
        print(f"{label}: {KINDS[kind]} ...", flush=True)
        r = results[kind] = measure(path, work)
        print(f"  {r['wall_seconds']:.1f} s, fit {r['fit_seconds']:.1f} s, {r['peak_rss_mib']:.0f} MiB, "
              f"quality {'pass' if r['quality_ok'] else 'FAIL'}", flush=True)
    return results


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def summarise(repeats: list[dict]) -> dict:
    """min / median / max of every measure per kind, of the per-repeat ratios and of ours' peak memory."""
    def column(kind: str, key: str) -> list[float]:
        return [r[kind][key] for r in repeats]

    summary = {kind: {key: _spread(column(kind, key)) for key in
                      ("wall_seconds", "peak_rss_mib", "fit_seconds", "ess_per_second")}
               for kind in KINDS}
    summary["ratios"] = {key: _spread([r[top[0]][top[1]] / r[bottom[0]][bottom[1]] for r in repeats])
                         for key, (_, top, bottom) in RATIOS.items()}
    summary["quality_ok"] = {kind: all(r[kind]["quality_ok"] for r in repeats) for kind in KINDS}
    summary["refresh_peak_rss_mib_max"] = max(summary[kind]["peak_rss_mib"]["max"] for kind in OURS)
    return summary


def markdown(summary: dict, repeats: int, machine: str) -> str:
    def cell(d: dict, fmt: str = "{:.1f}") -> str:
        return f"{fmt.format(d['median'])} ({fmt.format(d['min'])}-{fmt.format(d['max'])})"

    lines = [
        f"Median (min-max) over {repeats} repeats on {machine}.", "",
        "| | whole process, s | peak memory, MiB | fit, s | min bulk ESS / fit s | quality bar |",
        "|---|---|---|---|---|---|",
    ]
    for kind, name in KINDS.items():
        s = summary[kind]
        lines.append(f"| {name} | {cell(s['wall_seconds'])} | {cell(s['peak_rss_mib'], '{:.0f}')} | "
                     f"{cell(s['fit_seconds'])} | {cell(s['ess_per_second'])} | "
                     f"{'pass' if summary['quality_ok'][kind] else 'FAIL'} |")
    lines += ["", "| ratio (same repeat) | median (min-max) |", "|---|---|"]
    for key, (name, _, _) in RATIOS.items():
        lines.append(f"| {name} | {cell(summary['ratios'][key], '{:.2f}')}x |")
    lines += ["", f"peak memory of the refresh: max {summary['refresh_peak_rss_mib_max']:.0f} MiB "
                  f"(target <= {PEAK_TARGET_MIB} MiB)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "default.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    work_root = HERE / ".work" / stamp
    repeats = [_repeat(args.config, work_root / f"repeat{i}", f"repeat {i + 1}/{args.repeats}", i)
               for i in range(args.repeats)]
    summary = summarise(repeats)
    machine = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    table = markdown(summary, args.repeats, machine)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(
        {"stamp": stamp, "config": str(args.config), "machine": machine, "summary": summary, "repeats": repeats},
        indent=1, default=str))
    (args.out / f"bench-{stamp}.md").write_text(table + "\n")
    shutil.rmtree(work_root, ignore_errors=True)
    print(table)


if __name__ == "__main__":
    main()
