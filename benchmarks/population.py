"""Pooled markets scaled by population (`markets.population`) against each market's own maxima, on two worlds.

    .venv/bin/python benchmarks/population.py [--geos 8] [--weeks 104] [--noise 0.05] [--worlds per_head,own_max]

Each geo g has a population p_g (log-uniform over 0.3-3) and a spend intensity k_g (spend per head, log-uniform over
0.5-2), drawn from a fixed seed; its spend range is the reference scenario's x p_g x k_g and its outcome size x p_g
(the baseline grows with the people in it). Two worlds:

- ``per_head``: every geo has the same response per head. On the geo's own maximum spend its logistic saturation is
  then lam x k_g (a geo that spends twice as much per head sits further up the same curve), its beta the reference's.
  Population scales put every geo on one per-head axis, where the geos' true parameters are equal.
- ``own_max``: every geo has the reference's lam and beta on its own maximum (the world benchmarks/geos.py draws);
  population scales then put the geos on different places of a curve that is really each geo's own.

Each world is fitted twice by `pooling.fit_pooled` as `make run` fits it (config/default.yaml's sampler, the
between-market spreads as `markets.spread: auto` gives them: learnt from 5 geos on), once with each market's own
maxima as scales (the default) and once with `markets.population`. Per fit: wall seconds, max R-hat, min bulk ESS,
divergences, and for every geo x channel the incremental contribution over the window (`roas.incremental_contribution`
on the geo's view) against the truth's (the generator's own contributions, which start from no spend before the
window, as the model's counterfactual does): mean and largest relative error, and the share of truths inside the
94 % HDI. Writes benchmarks/results/population-<UTC stamp>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from geos import ROOT, geo_names  # noqa: E402 -- geos also points the compile caches at .cache/, ROOT on sys.path

SEED = 20261206
WORLDS = ("per_head", "own_max")
HDI_PROB = 0.94


def geo_sizes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each geo's population and spend per head (relative), the same at every run."""
    rng = np.random.default_rng(SEED)
    population = np.exp(rng.uniform(math.log(0.3), math.log(3.0), n))
    intensity = np.exp(rng.uniform(math.log(0.5), math.log(2.0), n))
    return population, intensity


def scenario(n: int, weeks: int, noise: float, world: str, by_population: bool):
    """The n-geo pooled scenario of ``world`` (config/default.yaml with a `markets:` section), validated."""
    from mmm_assets.core.config.loading import parse_config

    raw = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    base = raw["data"]["synthetic"]
    base["noise_sigma"] = noise
    start = dt.date.fromisoformat(str(base["start_date"]))
    base["end_date"] = str(start + dt.timedelta(weeks=weeks) - dt.timedelta(days=1))
    population, intensity = geo_sizes(n)
    names = geo_names(n)
    data = {}
    for i, name in enumerate(names):
        size = population[i] * intensity[i]
        lam = intensity[i] if world == "per_head" else 1.0
        channels = {c: {"spend_min": round(spec["spend_min"] * size, 2),
                        "spend_max": round(spec["spend_max"] * size, 2),
                        "saturation_lam": round(spec["saturation_lam"] * lam, 4)}
                    for c, spec in base["channels"].items()}
        data[name] = {"synthetic": {"seed": 40000 + i, "outcome_scale": round(base["outcome_scale"] * population[i], 2),
                                    "channels": channels}}
    raw |= {"scenario": f"population_{world}", "markets": {"names": names, "pooling": "pooled", "data": data}}
    if by_population:
        raw["markets"]["population"] = {g: float(round(p, 4)) for g, p in zip(names, population)}
    raw["validation"] |= {"holdout_weeks": 0}
    return parse_config(raw, source=f"population({world}, {n})", root=ROOT)


def geo_frames(cfg) -> dict[str, tuple[pd.DataFrame, object]]:
    from mmm_assets.core.data.features import validate_features
    from mmm_assets.core.synthetic.generator import generate

    out = {}
    for geo in cfg.market_names:
        narrowed = cfg.for_market(geo)
        frame, truth = generate(narrowed.data.synthetic)
        out[geo] = (validate_features(frame, narrowed.channels, [], narrowed.validation.min_weeks, geo), truth)
    return out


def measure(world: str, by_population: bool, a: argparse.Namespace) -> dict:
    import arviz as az

    from mmm_assets.core.decisions.roas import incremental_contribution
    from mmm_assets.core.modelling import pooling

    cfg = scenario(a.geos, a.weeks, a.noise, world, by_population)
    data = geo_frames(cfg)
    started = time.monotonic()
    result = pooling.fit_pooled(cfg, {g: f for g, (f, _) in data.items()}, report=lambda line: print(" ", line),
                                in_sample_predictive=False)
    seconds = time.monotonic() - started
    errors, inside = [], []
    for geo, (_, truth) in data.items():
        draws = incremental_contribution(pooling.market_view(result.mmm, geo))
        for channel in draws.coords["channel"].values:
            true = float(truth.contributions[channel].sum())
            samples = draws.sel(channel=channel).to_numpy().ravel()
            low, high = az.hdi(samples, prob=HDI_PROB)
            errors.append(abs(samples.mean() / true - 1))
            inside.append(low <= true <= high)
    d = result.diagnostics
    return {"world": world, "scales": "population" if by_population else "own maxima", "fit_s": round(seconds),
            "max_rhat": round(d.max_rhat, 3), "min_ess_bulk": round(d.min_ess_bulk), "divergences": d.divergences,
            "mean_contribution_error_pct": round(100 * float(np.mean(errors)), 1),
            "max_contribution_error_pct": round(100 * float(np.max(errors)), 1),
            "truth_in_hdi": f"{sum(inside)}/{len(inside)}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geos", type=int, default=8)
    parser.add_argument("--weeks", type=int, default=104)
    parser.add_argument("--noise", type=float, default=0.05, help="every geo's noise_sigma (the reference: 0.01)")
    parser.add_argument("--worlds", default=",".join(WORLDS))
    a = parser.parse_args()
    rows = []
    for world in a.worlds.split(","):
        for by_population in (False, True):
            print(f"world {world}, scales {'population' if by_population else 'own maxima'}", flush=True)
            rows.append(measure(world, by_population, a))
            print(rows[-1], flush=True)
    population, intensity = geo_sizes(a.geos)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"population-{stamp}.md"
    out.write_text(
        f"# Pooled geos scaled by population against their own maxima ({stamp})\n\n`python benchmarks/population.py "
        f"--geos {a.geos} --weeks {a.weeks} --noise {a.noise} --worlds {a.worlds}`\n\npopulations "
        f"{', '.join(f'{p:.2f}' for p in population)}; spend per head {', '.join(f'{k:.2f}' for k in intensity)}\n\n"
        f"{pd.DataFrame(rows).to_markdown(index=False)}\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
