"""Our pooled geo model against Google Meridian on the same simulated geo data, side by side: `make bench-scale`.

    .venv/bin/python benchmarks/scale.py [--geos 10,20] [--weeks 156] [--channels 3] [--chains 2 --tune 300 --draws 500]
                                         [--timeout 1800]

Data: benchmarks/geos.py's scenario (config/default.yaml's 3 channels, or --channels N of them repeated with perturbed
truths, each geo reseeded with its own truth and size), written once per N as a long CSV (date, geo, kpi,
population 1, one spend column per channel) that both tools read: ours through geos.py's `pooled-fixed-numpyro`
cell (`pooling.fit_pooled` as it ships, with the project's sampler settings), Meridian 2.1 through
benchmarks/meridian/fit.py in its own venv (`make meridian-venv`) with its defaults (ROI priors, Hill saturation,
geometric adstock over 8 weeks, one time knot per week in a geo model) or --meridian-knots K time knots: the
scenario has no time effect (config/default.yaml: an intercept per geo, no trend or season), so K = 1, Meridian's
national default and a common intercept, is the model that matches it.

The same budget for both: --chains chains, --tune adaptation steps (Meridian's n_adapt, n_burnin 0) and --draws
kept draws; ours may start from the Laplace approximation (fewer tuning steps) and tops up its draws when short of
its ESS gate, as it does in production. Both are judged by one rule over all of their free parameters: R-hat <=
1.01 and bulk ESS >= 400, and wall time and peak RSS are measured from outside (wait4) with compile included; each
tool keeps its own JAX compile cache under benchmarks/.work/scale-cache, so a first run is cold for both and a
second warm for both. Each row keeps the machine's load averages (1/5/15 min, as `uptime` prints them) from just
before its cell; with --under-load "why", the result gets a "load" entry (that sentence and those figures), which
benchmarks/curves.py reads as "measured beside other work" and leaves out. Writes
benchmarks/results/scale-<UTC stamp>.{md,json} and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geos  # benchmarks/geos.py: the scenario and our cell (this folder is on sys.path when run as a script)
from run import cache_env

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".work" / "scale-cache"
MERIDIAN_PY = HERE / ".meridian-venv" / "bin" / "python"
RHAT_MAX = 1.01
ESS_MIN = 400
OURS = "pooled-fixed-numpyro"


def write_long_csv(n: int, args, path: Path) -> list[str]:
    """The N-geo scenario as one long CSV for both tools; its channel names."""
    import pandas as pd

    from mmm_assets.core.config import DATE_COLUMN, TARGET_COLUMN

    cfg = geos.scenario(n, args.weeks, args.chains, args.tune, args.draws, args.channels)
    parts = []
    for g in geos.geo_names(n):
        frame, _ = geos.geo_data(cfg, g, args.weeks)
        part = frame[[DATE_COLUMN, TARGET_COLUMN, *cfg.channels]].rename(columns={TARGET_COLUMN: "kpi"})
        parts.append(part.assign(geo=g, population=1.0))
    pd.concat(parts, ignore_index=True)[["date", "geo", "kpi", "population", *cfg.channels]].to_csv(path, index=False)
    return list(cfg.channels)


def meridian_cell(n: int, data: Path, channels: list[str], args, logs: Path) -> dict:
    """benchmarks/meridian/fit.py in Meridian's venv, cut off after args.timeout; wall and peak RSS from wait4."""
    out_json = logs / f"meridian-{n}.json"
    command = [str(MERIDIAN_PY), str(HERE / "meridian" / "fit.py"), "--data", str(data), "--channels",
               ",".join(channels), "--chains", str(args.chains), "--adapt", str(args.tune), "--burnin", "0",
               "--draws", str(args.draws), "--out", str(out_json), "--jax-cache-dir", str(CACHE / "meridian-jax"),
               *(["--knots", str(args.meridian_knots)] if args.meridian_knots else [])]
    env = {k: v for k, v in os.environ.items() if not (k.startswith("JAX_") and "CACHE" in k)}
    env["PYTHONUNBUFFERED"] = "1"
    stderr = logs / f"meridian-{n}.err"
    with stderr.open("w") as err:
        measured = geos.run_measured(command, env, subprocess.DEVNULL, err, args.timeout)
    code = measured.pop("exit_code")
    row = {"tool": "meridian", "geos": n, "channels": args.channels, **measured}
    if code is None:
        return row | {"status": f"timed out after {args.timeout:.0f} s"}
    if not out_json.exists():
        lines = stderr.read_text().strip().splitlines()
        return row | {"status": "error", "error": lines[-1] if lines else f"exit {code}"}
    m = json.loads(out_json.read_text())
    m.pop("per_param", None)
    return row | {
        "status": "error" if m.get("error") else "ok", "error": m.get("error"),
        "fit_seconds": m["wall_s"].get("sampling_s"), "cpu_seconds": m["cpu_s"].get("total_process_s"),
        "max_rhat": m.get("max_rhat"), "min_ess_bulk": m.get("min_ess_bulk"), "min_ess_tail": m.get("min_ess_tail"),
        "worst_rhat_parameter": m.get("worst_rhat_param"), "divergences": m.get("divergences"),
        "media_max_rhat": m["media"].get("max_rhat") if "media" in m else None,
        "media_min_ess_bulk": m["media"].get("min_ess_bulk") if "media" in m else None,
        "mean_leapfrog_per_draw": m.get("mean_leapfrog_steps_per_draw"),
        "meridian": m,
    }


def ours_cell(n: int, args, logs: Path) -> dict:
    env = cache_env(CACHE / "ours-pytensor", CACHE / "ours-jax")
    env["PYTHONUNBUFFERED"] = "1"
    row = geos.run_cell(OURS, n, args, env, logs)
    return row | {"tool": "mmm_assets (pooled)", "channels": args.channels}


def meridian_model(args: dict) -> str:
    """Meridian's time effect in this run, in words."""
    knots = args.get("meridian_knots")
    return f"{knots} time knot{'s' if knots != 1 else ''}" if knots else "one time knot per week (its geo default)"


def passes(row: dict) -> bool | None:
    if row.get("status") != "ok" or row.get("max_rhat") is None:
        return None
    return row["max_rhat"] <= RHAT_MAX and row["min_ess_bulk"] >= ESS_MIN


def markdown(result: dict) -> str:
    a = result["args"]
    fmt = geos.fmt
    lines = [
        f"# Pooled geo model: mmm_assets against Google Meridian ({result['stamp']})", "",
        f"`{result['command']}`", "",
        f"benchmarks/geos.py's scenario, {a['weeks']} weeks x {a.get('channels', 3)} channels per geo (own truth and "
        f"size per geo), one "
        f"long CSV per N read by both. Budget: {a['chains']} chains x ({a['tune']} adaptation + {a['draws']} kept "
        f"draws) for both (ours from the Laplace approximation tunes fewer steps and tops up its draws when short "
        f"of ESS {ESS_MIN}). Meridian: {meridian_model(a)}. Gate: R-hat <= {RHAT_MAX} and bulk ESS >= {ESS_MIN} "
        f"over every free parameter. Wall = "
        f"the whole process from outside, compile and imports included; fit = the sampling call. "
        f"{result['machine']}." + (f" Load: {result['load']}" if result.get("load") else ""), "",
        "| tool | geos | status | wall s | fit s | CPU s | peak RSS MiB | max R-hat | min bulk ESS | min tail ESS | "
        "divergences | media max R-hat | media min bulk ESS | leapfrog / draw | gate |",
        "|" + "---|" * 15,
    ]
    for r in result["rows"]:
        gate = {True: "pass", False: "fail", None: "–"}[passes(r)]
        status = r["status"] + (f": {r['error']}" if r.get("error") else "")
        lines.append(
            f"| {r['tool']} | {r['geos']} | {status} | {fmt(r.get('wall_seconds'))} | {fmt(r.get('fit_seconds'))} | "
            f"{fmt(r.get('cpu_seconds'))} | {fmt(r.get('peak_rss_mib'))} | {fmt(r.get('max_rhat'), 3)} | "
            f"{fmt(r.get('min_ess_bulk'))} | {fmt(r.get('min_ess_tail'))} | {fmt(r.get('divergences'))} | "
            f"{fmt(r.get('media_max_rhat'), 3)} | {fmt(r.get('media_min_ess_bulk'))} | "
            f"{fmt(r.get('mean_leapfrog_per_draw'), 1)} | {gate} |")
    lines.append("")
    for n in sorted({r["geos"] for r in result["rows"]}):
        pair = {r["tool"]: r for r in result["rows"] if r["geos"] == n and r["status"] == "ok"}
        ours, theirs = pair.get("mmm_assets (pooled)"), pair.get("meridian")
        if ours and theirs:
            both = passes(ours) and passes(theirs)
            lines.append(f"- {n} geos: Meridian's wall time / ours = {theirs['wall_seconds'] / ours['wall_seconds']:.2f}, "
                         f"peak RSS {theirs['peak_rss_mib'] / ours['peak_rss_mib']:.2f}x"
                         + ("" if both else " (not at equal quality: "
                            + ", ".join(f"{t} {'passes' if passes(r) else 'fails'} the gate"
                                        for t, r in pair.items()) + ")"))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--geos", default="10,20", help="comma-separated numbers of geos")
    geos.budget_arguments(parser, timeout=1800.0)
    parser.add_argument("--meridian-knots", type=int, default=None, metavar="K",
                        help="Meridian's ModelSpec knots (default: its own, one per week in a geo model)")
    parser.add_argument("--under-load", default=None, metavar="WHY",
                        help="the machine is shared during this run: say with what (kept as the result's load entry)")
    args = parser.parse_args()
    if not MERIDIAN_PY.exists():
        sys.exit(f"error: {MERIDIAN_PY} not found; run `make meridian-venv` first (or `make bench-scale`)")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {"stamp": stamp, "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
              "args": vars(args), "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}", "rows": []}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        logs = Path(tmp)
        for n in (int(g) for g in args.geos.split(",")):
            data = logs / f"geos-{n}.csv"
            channels = write_long_csv(n, args, data)
            for name, run in (("ours", lambda: ours_cell(n, args, logs)),
                              ("meridian", lambda: meridian_cell(n, data, channels, args, logs))):
                print(f"[{time.monotonic() - began:.0f} s] {name} x {n} geos ...", flush=True)
                load = [round(x, 2) for x in os.getloadavg()]
                row = run() | {"load_before": load}
                if args.under_load:
                    result["load"] = (f"{args.under_load} uptime load averages (1/5/15 min) before each cell: "
                                      + "; ".join(f"{r['tool']} x {r['geos']}: {r['load_before']}"
                                                  for r in [*result["rows"], row]))
                row.pop("log_tail", None)
                result["rows"].append(row)
                print(json.dumps({k: row.get(k) for k in ("status", "wall_seconds", "peak_rss_mib", "max_rhat",
                                                          "min_ess_bulk", "divergences", "error")}, default=str),
                      flush=True)
                geos.write(result, "scale", markdown)  # after every cell, so a cut-off run keeps what it measured
    print(geos.write(result, "scale", markdown).read_text())


if __name__ == "__main__":
    main()
