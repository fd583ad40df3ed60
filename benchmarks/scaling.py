"""`make bench-scaling`: fit time and peak memory as a brand grows (weeks x channels), on the same generator.

Each cell is a synthetic scenario built from the default one: the first channels' ground truth repeated with
perturbed parameters up to N channels, over W weeks, fitted with the default sampler settings in its own process
(so peak memory is the fit's own). Prints and writes a markdown table and JSON next to the other results.

Every cell's process gets run.py's cache_env: the parent's environment without its scenario, tracking and compile-
cache settings, plus
PYTENSOR_FLAGS=base_compiledir=benchmarks/.work/scaling-cache/pytensor,
JAX_COMPILATION_CACHE_DIR=benchmarks/.work/scaling-cache/jax and JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 (JAX
caches every compiled function): one cache for all cells, git-ignored, kept between invocations, never the user's
home. A cell's first run ever compiles what the cache lacks; later runs reuse it. With --repeat-warm (the default)
every cell runs twice and the table reports the second, warm-cache run, with the first run's fit seconds as
cold_fit_seconds ("first run fit, s": cold only when the cache did not yet hold the cell); --no-repeat-warm runs
each cell once. Per cell: fit and process seconds, peak memory, min bulk ESS, max R-hat, divergences and
draws_x_chains, the posterior draws the fit kept (draws per chain x chains). With --warm-refit (the default) the
cell's process then fits the same data again warm-started from that posterior (what a weekly refresh does from the
champion, sampler.warm_start) and reports its fit seconds, min bulk ESS, max R-hat, divergences and whether it
stayed warm, with the draws it kept (a warm fit short of a gate samples more warm chains, or again cold).
"""

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from run import cache_env

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PY = sys.executable
CACHE = HERE / ".work" / "scaling-cache"

CELL = """
import json, sys, time
from mmm_assets.core.config import load_config
from mmm_assets.core.data.features import validate_features
from mmm_assets.core.synthetic.generator import generate
from mmm_assets.core.modelling.fitting import fit
cfg = load_config(sys.argv[1])
frame, _ = generate(cfg.data.synthetic)
features = validate_features(frame, cfg.channels, [], cfg.validation.min_weeks, "scaling")
result = fit(cfg, features, in_sample_predictive=False)
posterior = result.mmm.idata.posterior
out = {"sampler": result.sampler, "fit_seconds": result.wall_seconds, "min_ess_bulk": result.diagnostics.min_ess_bulk,
       "max_rhat": result.diagnostics.max_rhat, "divergences": result.diagnostics.divergences,
       "draws_x_chains": result.draws * result.chains}
if sys.argv[2] == "warm":
    from mmm_assets.core.inference.warmstart import PreviousPosterior
    warm = fit(cfg, features, in_sample_predictive=False,
               warm_from=PreviousPosterior("the first fit", posterior.to_dataset()))
    out.update(warm_fit_seconds=warm.wall_seconds, warm_min_ess_bulk=warm.diagnostics.min_ess_bulk,
               warm_max_rhat=warm.diagnostics.max_rhat, warm_divergences=warm.diagnostics.divergences,
               stayed_warm=warm.warm_start is not None, warm_draws_x_chains=warm.draws * warm.chains)
print(json.dumps(out))
"""


def scenario(
    weeks: int, channels: int, folder: Path, sampler: str | None = None, cold_sampler: str | None = None
) -> Path:
    """The default scenario stretched to ``weeks`` weeks and ``channels`` channels (with other samplers if given:
    ``sampler.name`` and ``sampler.cold_name``)."""
    raw = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    if sampler:
        raw["sampler"]["name"] = sampler
    if cold_sampler:
        raw["sampler"]["cold_name"] = cold_sampler
    synthetic = raw["data"]["synthetic"]
    base = list(synthetic["channels"].values())
    synthetic["channels"] = {
        f"channel_{i:02d}": {
            **base[i % len(base)],
            "saturation_lam": base[i % len(base)]["saturation_lam"] * (1 + 0.1 * (i // len(base))),
            "beta": base[i % len(base)]["beta"] / (1 + i // len(base)),
        }
        for i in range(channels)
    }
    start = dt.date.fromisoformat(str(synthetic["start_date"]))
    synthetic["end_date"] = str(start + dt.timedelta(weeks=weeks))
    raw["scenario"] = f"scaling_{weeks}w_{channels}c"
    path = folder / f"{raw['scenario']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def measure_cell(config: Path, env: dict[str, str], timeout: float | None = None, warm_refit: bool = False) -> dict:
    """One fit of the scenario ``config`` (then a warm-started refit, when asked) in its own measured process: the
    fits' numbers, process seconds, peak MiB; ``{"timed_out_after_seconds": timeout}`` when it had not finished after
    ``timeout`` seconds (then killed)."""
    command = [PY, str(HERE / "measure.py"), PY, "-c", CELL, str(config), "warm" if warm_refit else "cold"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return {"timed_out_after_seconds": timeout}
    if process.returncode != 0:
        raise RuntimeError(err)
    measured = json.loads(out)
    if measured["returncode"] != 0:
        raise RuntimeError(measured["stderr"])
    fit = json.loads(measured["stdout"].strip().splitlines()[-1])
    return {**fit, "process_seconds": measured["wall_seconds"], "peak_rss_mib": measured["peak_rss_mib"]}


def table(rows: list[dict]) -> str:
    """The markdown table of the cells (a cell that timed out shows "> N" and nothing else)."""
    lines = ["| weeks | channels | fit, s | first run fit, s | process, s | peak memory, MiB | min bulk ESS | "
             "max R-hat | divergences | draws x chains | warm refit, s | warm min bulk ESS | warm max R-hat | "
             "warm divergences | warm draws x chains |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "timed_out_after_seconds" in r:
            lines.append(f"| {r['weeks']} | {r['channels']} | > {r['timed_out_after_seconds']:.0f} (stopped) |"
                         + " - |" * 12)
            continue
        warm = (f"{r['warm_fit_seconds']:.1f}{'' if r['stayed_warm'] else ' (fell back cold)'} | "
                f"{r['warm_min_ess_bulk']:.0f} | {r['warm_max_rhat']:.3f} | {r['warm_divergences']} | "
                f"{r['warm_draws_x_chains']} |" if "warm_fit_seconds" in r else " - |" * 5)
        lines.append(f"| {r['weeks']} | {r['channels']} | {r['fit_seconds']:.1f} | {r['cold_fit_seconds']:.1f} | "
                     f"{r['process_seconds']:.1f} | {r['peak_rss_mib']:.0f} | {r['min_ess_bulk']:.0f} | "
                     f"{r['max_rhat']:.3f} | {r['divergences']} | {r['draws_x_chains']} | {warm}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weeks", type=int, nargs="+", default=[104, 208, 520])
    parser.add_argument("--channels", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--repeat-warm", action=argparse.BooleanOptionalAction, default=True,
                        help="run every cell twice and report the second, warm-cache run (default: on)")
    parser.add_argument("--sampler", choices=["numpyro", "nutpie", "pymc"], help="instead of the default scenario's")
    parser.add_argument("--cold-sampler", choices=["numpyro", "nutpie", "pymc"],
                        help="sampler.cold_name: the backend of the first fit (the warm refit keeps --sampler's)")
    parser.add_argument("--warm-refit", action=argparse.BooleanOptionalAction, default=True,
                        help="after each fit, fit again warm-started from its posterior (default: on)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="stop a cell's fit after this many seconds and report it as stopped (default: 900)")
    args = parser.parse_args()
    env = cache_env(CACHE / "pytensor", CACHE / "jax")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for weeks in args.weeks:
            for channels in args.channels:
                config = scenario(weeks, channels, Path(tmp), args.sampler, args.cold_sampler)
                runs = [measure_cell(config, env, args.timeout, args.warm_refit)]
                if args.repeat_warm and "fit_seconds" in runs[0]:
                    runs.append(measure_cell(config, env, args.timeout, args.warm_refit))
                rows.append({"weeks": weeks, "channels": channels, **runs[-1],
                             "cold_fit_seconds": runs[0].get("fit_seconds")})
                print(json.dumps(rows[-1]), flush=True)
    samplers = [name for name in (args.sampler, args.cold_sampler and f"cold-{args.cold_sampler}") if name]
    stamp = "-".join([dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"), *samplers])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"scaling-{stamp}.json").write_text(json.dumps(rows, indent=1))
    (args.out / f"scaling-{stamp}.md").write_text(table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
