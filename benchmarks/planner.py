"""The planner against the truth: each goal kind's plan, what-if scoring, and one budget across markets.

    python benchmarks/planner.py [--seeds 3]

For each seed the reference scenario (config/default.yaml, reseeded) is fitted once; then every goal kind of GOALS is
planned (mmm_assets/core/decisions/goals.py) and each plan's true incremental response (the generator's own response
function) is compared with the plan's 94 % HDI; a front-loaded what-if plan is scored the same way
(mmm_assets/core/decisions/plans.py). The three markets of config/markets.yaml (each reseeded) are fitted and
planned as one budget (mmm_assets/core/decisions/cross_market.py): the joint plan's uplift over the markets' own
plans at the same total, under the model and under the truth. Times are wall seconds on this machine.
Writes benchmarks/results/planner-<UTC stamp>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mmm_assets.core.config import Goal, MMMConfig, PlannerSettings, load_config, merged
from mmm_assets.core.data.inputs import weekly_features
from mmm_assets.core.decisions.budget import Planner, optimize_budget, true_incremental_response, true_plan_response
from mmm_assets.core.decisions.cross_market import MarketModel, allocate_across_markets
from mmm_assets.core.decisions.goals import plan_goals
from mmm_assets.core.decisions.plans import evaluate_plans
from mmm_assets.core.modelling.fitting import fit
from mmm_assets.core.synthetic.generator import generate

ROOT = Path(__file__).resolve().parents[1]
GOALS = [
    Goal(kind="same_response_least_spend"),
    Goal(kind="target_mroas"),
    Goal(kind="target_roas", value=2.5),
    Goal(kind="target_kpi", value=800_000.0),
]


def _reseeded(cfg: MMMConfig, seed: int) -> MMMConfig:
    return MMMConfig.model_validate(merged(cfg.model_dump(mode="json"), {"data": {"synthetic": {"seed": seed}}}))


def _fitted(cfg: MMMConfig):
    frame, truth = generate(cfg.data.synthetic)
    features = weekly_features(cfg, frame)
    started = time.monotonic()
    mmm = fit(cfg, features).mmm
    return features, truth, mmm, time.monotonic() - started


def _goals(seed: int) -> list[dict]:
    cfg = _reseeded(load_config(ROOT / "config" / "default.yaml"), seed)
    features, truth, mmm, fit_s = _fitted(cfg)
    started = time.monotonic()
    plans = plan_goals(mmm, features, cfg.decisions.budget, PlannerSettings(goals=GOALS), cfg.kpi, truth=truth)
    seconds = time.monotonic() - started
    rows = []
    for plan in plans:
        result = plan.result
        true = result.true_optimized_response
        rows.append({"seed": seed, "plan": plan.goal.label, "reached": plan.reached, "total": result.total_budget,
                     "expected": result.optimized_response.mean, "true": true,
                     "true_in_hdi": result.optimized_response.hdi_low <= true <= result.optimized_response.hdi_high,
                     "return": plan.roas.mean, "true_return": true / result.total_budget, "marginal": plan.mroas,
                     "probability": plan.probability, "seconds_all_goals": seconds, "fit_seconds": fit_s})
    budget = optimize_budget(mmm, features, cfg.decisions.budget)
    planner = Planner.build(mmm, features, cfg.decisions.budget)
    shares = np.array([0.4, 0.3, 0.2, 0.1, 0.0, 0.0])
    weekly = pd.DataFrame({c: t * shares for c, t in zip(planner.channels, planner.current)})
    folder = ROOT / "benchmarks" / "results" / f"_plans_{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    dates = pd.date_range(planner.start, periods=len(shares), freq="7D").strftime("%Y-%m-%d")
    weekly.assign(date=dates)[["date", *planner.channels]].to_csv(folder / "front_loaded.csv", index=False)
    started = time.monotonic()
    scored = evaluate_plans(mmm, features, cfg.decisions.budget, budget.allocation["optimized_spend"], (), folder)
    score_s = time.monotonic() - started
    row = scored.table.set_index("plan").loc["front_loaded"]
    true = true_plan_response(truth, features, weekly)
    rows.append({"seed": seed, "plan": "what-if: front_loaded", "reached": None, "total": row["total_spend"],
                 "expected": row["expected_response_mean"], "true": true,
                 "true_in_hdi": row["expected_response_hdi_low"] <= true <= row["expected_response_hdi_high"],
                 "return": row["roas_mean"], "true_return": true / row["total_spend"], "marginal": None,
                 "probability": None, "seconds_all_goals": score_s, "fit_seconds": fit_s})
    (folder / "front_loaded.csv").unlink()
    folder.rmdir()
    return rows


def _markets(seed: int) -> dict:
    cfg = load_config(ROOT / "config" / "markets.yaml")
    models, truths, fit_s = {}, {}, 0.0
    for offset, market in enumerate(cfg.market_names):
        narrowed = _reseeded(cfg.for_market(market), seed * 10 + offset)
        features, truth, mmm, seconds = _fitted(narrowed)
        models[market], truths[market] = MarketModel(mmm, features), truth
        fit_s += seconds
    started = time.monotonic()
    result = allocate_across_markets(models, cfg.decisions.budget)
    seconds = time.monotonic() - started
    true = {plan: sum(true_incremental_response(truths[m], models[m].features,
                                                dict(zip(rows["channel"], rows[f"{plan}_spend"])), 4)
                      for m, rows in result.allocation.groupby("market")) for plan in ("joint", "separate")}
    moved = (result.markets["joint_spend"] - result.markets["separate_spend"]).abs().sum() / 2
    return {"seed": seed, "total": result.total_budget, "moved_between_markets": moved,
            "uplift_pct": result.uplift_pct, "uplift_hdi": f"{result.uplift.hdi_low:,.0f} .. {result.uplift.hdi_high:,.0f}",
            "true_uplift": true["joint"] - true["separate"],
            "true_uplift_pct": 100 * (true["joint"] - true["separate"]) / true["separate"],
            "joint_true_in_hdi": result.joint_response.hdi_low <= true["joint"] <= result.joint_response.hdi_high,
            "method": result.method, "seconds": seconds, "fit_seconds_3_markets": fit_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    seeds = [20240101 + i for i in range(args.seeds)]
    goals = pd.DataFrame([row for seed in seeds for row in _goals(seed)])
    markets = pd.DataFrame([_markets(seed) for seed in seeds])
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"planner-{stamp}.md"
    out.write_text(
        f"# Planner against the truth ({stamp})\n\n`python benchmarks/planner.py --seeds {args.seeds}`\n\n"
        "## Goal plans and a what-if plan (reference scenario, 208 weeks x 3 channels)\n\n"
        + goals.to_markdown(index=False, floatfmt=".4g")
        + "\n\n## One budget across the three markets of config/markets.yaml\n\n"
        + markets.to_markdown(index=False, floatfmt=".4g") + "\n"
    )
    print(out.read_text())


if __name__ == "__main__":
    main()
