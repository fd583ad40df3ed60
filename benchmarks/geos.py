"""Pooled (hierarchical, multi-geo) MMM against the number of geos: wall time, peak memory, convergence, recovery.

    .venv/bin/python benchmarks/geos.py [--geos 5,10,20] [--weeks 156] [--channels 3] [--timeout 900] [--variants ...]
                                        [--learnt-sampler auto|numpyro|nutpie|both] [--chains 2 --tune 300 --draws 500]

The scenario is built in memory from config/default.yaml (the reference 3 channels; --channels N repeats them with
perturbed truths, many_channels.repeat_channels): N geos g00..g<N-1>, W weeks,
each geo reseeded and with its own truth: saturation_lam x exp(0.15 z), adstock_alpha + 0.03 z (clipped to
[0.05, 0.9]), beta x exp(0.15 z), spend range x 0.5-2 and outcome_scale x 0.5-2 (log-uniform), z ~ N(0, 1) from a
fixed seed per geo, so geo i has the same truth at every N. The geos are a `markets:` section laid over the default
scenario (as config/markets.yaml does); `cfg.for_market(g)` + the generator give each geo's frame and truth.

Variants, each in its own process (compile caches .cache/pytensor and .cache/jax, shared by all cells), cut off after
--timeout seconds, all with the same budget (--chains x (--tune + --draws)), no in-sample predictive:

- pooled-fixed-numpyro: `pooling.fit_pooled` as it ships (centred, fixed between-geo spread; with the default
  sampler settings numpyro from the Laplace approximation at the mode, its covariance as a fixed dense mass matrix,
  more chains when short of the R-hat / ESS gates);
- pooled-fixed-nutpie: the same model with sampler nutpie (adapting its own mass matrix over --tune steps);
- pooled-eb-numpyro: as pooled-fixed-numpyro, but with markets.spread: learnt (the between-geo spreads estimated
  before sampling by empirical Bayes, `spread.learn_spreads`, then fixed);
- pooled-learnt-noncentred-<sampler>: the between-geo spread learnt (HalfNormal(spread) per channel), non-centred
  (pymc_extras Prior(centered=False, transform=...)), around PoolingPriors' means; the sampler is whichever of the
  two fixed variants was faster at the smallest N (--learnt-sampler auto), or the one(s) named;
- separate-in-process: every geo fitted alone, one after another in one process, by the project's own single-market
  fit (`fitting.fit`: numpyro from a Laplace start, more draws when short of the ESS gates).

Per cell: whole-process and fit wall seconds, peak RSS of the process (wait4), max R-hat / min bulk and tail ESS /
divergences over the model's free parameters (`sampling.diagnose` over `build.free_parameters`) and over the per-geo
media parameters only, leapfrog steps and tree depth per draw, and recovery per geo (`pooling.market_view`,
`metrics.recovery`): share of true lam inside the 94 % HDI and mean relative lam error over geos x channels.
Writes benchmarks/results/geos-<UTC stamp>.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CACHE = ROOT / ".cache"
os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={CACHE / 'pytensor'}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE / "jax"))
sys.path.insert(0, str(ROOT))

TRUTH_SEED = 20260101
DATA_SEED = 30000
MEDIA = ("saturation_lam", "adstock_alpha", "saturation_beta")
FIXED = ("pooled-fixed-numpyro", "pooled-fixed-nutpie")
SEPARATE = "separate-in-process"
LEARNT = "pooled-learnt-noncentred-"
EB = "pooled-eb-numpyro"


# ---------------------------------------------------------------------------------------------------------- scenario
def geo_names(n: int) -> list[str]:
    return [f"g{i:02d}" for i in range(n)]


def geo_truth(i: int, base: dict, spread: float = 0.15) -> dict:
    """Geo i's synthetic overrides: reseeded, lam and beta x exp(spread z), alpha + (spread / 5) z, its own spend and
    outcome size."""
    rng = np.random.default_rng([TRUTH_SEED, i])
    spend_size, outcome_size = np.exp(rng.uniform(math.log(0.5), math.log(2.0), 2))
    channels = {}
    for name, spec in base["channels"].items():
        z_lam, z_alpha, z_beta = rng.normal(size=3)
        channels[name] = {
            "spend_min": round(spec["spend_min"] * spend_size, 2),
            "spend_max": round(spec["spend_max"] * spend_size, 2),
            "saturation_lam": round(spec["saturation_lam"] * math.exp(spread * z_lam), 4),
            "adstock_alpha": round(float(np.clip(spec["adstock_alpha"] + spread / 5 * z_alpha, 0.05, 0.9)), 4),
            "beta": round(spec["beta"] * math.exp(spread * z_beta), 4),
        }
    return {"synthetic": {"seed": DATA_SEED + i, "outcome_scale": round(base["outcome_scale"] * outcome_size, 2),
                          "channels": channels}}


def scenario(n: int, weeks: int, chains: int, tune: int, draws: int, channels: int = 3,
             sampler: dict | None = None, truth_spread: float = 0.15, noise: float | None = None):
    """The N-geo scenario as a validated MMMConfig (config/default.yaml with a pooled `markets:` section), with
    ``channels`` channels per geo: the default's 3 repeated with perturbed truths as many_channels.py does, and
    ``sampler`` settings over the default's; ``truth_spread``: how far the geos' truths are apart (geo_truth),
    ``noise``: every geo's noise_sigma (the default's 0.01 when None)."""
    from many_channels import repeat_channels

    from mmm_assets.core.config.loading import parse_config

    raw = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    base = raw["data"]["synthetic"]
    base["channels"] = repeat_channels(base["channels"], channels)
    if noise is not None:
        base["noise_sigma"] = noise
    start = dt.date.fromisoformat(str(base["start_date"]))
    base["end_date"] = str(start + dt.timedelta(weeks=weeks))  # trimmed to `weeks` rows in geo_data
    names = geo_names(n)
    raw |= {"scenario": f"geos_{n}", "markets": {"names": names, "pooling": "pooled",
                                                 "data": {g: geo_truth(i, base, truth_spread)
                                                          for i, g in enumerate(names)}}}
    raw["sampler"] |= {"chains": chains, "tune": tune, "draws": draws} | (sampler or {})
    raw["validation"] |= {"holdout_weeks": 0}
    return parse_config(raw, source=f"geos({n})", root=ROOT)


def geo_data(cfg, geo: str, weeks: int):
    """The geo's validated feature frame (first ``weeks`` weeks) and its ground truth."""
    from mmm_assets.core.data.features import validate_features
    from mmm_assets.core.synthetic.generator import generate

    narrowed = cfg.for_market(geo)
    frame, truth = generate(narrowed.data.synthetic)
    frame = frame.iloc[:weeks].reset_index(drop=True)
    return validate_features(frame, narrowed.channels, [], narrowed.validation.min_weeks, geo), truth


# ------------------------------------------------------------------------------------------------------ learnt priors
class LearntSpreadPriors:
    """PoolingPriors' means with the between-geo spread learnt (HalfNormal(spread) per channel), non-centred.

    Duck-typed for ``fit_pooled``, which only calls ``model_config()``."""

    def __init__(self) -> None:
        from mmm_assets.core.modelling.pooling import PoolingPriors

        self.base = PoolingPriors()

    def model_config(self) -> dict:
        from pymc_extras.prior import Prior

        from mmm_assets.core.modelling.pooling import MARKET_DIM

        def one(h, transform: str) -> Prior:
            return Prior(
                "Normal",
                mu=Prior("Normal", mu=h.mean, sigma=h.mean_sd, dims="channel"),
                sigma=Prior("HalfNormal", sigma=h.spread, dims="channel"),
                dims=(MARKET_DIM, "channel"),
                centered=False,
                transform=transform,
            )

        return {"saturation_lam": one(self.base.saturation_lam, "exp"),
                "adstock_alpha": one(self.base.adstock_alpha, "sigmoid"),
                "saturation_beta": one(self.base.saturation_beta, "exp")}


# --------------------------------------------------------------------------------------------------------- one cell
def tree_stats(idata) -> dict:
    """Leapfrog steps and tree depth per draw, from whichever names the backend writes."""
    stats = idata.sample_stats
    out = {}
    for key, names in (("leapfrog_per_draw", ("n_steps", "tree_size")), ("tree_depth", ("tree_depth", "depth"))):
        for name in names:
            if name in stats:
                values = np.asarray(stats[name], dtype=float)
                out[f"mean_{key}"] = float(values.mean())
                out[f"max_{key}"] = float(values.max())
                break
    if "step_size" in stats:
        out["mean_step_size"] = float(np.asarray(stats["step_size"], dtype=float).mean())
    return out


def recovery_rows(mmm, truth) -> list[dict]:
    from mmm_assets.core.evaluation import metrics
    from mmm_assets.core.modelling import posterior as posterior_core

    table = metrics.recovery(posterior_core.posterior_parameters(mmm), truth.parameters)
    return table.to_dict("records")


def recovery_summary(rows: list[dict]) -> dict:
    lam = [r for r in rows if r["parameter"] == "saturation_lam"]
    alpha = [r for r in rows if r["parameter"] == "adstock_alpha"]
    return {
        "lam_in_hdi": f"{sum(r['true_in_hdi'] for r in lam)}/{len(lam)}",
        "lam_in_hdi_share": sum(r["true_in_hdi"] for r in lam) / len(lam),
        "mean_lam_rel_error": float(np.mean([r["error"] for r in lam])),
        "max_lam_rel_error": float(np.max([r["error"] for r in lam])),
        "alpha_in_hdi": f"{sum(r['true_in_hdi'] for r in alpha)}/{len(alpha)}",
        "mean_alpha_abs_error": float(np.mean([r["error"] for r in alpha])),
    }


def cell(variant: str, n: int, weeks: int, chains: int, tune: int, draws: int, channels: int = 3,
         sampler: dict | None = None, truth_spread: float = 0.15, noise: float | None = None) -> dict:
    """Fit one variant on the N-geo scenario in this process; its figures."""
    from mmm_assets.core.inference import sampling as sampling_core
    from mmm_assets.core.modelling import build as build_core
    from mmm_assets.core.modelling import fitting as fitting_core
    from mmm_assets.core.modelling import pooling

    started = time.monotonic()
    cfg = scenario(n, weeks, chains, tune, draws, channels, sampler, truth_spread, noise)
    geos = geo_names(n)
    data = {g: geo_data(cfg, g, weeks) for g in geos}
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    out: dict = {"variant": variant, "geos": n, "weeks": weeks, "channels": channels}
    if variant == SEPARATE:
        rows, diags, stats, fit_wall, final_draws = [], [], [], [], []
        for g in geos:
            features, truth = data[g]
            result = fitting_core.fit(cfg.for_market(g), features, report=log, in_sample_predictive=False)
            fit_wall.append(result.wall_seconds)
            final_draws.append(result.draws)
            diags.append(result.diagnostics)
            stats.append(tree_stats(result.mmm.idata))
            rows += recovery_rows(result.mmm, truth)
        out |= {
            "fit_seconds": sum(fit_wall), "per_geo_fit_seconds": sum(fit_wall) / n,
            "max_geo_fit_seconds": max(fit_wall),
            "divergences": float(sum(d.divergences for d in diags)),
            "max_rhat": max(d.max_rhat for d in diags),
            "min_ess_bulk": min(d.min_ess_bulk for d in diags),
            "min_ess_tail": min(d.min_ess_tail for d in diags),
            "geos_resampled": sum(d != draws for d in final_draws),
            "draws_per_geo": final_draws,
            "mean_leapfrog_per_draw": float(np.mean([s.get("mean_leapfrog_per_draw", np.nan) for s in stats])),
            "max_leapfrog_per_draw": float(np.max([s.get("max_leapfrog_per_draw", np.nan) for s in stats])),
            "mean_tree_depth": float(np.mean([s.get("mean_tree_depth", np.nan) for s in stats])),
            "sampler": result.sampler,
        }
    else:
        sampler = variant.rsplit("-", 1)[1]
        s = cfg.sampler.model_copy(update={"name": sampler, "cold_name": None})
        spread = "learnt" if variant == EB else "fixed"
        cfg = cfg.model_copy(update={"markets": cfg.markets.model_copy(update={"spread": spread})})
        priors = LearntSpreadPriors() if variant.startswith(LEARNT) else None
        frames = {g: data[g][0] for g in geos}
        result = pooling.fit_pooled(cfg, frames, report=log, sampler_cfg=s, priors=priors,
                                    in_sample_predictive=False)
        mmm = result.mmm
        free = build_core.free_parameters(mmm)
        media = sampling_core.diagnose(mmm.idata, list(MEDIA))
        out |= {
            "fit_seconds": result.wall_seconds, "sampler": result.sampler,
            **result.diagnostics.as_dict(),
            "worst_rhat_parameter": result.diagnostics.worst_rhat_parameter,
            "media_max_rhat": media.max_rhat, "media_min_ess_bulk": media.min_ess_bulk,
            "media_min_ess_tail": media.min_ess_tail,
            "free_parameters": free,
            **tree_stats(mmm.idata),
        }
        for name in ("saturation_lam", "adstock_alpha", "saturation_beta"):
            spread = f"{name}_raw_sigma"
            if variant == EB:
                sigma = np.asarray(mmm.model_config[name].parameters["sigma"], dtype=float)
                out[f"{spread}_mean"] = {str(c): float(v) for c, v in zip(mmm.channel_columns, sigma, strict=True)}
            elif spread in mmm.idata.posterior:
                out[f"{spread}_mean"] = {str(c): float(v) for c, v in zip(
                    mmm.idata.posterior["channel"].values,
                    mmm.idata.posterior[spread].mean(("chain", "draw")).values, strict=True)}
        rows = []
        view_started = time.monotonic()
        for g in geos:
            rows += recovery_rows(pooling.market_view(mmm, g), data[g][1])
        out["views_seconds"] = time.monotonic() - view_started
    out |= recovery_summary(rows)
    out["cell_seconds_in_process"] = time.monotonic() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    out["self_maxrss_mib"] = own.ru_maxrss / 1024
    out["cpu_seconds"] = own.ru_utime + own.ru_stime
    out["load_average_1min_at_end"] = os.getloadavg()[0]  # the machine is shared: how busy it was
    return out


# ------------------------------------------------------------------------------------------------------------ parent
def run_measured(command: list[str], env: dict, stdout, stderr, timeout: float) -> dict:
    """``command`` in its own process group, killed with the group after ``timeout`` seconds; its exit code (None
    when cut off), wall seconds and peak RSS in MiB, both measured from here (wait4)."""
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=ROOT, env=env, start_new_session=True)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() - started > timeout:
            os.killpg(proc.pid, signal.SIGKILL)  # the process's own group (start_new_session)
            _, _, usage = os.wait4(proc.pid, 0)
            code = None
            break
        time.sleep(0.5)
    return {"exit_code": code, "wall_seconds": time.monotonic() - started, "peak_rss_mib": usage.ru_maxrss / 1024}


def run_cell(variant: str, n: int, args, env: dict, logs: Path) -> dict:
    """`cell` in a fresh process, cut off after args.timeout; wall time and peak RSS (wait4) measured from here."""
    command = [sys.executable, str(Path(__file__).resolve()), "--cell", variant, "--geos", str(n),
               "--weeks", str(args.weeks), "--chains", str(args.chains), "--tune", str(args.tune),
               "--draws", str(args.draws), "--channels", str(args.channels),
               "--truth-spread", str(args.truth_spread), *(["--noise", str(args.noise)] if args.noise else []),
               *(f"--sampler-set={kv}" for kv in getattr(args, "sampler_set", []))]
    stdout, stderr = logs / f"{variant}-{n}.out", logs / f"{variant}-{n}.err"
    with stdout.open("w") as out, stderr.open("w") as err:
        measured = run_measured(command, env, out, err, args.timeout)
    code = measured.pop("exit_code")
    row = {"variant": variant, "geos": n, **measured}
    if code is None:
        return row | {"status": f"timed out after {args.timeout:.0f} s"}
    if code != 0:
        lines = stderr.read_text().strip().splitlines()
        return row | {"status": "error", "error": lines[-1] if lines else f"exit {code}", "stderr_tail": lines[-30:]}
    result = json.loads(stdout.read_text().strip().splitlines()[-1])
    log = [line for line in stderr.read_text().splitlines() if "sampling" not in line or "done" in line]
    return row | {"status": "ok"} | result | {"log_tail": log[-12:]}


def fmt(value, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value)


def markdown(result: dict) -> str:
    a = result["args"]
    lines = [
        f"# Pooled MMM against the number of geos ({result['stamp']})",
        "",
        f"`{result['command']}`",
        "",
        f"{a['weeks']} weeks x {a.get('channels', 3)} channels (config/default.yaml's, repeated) per geo, truth "
        f"perturbed per geo (lam x exp(s z), alpha + s/5 z, beta x exp(s z), s = {a.get('truth_spread', 0.15)}, "
        f"sizes x 0.5-2), noise_sigma {a.get('noise') or 0.01}. Every variant "
        f"{a['chains']} chains x ({a['tune']} tune "
        f"+ {a['draws']} draws) (separate: the project's single-market fit, Laplace start + 100 tune steps, more "
        f"draws when short of ESS 400), no in-sample predictive. {result['machine']}; compare variants within a run "
        "rather than absolute seconds across runs (the machines are shared; the load column says how busy).",
        "",
        "Wall = the whole process (imports, data, compile, sampling, market views); fit = the sampling call "
        "(compile included). R-hat / ESS / divergences over the model's free parameters (`build.free_parameters`); "
        "'media' = over the per-geo saturation_lam / adstock_alpha / saturation_beta only. Leapfrog = mean steps per "
        "draw (max). λ in HDI: true λ inside the 94 % HDI, over geos x channels. CPU s: the process's own user + "
        "system seconds; load: the machine's 1-minute load average when the cell ended (2 cores).",
        "",
        "| variant | geos | status | wall s | fit s | CPU s | load | peak RSS MiB | max R-hat | min bulk ESS | "
        "min tail ESS | divergences | media max R-hat | media min bulk ESS | leapfrog / draw (max) | tree depth | "
        "λ in HDI | mean λ rel. error | mean α abs. error |",
        "|" + "---|" * 19,
    ]
    for r in result["rows"]:
        geos = f"{r['geos']} (run {r['run']})" if r.get("run") else str(r["geos"])
        if r["status"] != "ok":
            error = f": {r['error']}" if r.get("error") else ""
            lines.append(f"| {r['variant']} | {geos} | {r['status']}{error}"
                         f" | {fmt(r['wall_seconds'])} | | | | {fmt(r['peak_rss_mib'])} |" + " |" * 11)
            continue
        fit = fmt(r["fit_seconds"])
        if r["variant"] == SEPARATE:
            fit += f" ({fmt(r['per_geo_fit_seconds'], 1)}/geo; {r['geos_resampled']} resampled)"
        lines.append(
            f"| {r['variant']} | {geos} | ok | {fmt(r['wall_seconds'])} | {fit} | {fmt(r.get('cpu_seconds'))} | "
            f"{fmt(r.get('load_average_1min_at_end'), 1)} | {fmt(r['peak_rss_mib'])} | "
            f"{fmt(r['max_rhat'], 3)} | {fmt(r['min_ess_bulk'])} | {fmt(r['min_ess_tail'])} | "
            f"{fmt(r['divergences'])} | {fmt(r.get('media_max_rhat'), 3)} | {fmt(r.get('media_min_ess_bulk'))} | "
            f"{fmt(r.get('mean_leapfrog_per_draw'), 1)} ({fmt(r.get('max_leapfrog_per_draw'))}) | "
            f"{fmt(r.get('mean_tree_depth'), 2)} | {r['lam_in_hdi']} | {fmt(r['mean_lam_rel_error'], 3)} | "
            f"{fmt(r['mean_alpha_abs_error'], 3)} |"
        )
    learnt = [r for r in result["rows"] if r["status"] == "ok" and "saturation_lam_raw_sigma_mean" in r]
    if learnt:
        lines += ["", "Learnt between-geo spreads (the posterior mean of sigma, or the empirical-Bayes estimate, "
                  f"on the log / logit scale; truth: lam {a.get('truth_spread', 0.15)}, beta "
                  f"{a.get('truth_spread', 0.15)}, alpha ~{a.get('truth_spread', 0.15) / 5:.3g} / (α(1-α))):", ""]
        for r in learnt:
            parts = [f"{p}: " + ", ".join(f"{c} {v:.3f}" for c, v in r[f"{p}_raw_sigma_mean"].items())
                     for p in MEDIA if f"{p}_raw_sigma_mean" in r]
            lines.append(f"- {r['variant']}, {r['geos']} geos — " + "; ".join(parts))
    if result.get("notes"):
        lines += ["", *result["notes"]]
    return "\n".join(lines) + "\n"


def write(result: dict, name: str = "geos", render=markdown) -> Path:
    """benchmarks/results/<name>-<stamp>.json (``result``) and .md (``render(result)``); the .md's path."""
    out = HERE / "results" / f"{name}-{result['stamp']}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    out.write_text(render(result))
    return out


def budget_arguments(parser: argparse.ArgumentParser, timeout: float) -> None:
    """The options every geo benchmark shares: weeks and channels per geo, the sampling budget, the time limit per
    cell."""
    parser.add_argument("--weeks", type=int, default=156)
    parser.add_argument("--channels", type=int, default=3,
                        help="channels per geo: config/default.yaml's 3, repeated with perturbed truths beyond")
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=timeout, help="seconds per cell")
    parser.add_argument("--truth-spread", type=float, default=0.15,
                        help="how far apart the geos' true lam and beta are (log scale; alpha: a fifth of it)")
    parser.add_argument("--noise", type=float, default=None, help="every geo's noise_sigma (default 0.01)")
    parser.add_argument("--sampler-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a sampler setting over config/default.yaml's (a YAML value), e.g. "
                        "laplace_longer_from=null; repeatable")


def sampler_settings(args) -> dict:
    """--sampler-set's settings as a dict."""
    return {key: yaml.safe_load(value) for key, value in (kv.split("=", 1) for kv in args.sampler_set)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--geos", default="5,10,20", help="comma-separated numbers of geos (one N with --cell)")
    budget_arguments(parser, timeout=900.0)
    parser.add_argument("--variants", default=",".join([*FIXED, "learnt", SEPARATE]),
                        help="comma-separated: pooled-fixed-numpyro, pooled-fixed-nutpie, pooled-eb-numpyro, learnt, "
                        "separate-in-process")
    parser.add_argument("--learnt-sampler", default="auto", choices=["auto", "numpyro", "nutpie", "both"])
    parser.add_argument("--stop-after", type=float, default=None,
                        help="launch no new cell after this many seconds since the start (default: no limit)")
    parser.add_argument("--combine", type=Path, nargs="+", default=None,
                        help="merge earlier geos-*.json results into one table (no fitting)")
    parser.add_argument("--notes-file", type=Path, default=None, help="with --combine: markdown appended below")
    parser.add_argument("--cell", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.combine:
        parts = [json.loads(path.read_text()) for path in args.combine]
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        rows = sorted((r | {"run": p["stamp"]} for p in parts for r in p["rows"]),
                      key=lambda r: (r["geos"], r["variant"]))
        notes = [f"Rows from runs {', '.join(p['stamp'] + ' (`' + p['command'] + '`)' for p in parts)}; "
                 "compare rows of the same run first (the machine's load changed between runs)."]
        notes += [n for p in parts for n in p.get("notes", [])]
        if args.notes_file:
            notes.append(args.notes_file.read_text())
        combined = {"stamp": stamp, "command": "python benchmarks/geos.py --combine " + " ".join(
                        str(p.resolve().relative_to(ROOT)) if p.resolve().is_relative_to(ROOT) else str(p)
                        for p in args.combine),
                    "args": parts[0]["args"], "machine": parts[0]["machine"], "rows": rows, "notes": notes}
        print(write(combined).read_text())
        return

    if args.cell:
        print(json.dumps(cell(args.cell, int(args.geos), args.weeks, args.chains, args.tune, args.draws,
                              args.channels, sampler_settings(args), args.truth_spread, args.noise)), flush=True)
        return

    from run import cache_env  # benchmarks/run.py (this folder is on sys.path when run as a script)

    env = cache_env(CACHE / "pytensor", CACHE / "jax")
    env["PYTHONUNBUFFERED"] = "1"
    counts = [int(n) for n in args.geos.split(",")]
    wanted = args.variants.split(",")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    command = "python benchmarks/geos.py " + " ".join(a for a in sys.argv[1:])
    result = {"stamp": stamp, "command": command.strip(), "args": vars(args),
              "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}", "rows": [], "notes": []}
    learnt = {"numpyro": ["numpyro"], "nutpie": ["nutpie"], "both": ["numpyro", "nutpie"]}.get(args.learnt_sampler)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="geos-") as tmp:
        for n in counts:
            plan = [v for v in (*FIXED, EB) if v in wanted]
            for step in ["fixed", SEPARATE, "learnt"]:
                if step == "fixed":
                    variants = plan
                elif step == "learnt":
                    if "learnt" not in wanted:
                        continue
                    if learnt is None:  # auto: the faster fixed variant at the smallest N measured so far
                        done = [r for r in result["rows"] if r["variant"] in FIXED and r["status"] == "ok"]
                        smallest = min((r["geos"] for r in done), default=None)
                        pick = min((r for r in done if r["geos"] == smallest), key=lambda r: r["wall_seconds"],
                                   default=None)
                        learnt = [pick["variant"].rsplit("-", 1)[1] if pick else "numpyro"]
                        result["notes"].append(f"Learnt variant sampled with {learnt[0]} (--learnt-sampler "
                                               f"{args.learnt_sampler}: the faster fixed variant at {smallest} geos).")
                    variants = [f"{LEARNT}{s}" for s in learnt]
                else:
                    variants = [SEPARATE] if SEPARATE in wanted else []
                for variant in variants:
                    if args.stop_after is not None and time.monotonic() - began > args.stop_after:
                        result["notes"].append(
                            f"{variant} at {n} geos not run: past --stop-after {args.stop_after:.0f} s")
                        continue
                    print(f"[{time.monotonic() - began:.0f} s] {variant} x {n} geos ...", flush=True)
                    row = run_cell(variant, n, args, env, Path(tmp))
                    result["rows"].append(row)
                    brief = {k: row.get(k) for k in ("status", "wall_seconds", "fit_seconds", "peak_rss_mib",
                                                     "max_rhat", "min_ess_bulk", "divergences",
                                                     "mean_leapfrog_per_draw", "lam_in_hdi", "mean_lam_rel_error",
                                                     "error")}
                    print(json.dumps(brief, default=str), flush=True)
                    write(result)  # after every cell, so a cut-off run keeps what it measured
    out = write(result)
    print(out.read_text())


if __name__ == "__main__":
    main()
