"""How the real validation profile's gates were chosen: their metrics on realistic data (config/realistic.yaml and
reseeded copies), for the true model, for the fitted model, and for fits that leave out a part of the truth.

    python benchmarks/real_profile.py [--seeds 3] [--variants full,no_season,no_controls]

For each seed the generator's data are fitted with the configured model (and each variant), the last
validation.holdout_weeks weeks forecast as the validation asset does, and every metric printed; the true model's own
holdout MASE / coverage / noise ratio (its mean and +-1.88 sigma band) give the floor a perfect model would reach.
Writes benchmarks/results/real-profile-<UTC stamp>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mmm_assets.core.config import DATE_COLUMN, TARGET_COLUMN, load_config, merged
from mmm_assets.core.config.scenario import MMMConfig
from mmm_assets.core.data.inputs import weekly_features
from mmm_assets.core.evaluation.metrics import coverage, lag1_autocorrelation, mase, r2, rmse
from mmm_assets.core.evaluation.validation import holdout, validate
from mmm_assets.core.modelling.fitting import fit
from mmm_assets.core.synthetic.generator import generate

ROOT = Path(__file__).resolve().parents[1]
#: Variants: model settings laid over the scenario's, each leaving out part of the truth.
VARIANTS = {
    "full": {},
    "no_season": {"model": {"yearly_seasonality": None}},
    "no_trend_season": {"model": {"yearly_seasonality": None, "trend": False}},
    "library_prior": {"model": {"media_prior": {"kind": "library"}}},
    "share_0.15": {"model": {"media_prior": {"media_share": 0.15}}},
    "share_0.5": {"model": {"media_prior": {"media_share": 0.5}}},
}
Z94 = 1.8808  # the 94 % central interval of a normal: +-1.88 sigma


def _config(base: Path, seed: int, variant: dict) -> MMMConfig:
    cfg = load_config(base)
    raw = merged(cfg.model_dump(mode="json"), {"data": {"synthetic": {"seed": seed}}, **variant})
    return MMMConfig.model_validate(raw)


def _truth_row(cfg: MMMConfig, frame: pd.DataFrame, truth, weeks: int) -> dict:
    """The true model's own holdout metrics: its noiseless mean as the forecast, +-1.88 sigma as its interval."""
    sigma = truth.noise_sigma * truth.outcome_scale
    mean = frame[TARGET_COLUMN].to_numpy() - 0.0
    noiseless = (
        truth.outcome_scale * truth.intercept
        + truth.contributions.drop(columns=DATE_COLUMN).sum(axis=1).to_numpy()
        + truth.components.drop(columns=DATE_COLUMN).sum(axis=1).to_numpy()
    )
    actual, predicted = mean[-weeks:], noiseless[-weeks:]
    return {
        "holdout_mase": mase(actual, predicted, mean[:-weeks]),
        "holdout_hdi_coverage": coverage(actual, predicted - Z94 * sigma, predicted + Z94 * sigma),
        "holdout_noise_ratio": rmse(actual, predicted) / sigma,
        "holdout_r2": r2(actual, predicted),
        "in_sample_r2": r2(mean[:-weeks], noiseless[:-weeks]),
        "in_sample_residual_acf1": lag1_autocorrelation(mean - noiseless),
    }


def _roas_recovery(mmm, features: pd.DataFrame, truth, channels: list[str]) -> dict:
    """How many channels' true ROAS lie inside the 94 % HDI, and the media's estimated vs true share of the KPI."""
    from mmm_assets.core.modelling.priors import posterior_roas

    roas = posterior_roas(mmm)
    spend = features[channels].sum()
    true = truth.contributions[channels].sum() / spend
    low, high = roas.quantile(0.03, ("chain", "draw")), roas.quantile(0.97, ("chain", "draw"))
    inside = sum(float(low.sel(channel=c)) <= true[c] <= float(high.sel(channel=c)) for c in channels)
    media = float((roas.mean(("chain", "draw")).to_series()[channels] * spend).sum()) / features[TARGET_COLUMN].sum()
    return {
        "roas_in_hdi": f"{inside}/{len(channels)}",
        "media_share": media,
        "true_media_share": float(truth.contributions[channels].sum().sum()) / features[TARGET_COLUMN].sum(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "realistic.yaml"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--truth-seeds", type=int, default=200, help="seeds for the true model's floor (no fit)")
    args = parser.parse_args()
    rows = []
    base = Path(args.config)
    cfg0 = load_config(base)
    weeks = cfg0.validation.holdout_weeks
    floor = []
    for seed in range(args.truth_seeds):
        cfg = _config(base, 1000 + seed, {})
        frame, truth = generate(cfg.data.synthetic, cfg.model.calendar)
        floor.append(_truth_row(cfg, frame, truth, weeks))
    floor = pd.DataFrame(floor)
    for seed in range(args.seeds):
        for name in args.variants.split(","):
            cfg = _config(base, 1000 + seed, VARIANTS[name])
            frame, truth = generate(cfg.data.synthetic, cfg.model.calendar)
            features = weekly_features(cfg, frame)
            start = time.perf_counter()
            result = fit(cfg, features, report=print)
            held = holdout(cfg, features, result.mmm, print)
            report = validate(cfg, features, result.mmm, result.diagnostics.as_dict(), held, None, None)
            row = {"seed": 1000 + seed, "variant": name, "seconds": round(time.perf_counter() - start, 1)}
            row |= {k: report.metrics.get(k) for k in (
                "in_sample_r2", "in_sample_mape_pct", "in_sample_residual_acf1", "holdout_r2", "holdout_mape_pct", "holdout_mase",
                "holdout_hdi_coverage", "holdout_noise_ratio", "max_rhat", "min_ess_bulk", "divergences")}
            row |= _roas_recovery(result.mmm, features, truth, cfg.channels)
            row["failed_gates"] = ", ".join(report.failed_gates()) or "none"
            rows.append(row)
            print(row, flush=True)
    table = pd.DataFrame(rows)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"real-profile-{stamp}.md"
    quantiles = floor.quantile([0.01, 0.05, 0.5, 0.95, 0.99]).round(3)
    out.write_text(
        f"# Real-profile metrics ({base.name}, {stamp})\n\n`python benchmarks/real_profile.py --seeds {args.seeds} "
        f"--variants {args.variants} --truth-seeds {args.truth_seeds}`\n\n"
        f"## The true model's holdout metrics over {args.truth_seeds} seeds (quantiles)\n\n"
        f"{quantiles.to_markdown()}\n\n## Fitted models\n\n{table.round(3).to_markdown(index=False)}\n"
    )
    print(out.read_text())


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
