"""How the prior checks' and the business-plausibility checks' defaults were chosen: their figures on the reference
scenario and on config/realistic.yaml (truth known), on the mistakes they are there to catch, and on more channels.

    python benchmarks/plausibility.py [--model reference=PATH] [--model realistic=PATH] [--misspecified]

A scenario without ``--model`` is fitted once with the configured sampler (the realistic one takes ~1-2 minutes on
two cores). For each: the prior predictive's distance to the KPI (orders of magnitude) and the prior-to-posterior
contractions; the fitted ROAS, channel and media shares against the truth; every ROAS under a spend-units mistake
(x100: cents, /1000: thousands; the model max-scales spend, so the posterior is unchanged and each ROAS moves by
exactly the factor); the prior predictive under a fixed target scale in the wrong units (built, not fitted); the
prior predictive of 3-30 channels (the scaling benchmark's scenarios, built, not fitted). ``--misspecified`` also fits
the realistic scenario without its trend and seasonality (baseline drivers the media can absorb).
Writes benchmarks/results/plausibility-<UTC stamp>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mmm_assets.core.config import DATE_COLUMN, TARGET_COLUMN, MMMConfig, load_config, merged
from mmm_assets.core.data.features import validate_features
from mmm_assets.core.data.inputs import weekly_features
from mmm_assets.core.decisions.contributions import BASELINE, weekly_contributions
from mmm_assets.core.decisions.roas import channel_roas
from mmm_assets.core.evaluation.plausibility import roas_finding, share_findings
from mmm_assets.core.evaluation.prior_checks import INFORMED, observed_kpi, prior_checks, sample_prior, scale_check
from mmm_assets.core.modelling.build import ModelScales, build_mmm, split_xy
from mmm_assets.core.modelling.fitting import fit
from mmm_assets.core.modelling.persistence import load_model
from mmm_assets.core.modelling.posterior import fitted_features
from mmm_assets.core.synthetic.generator import generate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
SCENARIOS = {"reference": ROOT / "config" / "default.yaml", "realistic": ROOT / "config" / "realistic.yaml"}
MISSPECIFIED = {"model": {"yearly_seasonality": None, "trend": False}}


def _model(cfg: MMMConfig, features: pd.DataFrame, path: str | None):
    if path:
        mmm = load_model(path)
        if not np.allclose(fitted_features(mmm)[TARGET_COLUMN].to_numpy(), features[TARGET_COLUMN].to_numpy()):
            raise SystemExit(f"{path} was not fitted on scenario {cfg.scenario}'s data")
        return mmm
    return fit(cfg, features, report=print).mmm


def _truth_row(features: pd.DataFrame, truth) -> dict:
    contributions = truth.contributions.drop(columns=DATE_COLUMN)
    roas = contributions.sum() / features[contributions.columns].sum()
    return {"true_roas": f"{roas.min():.2f}-{roas.max():.2f}",
            "true_media_share_pct": round(100 * contributions.sum().sum() / features[TARGET_COLUMN].sum(), 1),
            "true_largest_channel_pct": round(100 * (contributions.sum() / features[TARGET_COLUMN].sum()).max(), 1)}


def measure(name: str, cfg: MMMConfig, mmm, features: pd.DataFrame, truth) -> dict:
    """Every figure of one fitted scenario."""
    settings = cfg.validation.plausibility
    checks = prior_checks(mmm, cfg)
    table = checks.prior_posterior
    informed, dominated = table[table["verdict"] == INFORMED], table[table["verdict"] != INFORMED]
    roas = channel_roas(mmm, fitted_features(mmm))
    findings = [roas_finding(roas, settings), *share_findings(weekly_contributions(mmm), cfg.channels, BASELINE,
                                                               settings)]
    shares = findings[1].table.set_index("component")["share"]
    units = {label: roas_finding(roas.assign(roas_mean=roas["roas_mean"] * factor), settings)
             for label, factor in (("spend in cents (ROAS / 100)", 0.01), ("spend in thousands (ROAS x 1000)", 1000))}
    return {
        "scenario": name,
        "prior_orders_apart": round(checks.orders_apart, 2),
        "prior_level": f"{checks.prior_level:.3g}", "observed_level": f"{checks.observed_level:.3g}",
        "informed_min_contraction": round(float(informed["contraction"].min()), 3) if len(informed) else None,
        "prior_dominated_max_contraction": round(float(dominated["contraction"].max()), 3) if len(dominated) else None,
        "prior_dominated": ", ".join(sorted(set(dominated["parameter"]))) or "none",
        "fitted_roas": f"{roas['roas_mean'].min():.2f}-{roas['roas_mean'].max():.2f}",
        **_truth_row(features, truth),
        "fitted_media_share_pct": round(100 * float(shares.drop(BASELINE).sum()), 1),
        "fitted_largest_channel_pct": round(100 * float(shares.drop(BASELINE).max()), 1),
        "baseline_share_pct": round(100 * float(shares[BASELINE]), 1),
        "checks_failed": ", ".join(f.check for f in findings if not f.passed) or "none",
        **{label: "trips" if not f.passed else "passes" for label, f in units.items()},
    }


def wrong_target_scale(cfg: MMMConfig, features: pd.DataFrame) -> list[dict]:
    """The prior predictive of the scenario's model built with a fixed target scale off by a factor (not fitted)."""
    rows = []
    top = float(features[TARGET_COLUMN].max())
    for label, factor in (("data maximum (default)", 1.0), ("/ 100", 0.01), ("/ 1000", 0.001), ("x 1000", 1000.0)):
        mmm = build_mmm(cfg, ModelScales(target=top * factor))
        mmm.build_model(*split_xy(features))
        draws = sample_prior(mmm).kpi
        check = scale_check(draws, observed_kpi(mmm), cfg.validation.plausibility.prior_predictive_max_orders)
        rows.append({"scenario": cfg.scenario, "target scale": label, "orders_apart": round(check["orders_apart"], 2),
                     "blocks": check["orders_apart"] > check["max_orders"]})
    return rows


def more_channels(counts: list[int]) -> list[dict]:
    """The prior predictive's distance to the KPI as channels are added (default priors; built, not fitted)."""
    from scaling import scenario  # the scaling benchmark's scenarios: the reference channels repeated

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            cfg = load_config(scenario(104, n, Path(tmp)))
            frame, _ = generate(cfg.data.synthetic)
            features = validate_features(frame, cfg.channels, [], cfg.validation.min_weeks, "bench")
            mmm = build_mmm(cfg)
            mmm.build_model(*split_xy(features))
            draws = sample_prior(mmm).kpi
            check = scale_check(draws, observed_kpi(mmm), cfg.validation.plausibility.prior_predictive_max_orders)
            rows.append({"channels": n, "orders_apart": round(check["orders_apart"], 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH: reuse a model fitted on NAME")
    parser.add_argument("--misspecified", action="store_true", help="also fit realistic without trend and season")
    parser.add_argument("--channels", type=int, nargs="+", default=[3, 10, 20, 30])
    args = parser.parse_args()
    given = dict(item.split("=", 1) for item in args.model)
    rows, scales = [], []
    for name, path in SCENARIOS.items():
        cfg = load_config(path)
        frame, truth = generate(cfg.data.synthetic, cfg.model.calendar)
        features = weekly_features(cfg, frame)
        rows.append(measure(name, cfg, _model(cfg, features, given.get(name)), features, truth))
        print(rows[-1], flush=True)
        scales += wrong_target_scale(cfg, features)
        if name == "realistic" and args.misspecified:
            bare = MMMConfig.model_validate(merged(cfg.model_dump(mode="json"), MISSPECIFIED))
            rows.append(measure("realistic, no trend or season", bare, _model(bare, features, given.get("bare")),
                                features, truth))
            print(rows[-1], flush=True)
    channels = more_channels(args.channels)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"plausibility-{stamp}.md"
    out.write_text(
        f"# Prior checks and business plausibility ({stamp})\n\n`python benchmarks/plausibility.py "
        f"{' '.join(sys.argv[1:])}`\n\n## Fitted scenarios\n\n{pd.DataFrame(rows).T.to_markdown()}\n\n"
        f"## A fixed target scale in the wrong units (prior predictive, not fitted)\n\n"
        f"{pd.DataFrame(scales).to_markdown(index=False)}\n\n## More channels, default priors (prior predictive, "
        f"104 weeks, not fitted)\n\n{pd.DataFrame(channels).to_markdown(index=False)}\n"
    )
    print(out.read_text())


if __name__ == "__main__":
    main()
