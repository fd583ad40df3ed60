"""Model families: fit time, convergence and recovery of the truth for each adstock + saturation pair, and what the
wrong family makes of the same data. Chooses the synthetic profile's recovery thresholds for families.

    python benchmarks/families.py [--seeds 2] [--cases reference,weibull_hill,...] [--compare reference,...]

Each case generates a scenario's data (reseeded), fits the model the case names (the scenario's own families, or
others laid over them), forecasts the holdout as the validation asset does and scores the recovery
(mmm_assets/core/evaluation/recovery.py): response curve, mean carry-over lag, the identified parameters, and how many
true ROAS lie in their 94 % HDI; then times the ROAS table (break-even search) on the fit.
With --compare, each named scenario's data (reseeded) also go through the specification comparison
(mmm_assets/core/evaluation/comparison.py) over COMPARED: the ELPD of each candidate, its difference to the best with
its SE, the gates, the choice and the reason. Writes benchmarks/results/families-<UTC stamp>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import pandas as pd
from real_profile import _roas_recovery

from mmm_assets.core.config import load_config, merged
from mmm_assets.core.config.scenario import MMMConfig
from mmm_assets.core.data.inputs import weekly_features
from mmm_assets.core.decisions.roas import channel_roas
from mmm_assets.core.evaluation.validation import holdout, validate
from mmm_assets.core.modelling.fitting import fit
from mmm_assets.core.synthetic.generator import generate

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
#: case -> (scenario file, model settings laid over the scenario's).
CASES = {
    "reference": (CONFIG / "default.yaml", {}),
    "weibull_hill": (CONFIG / "families" / "weibull_hill.yaml", {}),
    "delayed_michaelis_menten": (CONFIG / "families" / "delayed_michaelis_menten.yaml", {}),
    "weibull_hill_data_fitted_geometric_logistic": (
        CONFIG / "families" / "weibull_hill.yaml",
        {"adstock": {"family": "geometric"}, "saturation": {"family": "logistic"}},
    ),
}
#: The candidates of the comparison: the default families, Robyn's / Meridian's shapes, a delayed peak.
COMPARED = {
    "geometric_logistic": {"adstock": {"family": "geometric"}, "saturation": {"family": "logistic"}},
    "weibull_hill": {"adstock": {"family": "weibull_cdf"}, "saturation": {"family": "hill"}},
    "delayed_michaelis_menten": {"adstock": {"family": "delayed"}, "saturation": {"family": "michaelis_menten"}},
}
METRICS = ("in_sample_r2", "in_sample_mape_pct", "holdout_mape_pct", "max_rhat", "min_ess_bulk", "divergences",
           "response_curve_max_rel_error", "adstock_mean_lag_max_abs_error", "saturation_lam_max_rel_error",
           "adstock_alpha_max_abs_error")


def _config(path: Path, seed: int, model: dict) -> MMMConfig:
    cfg = load_config(path)
    raw = merged(cfg.model_dump(mode="json"), {"data": {"synthetic": {"seed": seed}}, "model": model})
    return MMMConfig.model_validate(raw)


def _comparisons(names: list[str], seeds: int, stamp: str) -> pd.DataFrame:
    """The comparison's table for each scenario's data and seed, with the choice and its reason; the first seed's
    comparison plot of each as families-<stamp>-<data>.png."""
    from mmm_assets.core.evaluation.comparison import compare_specifications
    from mmm_assets.core.presentation.plots import comparison_plot

    parts = []
    for name in names:
        path, _ = CASES[name]
        for seed in range(seeds):
            cfg = _config(path, load_config(path).data.synthetic.seed + seed, {"candidates": COMPARED})
            frame, truth = generate(cfg.data.synthetic, cfg.model.calendar)
            start = time.perf_counter()
            choice = compare_specifications(cfg, weekly_features(cfg, frame), truth, print).choice
            if seed == 0:
                (ROOT / "benchmarks" / "results" / f"families-{stamp}-{name}.png").write_bytes(
                    comparison_plot(choice.table))
            table = choice.table.assign(data=name, seed=cfg.data.synthetic.seed, reason=choice.reason,
                                        comparison_s=round(time.perf_counter() - start, 1))
            parts.append(table[["data", "seed", "candidate", "parameters", "elpd_loo", "elpd_se", "elpd_diff",
                                "diff_se", "p_loo", "max_pareto_k", "high_k_weeks", "passed_gates", "failed_gates",
                                "fit_seconds", "selected", "comparison_s", "reason"]])
            print(parts[-1].to_string(), flush=True)
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--compare", default="", help="scenarios (case names) whose data go through the comparison")
    args = parser.parse_args()
    rows = []
    for name in filter(None, args.cases.split(",")):
        path, model = CASES[name]
        for seed in range(args.seeds):
            base_seed = load_config(path).data.synthetic.seed
            cfg = _config(path, base_seed + seed, model)
            frame, truth = generate(cfg.data.synthetic, cfg.model.calendar)
            features = weekly_features(cfg, frame)
            start = time.perf_counter()
            result = fit(cfg, features, report=print)
            seconds = time.perf_counter() - start
            held = holdout(cfg, features, result.mmm, print)
            report = validate(cfg, features, result.mmm, result.diagnostics.as_dict(), held, truth, None)
            start = time.perf_counter()
            channel_roas(result.mmm, features, cfg.kpi)
            row = {"case": name, "seed": cfg.data.synthetic.seed, "model": f"{cfg.model.adstock.family} + "
                   f"{cfg.model.saturation.family}", "fit_s": round(seconds, 1),
                   "roas_table_s": round(time.perf_counter() - start, 1)}
            row |= {k: report.metrics.get(k) for k in METRICS}
            row |= _roas_recovery(result.mmm, features, truth, cfg.channels)
            row["failed_gates"] = ", ".join(report.failed_gates()) or "none"
            rows.append(row)
            print(row, flush=True)
    table = pd.DataFrame(rows)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    compared = _comparisons(list(filter(None, args.compare.split(","))), args.seeds, stamp) if args.compare else None
    out = ROOT / "benchmarks" / "results" / f"families-{stamp}.md"
    out.write_text(
        f"# Model families ({stamp})\n\n`python benchmarks/families.py --seeds {args.seeds} --cases {args.cases}"
        f"{f' --compare {args.compare}' if args.compare else ''}`\n\n{table.round(4).to_markdown(index=False)}\n"
        + (f"\n## Specification comparison\n\n{compared.round(2).to_markdown(index=False)}\n" if compared is not None
           else "")
    )
    print(out.read_text())


if __name__ == "__main__":
    main()
