"""`make bench`: the reference fit and our whole weekly refresh, measured side by side on the same data and machine.

Each repeat runs, one after the other so they share the machine's noise:

1. baseline - PyMC-Marketing's MMM fitted the reference way (PyMC's default NUTS, 4 x (1000 + 1000)), whole process;
2. ours, cold - `python -m mmm_assets run` (every asset and check of the graph) with a fresh PyTensor compile cache,
   a fresh Dagster instance, DuckDB file and MLflow store;
3. ours, warm - the same command again, caches kept.

Ratios are baseline / ours within the same repeat; the table gives min / median / max over repeats. A configuration
only counts when its quality bar holds: R-hat <= 1.01, bulk ESS >= 400, no divergences and lambda / alpha recovered
within the scenario's thresholds (for ours: every gate of the run passed).
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

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PY = sys.executable


def _measure(command: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run([PY, str(HERE / "measure.py"), *command], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True).stdout
    return json.loads(out)


def _scenario(config: Path, work: Path) -> Path:
    """The benchmarked scenario with every output inside ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "scenario.yaml"
    path.write_text(yaml.safe_dump({
        "extends": str(config.resolve()),
        "paths": {"duckdb": str(work / "mmm.duckdb"), "models_dir": str(work / "models"),
                  "reports_dir": str(work / "reports"), "alerts_log": str(work / "alerts.jsonl"),
                  "mlflow_dir": str(work / "mlruns")},
    }))
    return path


def _env(work: Path) -> dict[str, str]:
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "MMM_CONFIG", "MMM_DUCKDB_PATH"}}
    env.update(DAGSTER_HOME=str(home), PYTENSOR_FLAGS=f"base_compiledir={work / 'pytensor_cache'}")
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


def _baseline(config: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MMM_DUCKDB_PATH"}
    measured = _measure([PY, str(HERE / "baseline_fit.py"), str(config)], env)
    if measured["returncode"] != 0:
        raise RuntimeError(f"the baseline fit failed:\n{measured['stderr']}")
    result = json.loads(measured["stdout"].strip().splitlines()[-1])
    from mmm_assets.core.config import load_config

    t = load_config(config).validation.thresholds
    quality = (result["max_rhat"] <= t.rhat_max and result["min_ess_bulk"] >= t.ess_bulk_min
               and result["divergences"] <= t.divergences_max
               and result["saturation_lam_max_rel_error"] <= t.lam_rel_error_max
               and result["adstock_alpha_max_abs_error"] <= t.alpha_abs_error_max)
    return {**result, "wall_seconds": measured["wall_seconds"], "peak_rss_mib": measured["peak_rss_mib"],
            "ess_per_second": result["min_ess_bulk"] / result["fit_seconds"], "quality_ok": quality}


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def summarise(repeats: list[dict]) -> dict:
    """min / median / max of every measure, and of the per-repeat ratios baseline / ours."""
    def column(kind: str, key: str) -> list[float]:
        return [r[kind][key] for r in repeats]

    summary = {kind: {key: _spread(column(kind, key)) for key in
                      ("wall_seconds", "peak_rss_mib", "fit_seconds", "ess_per_second")}
               for kind in ("baseline", "cold", "warm")}
    summary["ratios"] = {
        "baseline_process_over_cold_refresh": _spread([r["baseline"]["wall_seconds"] / r["cold"]["wall_seconds"]
                                                       for r in repeats]),
        "baseline_process_over_warm_refresh": _spread([r["baseline"]["wall_seconds"] / r["warm"]["wall_seconds"]
                                                       for r in repeats]),
        "baseline_fit_over_warm_refresh": _spread([r["baseline"]["fit_seconds"] / r["warm"]["wall_seconds"]
                                                   for r in repeats]),
        "warm_fit_ess_per_second_over_baseline": _spread([r["warm"]["ess_per_second"] / r["baseline"]["ess_per_second"]
                                                          for r in repeats]),
    }
    summary["quality_ok"] = {kind: all(r[kind]["quality_ok"] for r in repeats) for kind in ("baseline", "cold", "warm")}
    return summary


def markdown(summary: dict, repeats: int, machine: str) -> str:
    def cell(d: dict, fmt: str = "{:.1f}") -> str:
        return f"{fmt.format(d['median'])} ({fmt.format(d['min'])}-{fmt.format(d['max'])})"

    lines = [
        f"Median (min-max) over {repeats} repeats on {machine}.", "",
        "| | whole process, s | peak memory, MiB | fit, s | min bulk ESS / fit s | quality bar |",
        "|---|---|---|---|---|---|",
    ]
    names = {"baseline": "baseline: PyMC-Marketing, PyMC NUTS 4 x 1000", "cold": "ours: whole refresh, cold",
             "warm": "ours: whole refresh, warm"}
    for kind, name in names.items():
        s = summary[kind]
        lines.append(f"| {name} | {cell(s['wall_seconds'])} | {cell(s['peak_rss_mib'], '{:.0f}')} | "
                     f"{cell(s['fit_seconds'])} | {cell(s['ess_per_second'])} | "
                     f"{'pass' if summary['quality_ok'][kind] else 'FAIL'} |")
    lines += ["", "| ratio (same repeat) | median (min-max) |", "|---|---|"]
    for key, value in summary["ratios"].items():
        lines.append(f"| {key.replace('_', ' ')} | {cell(value, '{:.2f}')}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "default.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    work_root = HERE / ".work" / stamp
    repeats = []
    for i in range(args.repeats):
        work = work_root / f"repeat{i}"
        scenario = _scenario(args.config, work)
        print(f"repeat {i + 1}/{args.repeats}: baseline ...", flush=True)
        baseline = _baseline(args.config)
        print(f"  baseline {baseline['wall_seconds']:.1f} s; ours cold ...", flush=True)
        cold = _ours(scenario, work)
        print(f"  cold {cold['wall_seconds']:.1f} s; ours warm ...", flush=True)
        warm = _ours(scenario, work)
        print(f"  warm {warm['wall_seconds']:.1f} s", flush=True)
        repeats.append({"baseline": baseline, "cold": cold, "warm": warm})
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
