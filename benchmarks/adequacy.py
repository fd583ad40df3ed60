"""The measurements behind the identification checks' defaults (validation.adequacy; README "Identification checks").

No sampling: about a minute of numpy. Run: `.venv/bin/python benchmarks/adequacy.py`. Prints markdown and writes
benchmarks/results/adequacy-<UTC stamp>.md.

1. What the project's scenarios show: each check's values on config/default.yaml, roles_example.yaml,
   lift_example.yaml and realistic.yaml (their own seeds), and over 30 seeds of the realistic and reference
   generators: how high bought-together pairs (`follows`) and unrelated pairs correlate, each kind of channel's VIF.
2. What a bound costs: the Cramer-Rao lower bound of each channel's beta and lambda standard errors - the best any fit
   could do - on realistic.yaml's training weeks, with the generator's own model at its true parameters, the noise
   known and the fitted model's linear terms (intercept, controls and events, trend, yearly Fourier terms), while one
   property of the data is degraded: the spend of a pair made more alike (follow_noise), one channel's spend squeezed
   towards its mean (CV), or switched off in more and more weeks (flighting). Reported as the factor by which the
   bound grows against the same channel in the undegraded data.
"""

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mmm_assets.core.config import DEFAULT_MARKET, load_config
from mmm_assets.core.data.inputs import weekly_features
from mmm_assets.core.evaluation.adequacy import adequacy_table, model_columns, variance_inflation
from mmm_assets.core.synthetic.generator import generate
from mmm_assets.core.transforms.media import (
    adstock_transformation,
    apply_media,
    saturation_transformation,
)

ROOT = Path(__file__).resolve().parents[1]
SEEDS = range(1000, 1030)
PAIRS = (("tv", "video"), ("adwords", "shopping"))
lines: list[str] = []


def say(text: str = "") -> None:
    print(text)
    lines.append(text)


def scenario(name: str, **synthetic):
    cfg = load_config(ROOT / "config" / name).for_market(DEFAULT_MARKET)
    source = cfg.data.synthetic.model_copy(update=synthetic)
    frame, truth = generate(source, cfg.model.calendar)
    return cfg, weekly_features(cfg, frame), truth


# -- 1. the scenarios ----------------------------------------------------------------------------------------------
def scenario_values() -> None:
    say("| scenario | check | min | max | failed |")
    say("|---|---|---|---|---|")
    for name in ("default.yaml", "roles_example.yaml", "lift_example.yaml", "realistic.yaml"):
        cfg, features, _ = scenario(name)
        table = adequacy_table(cfg, features)
        for check, rows in table.groupby("check", sort=False):
            failed = ", ".join(f"{s} {v:.3g} ({sev})" for s, v, sev in
                               rows.loc[~rows["passed"], ["subject", "value", "severity"]].itertuples(index=False))
            say(f"| {name} | {check} | {rows['value'].min():.3g} | {rows['value'].max():.3g} | {failed or '-'} |")


def seeds() -> None:
    pair_r, unrelated, pair_vif, other_vif, reference_r, smallest_cv = [], [], [], [], [], []
    paired = {c for pair in PAIRS for c in pair}
    for seed in SEEDS:
        cfg, features, _ = scenario("realistic.yaml", seed=seed)
        corr = features[cfg.channels].corr().abs()
        pair_r += [corr.loc[a, b] for a, b in PAIRS]
        others = corr.where(~np.eye(len(corr), dtype=bool))
        for a, b in PAIRS:
            others.loc[a, b] = others.loc[b, a] = np.nan
        unrelated.append(np.nanmax(others.to_numpy()))
        design = model_columns(cfg, features)
        for channel in cfg.channels:
            (pair_vif if channel in paired else other_vif).append(variance_inflation(design, channel)[0])
        smallest_cv.append((features[cfg.channels].std() / features[cfg.channels].mean()).min())
        ref_cfg, ref, _ = scenario("default.yaml", seed=seed)
        corr = ref[ref_cfg.channels].corr().abs().to_numpy()
        reference_r.append(corr[~np.eye(len(corr), dtype=bool)].max())
    say(f"realistic, {len(SEEDS)} seeds: bought-together pairs |r| {min(pair_r):.3f}-{max(pair_r):.3f} (median "
        f"{np.median(pair_r):.3f}; {sum(r <= 0.9 for r in pair_r)} of {len(pair_r)} at or below 0.9); largest "
        f"unrelated pair per seed: median {np.median(unrelated):.3f}, max {max(unrelated):.3f}")
    say(f"reference, {len(SEEDS)} seeds: largest pair |r| median {np.median(reference_r):.3f}, "
        f"max {max(reference_r):.3f}")
    say(f"realistic VIF: paired channels {min(pair_vif):.1f}-{max(pair_vif):.1f} (median {np.median(pair_vif):.1f}); "
        f"other channels median {np.median(other_vif):.2f}, max {max(other_vif):.1f} "
        f"({sum(v > 10 for v in other_vif)} of {len(other_vif)} above 10)")
    say(f"realistic smallest channel CV per seed: min {min(smallest_cv):.3f}, median {np.median(smallest_cv):.3f}")


# -- 2. the Cramer-Rao bound ---------------------------------------------------------------------------------------
def _fourier(dates: pd.Series, order: int) -> list[np.ndarray]:
    day = pd.to_datetime(dates).dt.dayofyear.to_numpy()
    return [f(2 * np.pi * k * day / 365.25) for k in range(1, order + 1) for f in (np.sin, np.cos)]


def bound(cfg, features: pd.DataFrame, truth, replace: dict | None = None) -> dict:
    """Relative standard error lower bounds {(channel, 'beta' | 'lam'): sd / value} on the training weeks."""
    frame = features.assign(**(replace or {})).iloc[: len(features) - cfg.validation.holdout_weeks]
    adstock = adstock_transformation("geometric", cfg.data.synthetic.adstock_l_max)
    saturation = saturation_transformation("logistic")
    columns, names = [], []
    for channel in cfg.channels:
        p = truth.parameters.loc[channel]
        x = frame[channel].to_numpy() / frame[channel].max()
        theta = {"beta": p["beta"], "lam": p["saturation_lam"] * frame[channel].max() / p["spend_max"],
                 "alpha": p["adstock_alpha"]}
        for name in theta:
            step = 1e-5 * max(abs(theta[name]), 1e-3)
            up, down = dict(theta, **{name: theta[name] + step}), dict(theta, **{name: theta[name] - step})
            mean = [apply_media(adstock, saturation, True, x, {"alpha": t["alpha"]},
                                {"lam": t["lam"], "beta": t["beta"]})[0] for t in (up, down)]
            columns.append((mean[0] - mean[1]) / (2 * step))
            names.append((channel, name, theta[name]))
    n = len(frame)
    linear = [np.ones(n), *[frame[c].to_numpy() - frame[c].mean() for c in cfg.controls], np.arange(n) / 52.0,
              *_fourier(frame["date"], cfg.model.yearly_seasonality or 0)]
    X = np.column_stack(columns + linear)
    sd = np.sqrt(np.diag(np.linalg.pinv(X.T @ X)))[: len(columns)] * cfg.data.synthetic.noise_sigma
    return {(c, k): s / v for (c, k, v), s in zip(names, sd) if k != "alpha"}


def correlation_cost() -> None:
    cfg, _, _ = scenario("realistic.yaml")
    source = cfg.data.synthetic
    apart = {k: v.model_copy(update={"follows": None}) for k, v in source.channels.items()}
    _, independent, truth0 = scenario("realistic.yaml", channels=apart)
    base = bound(cfg, independent, truth0)
    say("| follow_noise | pair, r | beta SE x | lambda SE x |")
    say("|---|---|---|---|")
    for noise in (0.6, 0.45, 0.3, 0.2, 0.1, 0.05):
        together = {k: v.model_copy(update={"follow_noise": noise}) if v.follows else v
                    for k, v in source.channels.items()}
        _, features, truth = scenario("realistic.yaml", channels=together)
        now = bound(cfg, features, truth)
        for a, b in PAIRS:
            r = features[[a, b]].corr().iloc[0, 1]
            beta = "/".join(f"{now[(c, 'beta')] / base[(c, 'beta')]:.1f}" for c in (a, b))
            lam = "/".join(f"{now[(c, 'lam')] / base[(c, 'lam')]:.1f}" for c in (a, b))
            say(f"| {noise} | {a}/{b}, {r:.3f} | {beta} | {lam} |")


def variation_and_zero_cost() -> None:
    cfg, features, truth = scenario("realistic.yaml")
    base = bound(cfg, features, truth)
    say("Spend squeezed towards its mean to a CV of (beta SE x / lambda SE x):\n")
    say("| channel (own CV) | CV 0.05 | 0.1 | 0.15 | 0.2 |")
    say("|---|---|---|---|---|")
    for channel in ("adwords", "facebook", "display", "linkedin", "radio"):
        x = features[channel].to_numpy()
        own = x.std(ddof=1) / x.mean()
        cells = []
        for cv in (0.05, 0.1, 0.15, 0.2):
            now = bound(cfg, features, truth, {channel: x.mean() + (x - x.mean()) * cv / own})
            cells.append(f"{now[(channel, 'beta')] / base[(channel, 'beta')]:.1f} / "
                         f"{now[(channel, 'lam')] / base[(channel, 'lam')]:.1f}")
        say(f"| {channel} ({own:.2f}) | " + " | ".join(cells) + " |")
    say()
    say("Flighting, off k of every 10 weeks (beta SE x / lambda SE x):\n")
    say("| channel | off 30 % | 50 % | 60 % | 70 % | 80 % | 90 % |")
    say("|---|---|---|---|---|---|---|")
    for channel in ("facebook", "display", "tv"):
        x = features[channel].to_numpy()
        cells = []
        for share in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9):
            off = (np.arange(len(x)) % 10) < round(10 * share)
            now = bound(cfg, features, truth, {channel: np.where(off, 0.0, x)})
            cells.append(f"{now[(channel, 'beta')] / base[(channel, 'beta')]:.2f} / "
                         f"{now[(channel, 'lam')] / base[(channel, 'lam')]:.2f}")
        say(f"| {channel} | " + " | ".join(cells) + " |")


def main() -> None:
    say(f"# Identification checks' defaults, measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    say("\n## Each check on the project's scenarios\n")
    scenario_values()
    say("\n## Over seeds of the generators\n")
    seeds()
    say("\n## Cost of correlated spend (Cramer-Rao bound vs the same channels bought independently)\n")
    correlation_cost()
    say("\n## Cost of flat spend and of zero weeks (vs the channel as generated)\n")
    variation_and_zero_cost()
    out = ROOT / "benchmarks" / "results" / f"adequacy-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
