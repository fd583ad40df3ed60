"""Many channels on realistic data: fit time, convergence and recovery at 10 / 20 / 30 channels with the defaults.

    python benchmarks/many_channels.py [--channels 10 20 30] [--weeks 156] [--timeout 900] [--baseline] [--grouped]
                                       [--variant "" "fallback_name=nutpie" "cold_name=nutpie" ...]

Each cell is config/realistic.yaml (7 % noise, trend, season, events, price, two bought-together pairs) with its
eight channels' truth repeated, with perturbed saturation and smaller effects, up to N channels, over W weeks; fitted
by the core fit in its own process (run.py's cache_env: compile caches under benchmarks/.work/many-channels-cache), cut off after
--timeout seconds; each --variant (comma-separated sampler settings, "" = the defaults) is fitted on every cell, one
after another in the same run, so their ratios share the machine's load; with --baseline, PyMC-Marketing's defaults +
nutpie on the same data too (BASELINE_CELL); with --grouped, the same data with every channel's repeats summed into
one column (the 8 base channels: what the channels_measured check suggests for channels bought together). Per cell: fit and whole-process seconds, the sampler that drew the kept
sample and the start it kept (a Laplace start, or none when the fit fell back cold), divergences, worst R-hat, smallest bulk / tail ESS, how many channels'
true ROAS lie in their 94 % HDI, how many channels' ROAS the data measured (core.evaluation.measurement) and the
spend share left at the prior, how many of the true ROAS outside their HDI also lie outside their prior's 94 %
range (misses the prior explains) and how many the channels_measured check flags (at its prior), the media's estimated and true share of the KPI. Writes
benchmarks/results/many-channels-<UTC stamp>.md.
"""

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from run import cache_env

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".work" / "many-channels-cache"
#: config/realistic.yaml's channels, which every cell repeats.
BASE_CHANNELS = 8

CELL = """
import json, sys
from mmm_assets.core.config import load_config
from mmm_assets.core.data.inputs import weekly_features
from mmm_assets.core.evaluation.measurement import AT_PRIOR, measurement_metrics
from mmm_assets.core.evaluation.prior_checks import measure_channels
from mmm_assets.core.modelling.fitting import fit
from mmm_assets.core.modelling.posterior import mean_hdi
from mmm_assets.core.modelling.priors import posterior_roas
from mmm_assets.core.synthetic.generator import generate
cfg = load_config(sys.argv[1])
frame, truth = generate(cfg.data.synthetic, cfg.model.calendar)
contributions = truth.contributions
if len(sys.argv) > 2:  # grouped: each channel's repeats summed into it, fitted as the 8-channel scenario sys.argv[2]
    base = lambda c: c.rsplit("_", 1)[0] if c.rsplit("_", 1)[-1].isdigit() else c
    frame = frame.drop(columns=cfg.channels).join(frame[cfg.channels].T.groupby(base, sort=False).sum().T)
    contributions = contributions[cfg.channels].T.groupby(base, sort=False).sum().T
    cfg = load_config(sys.argv[2])
features = weekly_features(cfg, frame)
result = fit(cfg, features, in_sample_predictive=False, report=lambda m: print(m, file=sys.stderr, flush=True))
roas = posterior_roas(result.mmm)
hdi = mean_hdi(roas).set_index(roas["channel"].to_index())
spend = features[cfg.channels].sum()
true = contributions[cfg.channels].sum() / spend
inside = int(sum(hdi.loc[c, "hdi_low"] <= true[c] <= hdi.loc[c, "hdi_high"] for c in cfg.channels))
missed = [c for c in cfg.channels if not hdi.loc[c, "hdi_low"] <= true[c] <= hdi.loc[c, "hdi_high"]]
table = measure_channels(result.mmm, cfg).set_index("channel")
metrics = measurement_metrics(table.reset_index())
outside_prior = [c for c in missed if not table.loc[c, "prior_low"] <= true[c] <= table.loc[c, "prior_high"]]
d = result.diagnostics
print(json.dumps({"fit_seconds": result.wall_seconds, "sampler": result.sampler,
                  "kept_start": result.warm_start or "cold", "divergences": d.divergences,
                  "max_rhat": d.max_rhat, "min_ess_bulk": d.min_ess_bulk, "min_ess_tail": d.min_ess_tail,
                  "roas_in_hdi": f"{inside}/{len(cfg.channels)}",
                  "roas_measured": f"{metrics['channels_measured']:.0f}/{len(cfg.channels)}",
                  "unmeasured_spend_share": metrics["unmeasured_spend_share"],
                  "misses_outside_prior_range": f"{len(outside_prior)}/{len(missed)}",
                  "misses_flagged_at_prior": f"{sum(table.loc[c, 'verdict'] == AT_PRIOR for c in missed)}/{len(missed)}",
                  "media_share": float((hdi["mean"] * spend).sum() / features["y"].sum()),
                  "true_media_share": float(contributions[cfg.channels].sum().sum() / features["y"].sum())}))
"""

#: PyMC-Marketing's MMM with its defaults on the same weeks: the scenario's channels, its other columns (price, the
#: events) and a linear trend column as controls, its yearly Fourier order, the library's default priors and scaling, sampled with
#: nutpie, 4 chains x (1000 tune + 1000 draws), the library's defaults. Diagnostics over every free parameter.
BASELINE_CELL = """
import json, sys, time
import numpy as np
from pymc_marketing.mmm import MMM, GeometricAdstock, LogisticSaturation
from mmm_assets.core.config import load_config
from mmm_assets.core.data.inputs import weekly_features
from mmm_assets.core.inference.sampling import diagnose
from mmm_assets.core.modelling.posterior import mean_hdi
from mmm_assets.core.synthetic.generator import generate
cfg = load_config(sys.argv[1])
frame, truth = generate(cfg.data.synthetic, cfg.model.calendar)
features = weekly_features(cfg, frame)
if cfg.model.trend:
    features["trend"] = np.arange(len(features), dtype=float)
controls = [c for c in features.columns if c not in ("date", "y", *cfg.channels)]
mmm = MMM(date_column="date", channel_columns=cfg.channels, adstock=GeometricAdstock(l_max=cfg.model.adstock_l_max),
          saturation=LogisticSaturation(), control_columns=controls, yearly_seasonality=cfg.model.yearly_seasonality)
mmm.build_model(features.drop(columns="y"), features["y"])
mmm.add_original_scale_contribution_variable(var=["channel_contribution"])
started = time.monotonic()
mmm.fit(features.drop(columns="y"), features["y"], nuts_sampler="nutpie", random_seed=1, progressbar=False)
seconds = time.monotonic() - started
free = [v.name for v in mmm.model.free_RVs]
d = diagnose(mmm.idata, free)
contribution = mmm.idata.posterior["channel_contribution_original_scale"].sum("date")
spend = features[cfg.channels].sum()
roas = contribution / spend.to_xarray().rename(index="channel")
hdi = mean_hdi(roas).set_index(roas["channel"].to_index())
true = truth.contributions[cfg.channels].sum() / spend
inside = int(sum(hdi.loc[c, "hdi_low"] <= true[c] <= hdi.loc[c, "hdi_high"] for c in cfg.channels))
print(json.dumps({"fit_seconds": seconds, "sampler": "pymc-marketing defaults + nutpie", "divergences": d.divergences,
                  "max_rhat": d.max_rhat, "min_ess_bulk": d.min_ess_bulk, "min_ess_tail": d.min_ess_tail,
                  "roas_in_hdi": f"{inside}/{len(cfg.channels)}",
                  "roas_measured": f"{metrics['channels_measured']:.0f}/{len(cfg.channels)}",
                  "unmeasured_spend_share": metrics["unmeasured_spend_share"],
                  "misses_outside_prior_range": f"{len(outside_prior)}/{len(missed)}",
                  "misses_flagged_at_prior": f"{sum(table.loc[c, 'verdict'] == AT_PRIOR for c in missed)}/{len(missed)}",
                  "media_share": float((hdi["mean"] * spend).sum() / features["y"].sum()),
                  "true_media_share": float(truth.contributions[cfg.channels].sum().sum() / features["y"].sum())}))
"""


def repeat_channels(specs: dict[str, dict], n: int) -> dict[str, dict]:
    """``n`` channels from the synthetic channel ``specs``, in order, repeated when ``n`` is larger: round r's copy
    of a channel is named <name>_<r>, with saturation_lam x (1 + 0.1 r), beta / (1 + r) and no ``follows``."""
    names = list(specs)
    out = {}
    for i in range(n):
        round_, name = i // len(names), names[i % len(names)]
        spec = dict(specs[name])
        if round_:
            spec.pop("follows", None)
            spec["saturation_lam"] = spec["saturation_lam"] * (1 + 0.1 * round_)
            spec["beta"] = spec["beta"] / (1 + round_)
        out[f"{name}_{round_}" if round_ else name] = spec
    return out


def scenario(channels: int, weeks: int, folder: Path, sampler: dict[str, str] | None = None) -> Path:
    """config/realistic.yaml with ``channels`` channels over ``weeks`` weeks (its own channels first), with the
    ``sampler`` settings over the default's."""
    raw = yaml.safe_load((ROOT / "config" / "realistic.yaml").read_text())
    base = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())["data"]["synthetic"]["channels"]
    own = raw["data"]["synthetic"]["channels"]
    raw["data"]["synthetic"]["channels"] = repeat_channels(
        {name: {**base.get(name, {}), **spec} for name, spec in own.items()}, channels)
    raw["extends"] = str(ROOT / "config" / "default.yaml")
    start = dt.date.fromisoformat(str(raw["data"]["synthetic"]["start_date"]))
    raw["data"]["synthetic"]["end_date"] = str(start + dt.timedelta(weeks=weeks - 1))
    raw["scenario"] = f"many_{channels}c_{weeks}w"
    raw.setdefault("sampler", {}).update({key: yaml.safe_load(value) for key, value in (sampler or {}).items()})
    path = folder / f"{raw['scenario']}_{'_'.join(f'{k}-{v}' for k, v in (sampler or {}).items()) or 'default'}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_cell(config: Path, timeout: float, cell: str = CELL, grouped: Path | None = None) -> dict:
    """``cell`` on one scenario file in its own process (with ``grouped``, CELL fits the channels summed into the
    scenario ``grouped``'s): its figures and the whole process's wall seconds, the error, or the timeout."""
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", cell, str(config), *([str(grouped)] if grouped else [])],
                              capture_output=True, text=True, cwd=ROOT,
                              env=cache_env(CACHE / "pytensor", CACHE / "jax"), timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timed_out_after_seconds": timeout}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_seconds": time.monotonic() - started}


def write_results(rows: list[dict], name: str, title: str, command: str) -> Path:
    """The rows as a markdown table in benchmarks/results/<name>-<UTC stamp>.md, under a title and the command, and
    as JSON beside it."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = HERE / "results" / f"{name}-{stamp}.md"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(round(r[k], 3) if isinstance(r.get(k), float) else r.get(k, "")) for k in keys)
              + " |" for r in rows]
    out.write_text(f"# {title} ({stamp})\n\n`{command}`\n\n" + "\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"stamp": stamp, "command": command, "rows": rows}, indent=1))
    return out


def settings(variant: str) -> dict[str, str]:
    """``"key=value,key=value"`` as a dict (values parsed as YAML when the scenario is written)."""
    pairs = [item.split("=", 1) for item in variant.split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"--variant {variant!r}: expected comma-separated key=value sampler settings")
    return {key.strip(): value.strip() for key, value in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[10, 20, 30])
    parser.add_argument("--weeks", type=int, default=156)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--variant", nargs="+", default=[""],
                        help='our fit\'s sampler settings, e.g. "fallback_name=nutpie,max_draws=3000"; "" = defaults')
    parser.add_argument("--grouped", action="store_true",
                        help=f"also fit each cell with every channel's repeats summed into it ({BASE_CHANNELS} channels)")
    parser.add_argument("--baseline", action="store_true",
                        help="also fit PyMC-Marketing's defaults with nutpie on each cell (BASELINE_CELL)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.channels:
            fits = [(f"ours {variant}".strip(), CELL, scenario(n, args.weeks, Path(tmp), settings(variant)))
                    for variant in args.variant]
            if args.baseline:
                fits.append(("baseline", BASELINE_CELL, fits[0][2]))
            for name, cell, config in fits:
                rows.append({"channels": n, "weeks": args.weeks, "fit": name, **run_cell(config, args.timeout, cell)})
                print(rows[-1], flush=True)
            if args.grouped and n > BASE_CHANNELS:
                grouped = scenario(BASE_CHANNELS, args.weeks, Path(tmp))
                rows.append({"channels": n, "weeks": args.weeks, "fit": f"ours, grouped into {BASE_CHANNELS}",
                             **run_cell(fits[0][2], args.timeout, grouped=grouped)})
                print(rows[-1], flush=True)
    out = write_results(rows, "many-channels", "Many channels on realistic data",
                        f"python benchmarks/many_channels.py --channels {' '.join(map(str, args.channels))} "
                        f"--weeks {args.weeks} --timeout {args.timeout:.0f}{' --baseline' * args.baseline}{' --grouped' * args.grouped}"
                        f" --variant {' '.join(repr(v) for v in args.variant)}")
    print(out.read_text())


if __name__ == "__main__":
    main()
