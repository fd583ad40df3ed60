"""The planner: plans that meet a goal, what-if plans from files, and every plan scored side by side.

`goal_plans` answers the goals of `decisions.planner.goals` (target return, target marginal return, target KPI, today's
response for less money); `plan_evaluations` scores today's plan, the optimised budget, the goal plans and the what-if
files of `decisions.planner.plans_dir` with the champion. `plan_file_sensor` rescores when a plan file appears or
changes (mmm_assets/defs/sensors.py), with job `score_plans`: only `plan_evaluations` runs, on the stored champion, budget and goal plans (no fit).
"""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetSelection,
    asset,
    define_asset_job,
    in_process_executor,
)

from mmm_assets.core.records import Champion
from mmm_assets.defs import metadata as md
from mmm_assets.defs.constants import DECISIONS_GROUP, OWNERS
from mmm_assets.defs.decisions import champion_model, kpi_terms, publish
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import ScenarioResource

KINDS = {"pymc", "scipy", "duckdb"}
#: Every scored plan of every run, with the model version and run that scored it.
SAVED_PLANS = "saved_plans"
SCORE_JOB = "score_plans"


@asset(group_name=DECISIONS_GROUP, partitions_def=MARKETS, kinds=KINDS, owners=OWNERS)
def goal_plans(context: AssetExecutionContext, scenario: ScenarioResource, mmm_champion: Champion) -> pd.DataFrame:
    """One plan per goal of `decisions.planner.goals`: the total budget that meets it (split by the budget optimiser
    within the budget's bounds), its spend per channel, expected incremental KPI (94 % HDI), return and marginal
    return, whether the goal is met and, for KPI goals, the probability of meeting it. An unreachable goal gives the
    closest plan and says why. DuckDB table `goal_plans` (one row per goal and channel).
    """
    from mmm_assets.core.decisions.goals import goal_summary, goal_table, plan_goals
    from mmm_assets.core.presentation.plots import plans_plot

    cfg = scenario.load()
    mmm, features, _ = champion_model(context, mmm_champion)
    plans = plan_goals(mmm, features, cfg.decisions.budget, cfg.decisions.planner, cfg.kpi, cfg.owned_channels,
                       report=context.log.info)
    table = goal_table(plans)
    summary = goal_summary(table)
    for row in summary[~summary["reached"]].itertuples():
        context.log.warning(f"goal {row.goal}: {row.note}")
    shown = summary.rename(columns={"goal": "plan", "total_budget": "total_spend"}).assign(source="goal")
    png = plans_plot(shown, table.rename(columns={"goal": "plan"}).assign(
        share_pct=lambda t: 100 * t["spend"] / t["total_budget"]), kpi_terms(cfg)) if len(table) else None
    extra = {"plot": md.image(png, "goal plans")} if png else {}
    scenario.store("goal_plans", table)
    context.add_output_metadata({"dagster/row_count": len(table), "goals": md.table_md(summary),
                                 "unreachable": int((~summary["reached"]).sum()), **extra,
                                 "duckdb_table": "goal_plans"})
    return table


@asset(group_name=DECISIONS_GROUP, partitions_def=MARKETS, kinds=KINDS, owners=OWNERS)
def plan_evaluations(
    context: AssetExecutionContext, scenario: ScenarioResource, mmm_champion: Champion, optimized_budget,
    goal_plans: pd.DataFrame,
) -> pd.DataFrame:
    """Every plan side by side, scored by the champion with the same posterior: today's plan, the optimised budget,
    the goal plans and each what-if CSV of `decisions.planner.plans_dir` (`channel,spend` totals, or `date` plus a
    column per channel for weekly, flighted spend). Per plan: total spend, expected incremental KPI (94 % HDI), return,
    risk (posterior sd, 5 % quantile), the difference to the optimised and to today's plan draw by draw, and the
    probability of beating today's plan; per channel its spend and share. A bad plan file fails the step with the file,
    line and column, and nothing is written. DuckDB `plan_evaluations`; every run's plans are kept in `saved_plans`.
    """
    from mmm_assets.core.decisions.plans import evaluate_plans, plan_files
    from mmm_assets.core.presentation.plots import plans_plot

    cfg = scenario.load()
    mmm, features, version = champion_model(context, mmm_champion)
    channels = list(mmm.channel_columns)
    goals = [(name, rows.set_index("channel").loc[channels, "spend"].to_numpy())
             for name, rows in goal_plans.groupby("goal", sort=False)]
    folder = cfg.decisions.planner.plans_dir
    context.log.info(f"scoring {len(goals)} goal plan(s) and {len(plan_files(folder)) if folder else 0} what-if "
                     f"plan(s) from {folder or 'no plans_dir'}")
    evaluation = evaluate_plans(mmm, features, cfg.decisions.budget, optimized_budget.allocation["optimized_spend"],
                                goals, folder)
    table = evaluation.long()
    scenario.append(SAVED_PLANS, table.assign(model_version=str(version), run_id=context.run_id,
                                              recorded_at=pd.Timestamp.now("UTC").tz_localize(None)))
    publish(context, scenario, "plan_evaluations", table, plans_plot(evaluation.table, evaluation.spend, kpi_terms(cfg)),
            plans=md.table_md(evaluation.table[["plan", "source", "total_spend", "expected_response_mean",
                                                "expected_response_hdi_low", "expected_response_hdi_high",
                                                "roas_mean", "vs_current_mean", "prob_better_than_current"]]),
            plans_dir=str(folder or "none"))
    return table


score_plans = define_asset_job(
    SCORE_JOB,
    selection=AssetSelection.assets(plan_evaluations),
    executor_def=in_process_executor,
    description="Score the what-if plans again with the stored champion, budget and goal plans (no fit).",
)
