"""Separate vs pooled: parameter recovery, fit time and diagnostics per market on a multi-market synthetic scenario.

For every market of the scenario (default config/markets_pooled.yaml, whose market `west` is data-poor) this fits
the market alone (`fitting_core.fit` on `cfg.for_market(m)`'s generated data), then one pooled hierarchical model over
all markets (`pooling.fit_pooled`) and reads each market's estimates from its view (`pooling.market_view`). Recovery
is `metrics.recovery` against the generator's truth: saturation lambda as relative error, adstock alpha as absolute
error. Every fit runs in this one process, separate fits first; each model compiles once (PyTensor cache under
.cache/pytensor), so the first fits carry compile time. Writes benchmarks/results/pooling-<UTC stamp>.{json,md}.

    .venv/bin/python benchmarks/pooling.py [--config config/markets_pooled.yaml] [--weeks 208] [--draws ...]
"""

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={ROOT / '.cache' / 'pytensor'}")
sys.path.insert(0, str(ROOT))

from mmm_assets.core.config import MMMConfig, load_config  # noqa: E402
from mmm_assets.core.data.features import validate_features  # noqa: E402
from mmm_assets.core.evaluation import metrics  # noqa: E402
from mmm_assets.core.inference import sampling as sampling_core
from mmm_assets.core.modelling import build as build_core
from mmm_assets.core.modelling import fitting as fitting_core
from mmm_assets.core.modelling import pooling  # noqa: E402
from mmm_assets.core.modelling import posterior as posterior_core
from mmm_assets.core.synthetic.generator import GroundTruth, generate  # noqa: E402

WEEK = dt.timedelta(weeks=1)


def market_data(cfg: MMMConfig, market: str, weeks: int | None) -> tuple[pd.DataFrame, GroundTruth]:
    """The market's generated features (first ``weeks`` weeks when given) and its ground truth."""
    narrowed = cfg.for_market(market)
    source = narrowed.data.synthetic
    if weeks is not None:
        source = source.model_copy(update={"end_date": source.start_date + weeks * WEEK})
    frame, truth = generate(source)
    if weeks is not None:
        frame = frame.iloc[:weeks]
    return validate_features(frame, narrowed.channels, [], narrowed.validation.min_weeks, market), truth


def summarise(mmm, truth: GroundTruth) -> dict:
    """Recovery of lambda and alpha against the truth, and the model's own diagnostics."""
    table = metrics.recovery(posterior_core.posterior_parameters(mmm), truth.parameters)
    lam, alpha = (table[table["parameter"] == p].set_index("channel") for p in ("saturation_lam", "adstock_alpha"))
    diag = sampling_core.diagnose(mmm.idata, build_core.free_parameters(mmm))
    return {
        "lam_rel_error": {c: float(e) for c, e in lam["error"].items()},
        "alpha_abs_error": {c: float(e) for c, e in alpha["error"].items()},
        "lam_estimate": {c: float(e) for c, e in lam["estimate"].items()},
        "lam_true": {c: float(e) for c, e in lam["true"].items()},
        "alpha_estimate": {c: float(e) for c, e in alpha["estimate"].items()},
        "alpha_true": {c: float(e) for c, e in alpha["true"].items()},
        "lam_true_in_hdi": int(lam["true_in_hdi"].sum()),
        "alpha_true_in_hdi": int(alpha["true_in_hdi"].sum()),
        "max_lam_rel_error": float(lam["error"].max()),
        "mean_lam_rel_error": float(lam["error"].mean()),
        "max_alpha_abs_error": float(alpha["error"].max()),
        "mean_alpha_abs_error": float(alpha["error"].mean()),
        **diag.as_dict(),
    }


def markdown(result: dict) -> str:
    s = result["sampler"]
    lines = [
        f"Scenario `{result['config']}`, {result['weeks']} weeks, markets {', '.join(result['markets'])}; "
        f"{s['name']} {s['chains']} chains x ({s['tune']} tune + {s['draws']} draws), target_accept "
        f"{s['target_accept']}. {result['machine']}; the machine was shared with other work, so times are under load.",
        "",
        "| market | fit | max λ rel. error | mean λ rel. error | max α abs. error | true λ in HDI | "
        "divergences | max R-hat | min bulk ESS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for market in result["markets"]:
        for mode in ("separate", "pooled"):
            r = result["per_market"][market][mode]
            lines.append(
                f"| {market} | {mode} | {r['max_lam_rel_error']:.3f} | {r['mean_lam_rel_error']:.3f} | "
                f"{r['max_alpha_abs_error']:.3f} | {r['lam_true_in_hdi']}/{len(r['lam_rel_error'])} | "
                f"{r['divergences']:.0f} | {r['max_rhat']:.3f} | {r['min_ess_bulk']:.0f} |"
            )
    p = result["pooled"]
    lines += [
        "",
        "| fit | wall, s (sampling incl. compile + in-sample predictive) | divergences | max R-hat | min bulk ESS |",
        "|---|---|---|---|---|",
    ]
    for market in result["markets"]:
        r = result["per_market"][market]["separate"]
        lines.append(
            f"| {market} alone | {r['wall_seconds']:.1f} | {r['divergences']:.0f} | {r['max_rhat']:.3f} | "
            f"{r['min_ess_bulk']:.0f} |"
        )
    lines += [
        f"| all markets separately (sum) | {result['separate_wall_seconds']:.1f} | | | |",
        f"| pooled (all parameters, hyper-parameters included) | {p['wall_seconds']:.1f} | {p['divergences']:.0f} | "
        f"{p['max_rhat']:.3f} | {p['min_ess_bulk']:.0f} |",
        "",
        "Per-channel λ (true / separate / pooled):",
        "",
        "| market | channel | true λ | separate | pooled | true α | separate | pooled |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for market in result["markets"]:
        sep, pool = result["per_market"][market]["separate"], result["per_market"][market]["pooled"]
        for c in sep["lam_true"]:
            lines.append(
                f"| {market} | {c} | {sep['lam_true'][c]:.2f} | {sep['lam_estimate'][c]:.2f} | "
                f"{pool['lam_estimate'][c]:.2f} | {sep['alpha_true'][c]:.2f} | {sep['alpha_estimate'][c]:.3f} | "
                f"{pool['alpha_estimate'][c]:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "markets_pooled.yaml")
    parser.add_argument("--weeks", type=int, default=None, help="Use only the first N weeks (default: all).")
    parser.add_argument("--chains", type=int, default=None)
    parser.add_argument("--draws", type=int, default=None)
    parser.add_argument("--tune", type=int, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    cfg = load_config(args.config)
    changes = {k: v for k, v in {"chains": args.chains, "draws": args.draws, "tune": args.tune}.items() if v}
    cfg = cfg.model_copy(update={"sampler": cfg.sampler.model_copy(update=changes)})
    markets = cfg.market_names
    data = {m: market_data(cfg, m, args.weeks) for m in markets}
    per_market: dict[str, dict] = {m: {} for m in markets}
    separate_wall = 0.0
    for m in markets:
        features, truth = data[m]
        result = fitting_core.fit(cfg.for_market(m), features)
        separate_wall += result.wall_seconds
        per_market[m]["separate"] = {**summarise(result.mmm, truth), "wall_seconds": result.wall_seconds}
        print(m, "separate", json.dumps(per_market[m]["separate"]["lam_rel_error"]), flush=True)
    pooled = pooling.fit_pooled(cfg, {m: data[m][0] for m in markets}, report=print)
    for m in markets:
        started = time.monotonic()
        view = pooling.market_view(pooled.mmm, m)
        per_market[m]["pooled"] = {**summarise(view, data[m][1]), "view_seconds": time.monotonic() - started}
        print(m, "pooled", json.dumps(per_market[m]["pooled"]["lam_rel_error"]), flush=True)

    s = cfg.sampler
    result = {
        "config": str(args.config.resolve().relative_to(ROOT)) if args.config.resolve().is_relative_to(ROOT)
        else str(args.config),
        "weeks": len(data[markets[0]][0]),
        "markets": markets,
        "sampler": {"name": pooled.sampler, "chains": s.chains, "draws": s.draws, "tune": s.tune,
                    "target_accept": s.target_accept},
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "per_market": per_market,
        "separate_wall_seconds": separate_wall,
        "pooled": {**pooled.diagnostics.as_dict(), "wall_seconds": pooled.wall_seconds},
    }
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"pooling-{stamp}.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (args.out / f"pooling-{stamp}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
