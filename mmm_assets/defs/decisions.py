"""Decisions: what the marketing team reads on Monday morning. Everything here sits downstream of the blocking
model gates (through `mmm_champion` <- `mmm_validation`), so nothing in this group is ever computed from a model that
failed them.

Every asset takes the registry's `champion` (the `mmm_champion` asset: the last fit whose gates all passed) as its
input and reads the data it was fitted on from the model file itself, so a feature table refreshed later cannot be
mixed with an older posterior.
"""

import datetime as dt

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetIn,
    MetadataValue,
    asset,
    asset_check,
)

from mmm_assets.core.records import Champion, FittedModel, ModelChoice, ValidationReport
from mmm_assets.defs import metadata as md
from mmm_assets.defs.constants import DECISIONS_GROUP, OWNERS
from mmm_assets.defs.model import FRESHNESS, fit_title
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import ScenarioResource

GROUP = DECISIONS_GROUP
KINDS = {"pymc", "duckdb"}
#: Every refresh's ROAS and advice, kept so the next refresh can be compared with the previous champion's.
ROAS_HISTORY = "channel_roas_history"
RECOMMENDATIONS_HISTORY = "budget_recommendations_history"
STABILITY_HISTORY = "stability_history"


def _stamped(table: pd.DataFrame, run_id: str, **extra: str) -> pd.DataFrame:
    """``table`` with the run, the time and ``extra`` columns, as a history table keeps it."""
    return table.assign(run_id=run_id, recorded_at=dt.datetime.now(dt.UTC).replace(tzinfo=None), **extra)


def champion_model(context: AssetExecutionContext, champion: Champion):
    """The champion model, its training data and its version; says in the metadata which version is used."""
    from mmm_assets.core.modelling.persistence import load_model
    from mmm_assets.core.modelling.posterior import fitted_features

    context.add_output_metadata({"model_version": f"{champion.model_name} v{champion.version} (champion)"})
    mmm = load_model(champion.path)
    return mmm, fitted_features(mmm), champion.version


def publish(
    context: AssetExecutionContext, scenario: ScenarioResource, table: str, frame: pd.DataFrame, png: bytes,
    **extra: object,
) -> None:
    """Replace the market's rows of the asset's DuckDB table and attach what a person looks at: row count, plot,
    extra tables."""
    scenario.store(table, frame)
    context.add_output_metadata(
        {
            "dagster/row_count": len(frame),
            **extra,
            "plot": md.image(png, table.replace("_", " ")),
            "duckdb_table": MetadataValue.text(table),
        }
    )


@asset(group_name=GROUP, partitions_def=MARKETS, kinds=KINDS, owners=OWNERS)
def channel_contributions(
    context: AssetExecutionContext, scenario: ScenarioResource, mmm_champion: Champion
) -> pd.DataFrame:
    """Weekly contribution of every channel and of the baseline to the target, posterior mean and 94 % HDI.

    DuckDB table `channel_contributions` (long: date, component, mean, hdi_low, hdi_high). Channels plus baseline
    (intercept, controls, seasonality) add up to the `predicted` component, the model's noise-free prediction.
    """
    from mmm_assets.core.decisions.contributions import BASELINE, weekly_contributions, wide_means
    from mmm_assets.core.presentation.plots import contributions_plot

    cfg = scenario.load()
    mmm, _, _ = champion_model(context, mmm_champion)
    long = weekly_contributions(mmm)
    wide = wide_means(long)
    totals = _totals(wide, [*cfg.channels, BASELINE])
    context.log.info(
        "contribution shares (%): " + ", ".join(f"{r.component} {r.share_pct:.1f}" for r in totals.itertuples())
    )
    publish(
        context, scenario, "channel_contributions", long,
        contributions_plot(wide, [BASELINE, *cfg.channels], "weekly contributions", kpi_terms(cfg)),
        totals=md.table_md(totals),
    )
    return long


@asset(group_name=GROUP, partitions_def=MARKETS, kinds={"pymc"}, owners=OWNERS)
def window_contributions(context: AssetExecutionContext, mmm_champion: Champion):
    """Each channel's incremental contribution over the fitted window, per posterior draw (PyMC-Marketing's
    counterfactual incrementality: the prediction with the actual spend minus that with none of the channel's), with
    the window's spend and weeks: what `channel_roas` summarises and `markets_rollup` adds up over the markets, so
    neither computes the counterfactual again (the roll-up then loads no model). Kept by the IO manager, not in
    DuckDB: it is draws, not a table to read."""
    from mmm_assets.core.decisions.rollup import MarketDraws

    mmm, features, version = champion_model(context, mmm_champion)
    draws = MarketDraws.of(mmm, features, f"{mmm_champion.model_name} v{version}")
    context.add_output_metadata({"draws": int(draws.contribution.sizes["chain"] * draws.contribution.sizes["draw"]),
                                 "weeks": len(draws.dates), "channels": len(draws.spend)})
    return draws


@asset(group_name=GROUP, partitions_def=MARKETS, kinds=KINDS, owners=OWNERS)
def channel_roas(
    context: AssetExecutionContext, scenario: ScenarioResource, mmm_champion: Champion, window_contributions
) -> pd.DataFrame:
    """Per channel over the fitted window: spend, incremental contribution, ROAS and marginal ROAS (mean, 94 % HDI),
    the average weekly spend at which marginal ROAS falls to breakeven and the headroom to it. For a conversions KPI
    (`kpi.type`) also the cost per acquisition and marginal CPA, breakeven being the value of a conversion. What each
    ROAS rests on (`roas_basis`: measured by the data, or still at its prior; core.evaluation.measurement), so the
    advice can say when it restates the priors.

    Totals come from PyMC-Marketing's counterfactual incrementality (`window_contributions`). DuckDB table
    `channel_roas`; every refresh's rows are also kept in `channel_roas_history` (with the model version), for the
    stability check.
    """
    from mmm_assets.core.decisions.roas import channel_roas as compute
    from mmm_assets.core.evaluation.measurement import with_basis
    from mmm_assets.core.presentation.plots import roas_plot

    cfg = scenario.load()
    mmm, features, version = champion_model(context, mmm_champion)
    table = with_basis(compute(mmm, features, cfg.kpi, window_contributions.contribution), mmm_champion.measurement)
    scenario.append(ROAS_HISTORY, _stamped(table, context.run_id, model_version=version))
    costs = ["cpa_mean", "cpa_hdi_low", "cpa_hdi_high", "mcpa_mean"] if kpi_terms(cfg).conversions else []
    shown = table[["channel", "spend", "roas_mean", "roas_hdi_low", "roas_hdi_high", "mroas_mean", *costs,
                   "breakeven_weekly_spend", "current_weekly_spend", "headroom_pct",
                   *(["roas_basis"] if "roas_basis" in table.columns else [])]]
    publish(context, scenario, "channel_roas", table, roas_plot(table, kpi_terms(cfg)), roas=md.table_md(shown),
             kpi=kpi_terms(cfg).describe())
    return table


@asset(group_name=GROUP, partitions_def=MARKETS, kinds=KINDS, owners=OWNERS)
def response_curves(
    context: AssetExecutionContext, scenario: ScenarioResource, mmm_champion: Champion
) -> pd.DataFrame:
    """Expected steady-state weekly contribution of each channel over a grid of weekly spend levels (0 to at least
    2x the largest weekly spend seen), mean and 94 % HDI, with the current spend marked. DuckDB `response_curves`.
    """
    from mmm_assets.core.decisions.roas import response_curves as compute
    from mmm_assets.core.presentation.plots import response_curves_plot

    cfg = scenario.load()
    mmm, features, _ = champion_model(context, mmm_champion)
    curves = compute(mmm, features, cfg.decisions.response_curve_points, cfg.decisions.response_curve_max_multiple)
    publish(
        context, scenario, "response_curves", curves, response_curves_plot(curves, kpi_terms(cfg)),
        current_spend=md.table_md(curves[curves["is_current"]].drop(columns=["is_current"])),
    )
    return curves


def _allocation_png(result) -> bytes:
    """Current vs optimised allocation, in the budget's metadata and in the report (one rendering for both)."""
    from mmm_assets.core.presentation.plots import allocation_plot

    return allocation_plot(result.allocation, f"current vs optimised, next {result.horizon_weeks} weeks")


def kpi_terms(cfg):
    """The scenario's KPI terms (revenue or conversions, name, value per conversion) for tables, plots and text."""
    from mmm_assets.core.decisions.kpi import KpiTerms

    return KpiTerms.of(cfg.kpi)


def _budget_metadata(result, terms=None) -> dict:
    """Totals and responses to 6 significant digits (spend kept in thousands must not round to integers); the
    response in KPI units, and its value in money for conversions of known value."""
    from mmm_assets.core.decisions.kpi import KpiTerms, value_of
    from mmm_assets.core.formatting import number, significant

    terms = terms or KpiTerms()
    metadata = {
        "kpi": terms.describe(),
        "total_budget": MetadataValue.float(significant(result.total_budget)),
        "horizon": f"{result.horizon_weeks} weeks from {result.start_date:%Y-%m-%d}",
        "utility": result.utility,
        "expected_response_optimized": MetadataValue.float(significant(result.optimized_response.mean)),
        "expected_response_current": MetadataValue.float(significant(result.current_response.mean)),
        "uplift_pct": MetadataValue.float(round(result.uplift_pct, 2)),
        "uplift_hdi": f"{number(result.uplift.hdi_low)} .. {number(result.uplift.hdi_high)}",
        "method": result.method,
        "fallback_used": result.fallback_used,
        "fallback_reason": result.fallback_reason or "none",
        "optimizer_seconds": round(result.wall_seconds, 1),
    }
    values = {name: value_of(interval, terms) for name, interval in
              (("optimized", result.optimized_response), ("current", result.current_response))}
    if values["optimized"] is not None:
        uplift = value_of(result.uplift, terms)
        metadata |= {
            "expected_value_optimized": MetadataValue.float(significant(values["optimized"].mean)),
            "expected_value_current": MetadataValue.float(significant(values["current"].mean)),
            "uplift_value_hdi": f"{number(uplift.hdi_low)} .. {number(uplift.hdi_high)}",
        }
    return metadata


@asset(
    group_name=GROUP, partitions_def=MARKETS, kinds={"pymc", "scipy", "duckdb"}, owners=OWNERS,
    freshness_policy=FRESHNESS,
)
def optimized_budget(context: AssetExecutionContext, scenario: ScenarioResource, mmm_champion: Champion):
    """Next period's budget across channels that maximises the expected response (PyMC-Marketing's budget
    optimiser), within each channel's bounds and spending the total to within the configured tolerance; compared
    with the current allocation (expected incremental response, 94 % HDI, uplift). DuckDB `optimized_budget`.
    """
    from mmm_assets.core.decisions.budget import optimize_budget

    cfg = scenario.load()
    mmm, features, _ = champion_model(context, mmm_champion)
    result = optimize_budget(mmm, features, cfg.decisions.budget, fixed_channels=cfg.owned_channels)
    if result.fallback_used:
        context.log.warning(f"budget optimiser fallback: {result.method} ({result.fallback_reason})")
    publish(
        context, scenario, "optimized_budget", result.allocation,
        _allocation_png(result),
        **_budget_metadata(result, kpi_terms(cfg)), allocation=md.table_md(result.allocation),
    )
    return result


@asset(group_name=GROUP, partitions_def=MARKETS, kinds={"pymc", "scipy", "duckdb"}, owners=OWNERS)
def budget_scenarios(context: AssetExecutionContext, scenario: ScenarioResource, mmm_champion: Champion):
    """The same optimisation at several budget levels (default 50 %, 100 %, 150 % of the current budget), in one
    table: the return curve of the whole budget. DuckDB `budget_scenarios`.
    """
    from mmm_assets.core.decisions.budget import budget_scenarios as compute
    from mmm_assets.core.decisions.kpi import with_value
    from mmm_assets.core.presentation.plots import scenarios_plot

    cfg = scenario.load()
    mmm, features, _ = champion_model(context, mmm_champion)
    table = with_value(compute(mmm, features, cfg.decisions.budget, fixed_channels=cfg.owned_channels), kpi_terms(cfg))
    levels = _levels(table)
    publish(context, scenario, "budget_scenarios", table, scenarios_plot(levels, kpi_terms(cfg)),
             levels=md.table_md(levels))
    return table


def _totals(wide: pd.DataFrame, components: list[str]) -> pd.DataFrame:
    """Each component's total over the fitted window and its share of the prediction."""
    totals = wide[components].sum()
    return pd.DataFrame(
        {"component": components, "total": totals.to_numpy(), "share_pct": (100 * totals / totals.sum()).to_numpy()}
    )


def _levels(scenarios: pd.DataFrame) -> pd.DataFrame:
    """One row per budget level of the scenarios table."""
    keep = ["level", "total_budget", "expected_response_mean", "expected_response_hdi_low",
            "expected_response_hdi_high"]
    keep += [c for c in ("expected_value_mean", "expected_value_hdi_low", "expected_value_hdi_high")
             if c in scenarios.columns]  # conversions of known value (core.decisions.kpi.with_value)
    return scenarios[keep].drop_duplicates("level").reset_index(drop=True)


@asset(group_name=GROUP, partitions_def=MARKETS, kinds={"python", "duckdb"}, owners=OWNERS)
def budget_recommendations(
    context: AssetExecutionContext, scenario: ScenarioResource, optimized_budget, channel_roas: pd.DataFrame
) -> pd.DataFrame:
    """Per channel INCREASE / HOLD / REDUCE with the reason in words (the optimiser's proposed change, marginal ROAS
    against breakeven and its uncertainty), plus the executive summary a marketing lead reads. DuckDB
    `budget_recommendations`.
    """
    from mmm_assets.core.decisions.advice import recommendations
    from mmm_assets.core.presentation.report import executive_summary

    cfg = scenario.load()
    table = recommendations(optimized_budget, channel_roas, cfg.decisions.hold_band_pct, cfg.kpi)
    scenario.store("budget_recommendations", table)
    scenario.append(RECOMMENDATIONS_HISTORY, _stamped(table, context.run_id))
    summary = executive_summary(optimized_budget, table, cfg.kpi)
    context.log.info("\n".join(summary))
    ranked = [c for c in ("mcpa_mean", "mcpa_rank") if c in table.columns]  # conversions: marginal CPA
    context.add_output_metadata(
        {
            "executive_summary": MetadataValue.md("\n\n".join(summary)),
            "recommendations": md.table_md(table[["channel", "action", "change_pct", "current_spend",
                                                  "optimized_spend", *ranked]]),
            "duckdb_table": MetadataValue.text("budget_recommendations"),
        }
    )
    return table


def _previous_champion(scenario: ScenarioResource, run_id: str) -> tuple[str | None, pd.DataFrame | None, pd.DataFrame | None]:
    """The last refresh before ``run_id`` whose ROAS came from another champion version: its run id, ROAS, advice."""
    roas = scenario.read(ROAS_HISTORY)
    current = set(roas.loc[roas["run_id"] == run_id, "model_version"])
    older = roas[~roas["model_version"].isin(current)]
    if older.empty:
        return None, None, None
    previous = older.sort_values("recorded_at")["run_id"].iloc[-1]
    advice = scenario.read(RECOMMENDATIONS_HISTORY)
    advice = advice[advice["run_id"] == previous]
    return previous, older[older["run_id"] == previous], (advice if len(advice) else None)


@asset_check(
    asset=budget_recommendations,
    additional_ins={"channel_roas": AssetIn("channel_roas"), "mmm_champion": AssetIn("mmm_champion")},
    blocking=False,
    partitions_def=MARKETS,
    description=(
        "Refresh stability (WARN, non-blocking): each channel's ROAS and marginal ROAS, and the champion's budget "
        "advice at the previous plan's reference spend (so a new week's move of the recent-spend window does not "
        "count), compared with the previous champion's; a move beyond the `stability` bounds asks a person to look "
        "before acting. Every comparison is kept in DuckDB table `stability_history`."
    ),
)
def refresh_stability(
    context: AssetCheckExecutionContext, scenario: ScenarioResource, budget_recommendations: pd.DataFrame,
    channel_roas: pd.DataFrame, mmm_champion: Champion,
) -> AssetCheckResult:
    """Compare this refresh's ROAS and advice with the previous champion's (core.stability)."""
    from mmm_assets.core.evaluation.stability import assess_stability

    cfg = scenario.load()
    previous_run, previous_roas, previous_advice = _previous_champion(scenario, context.run.run_id)
    replanned = _replanned(context, cfg, mmm_champion, previous_advice) if previous_roas is not None else None
    result = assess_stability(
        cfg.stability, channel_roas, previous_roas, budget_recommendations, previous_advice, replanned
    )
    metadata: dict = {"previous_run_id": previous_run or "none (first champion)", "flagged": ", ".join(result.flagged)}
    if result.compared:
        scenario.append(STABILITY_HISTORY, _stamped(result.roas, context.run.run_id, previous_run_id=previous_run))
        metadata["largest_roas_change_pct"] = MetadataValue.float(float(result.roas["change_pct"].abs().max()))
        metadata["threshold"] = MetadataValue.float(cfg.stability.max_roas_change_pct)
        metadata["roas_changes"] = md.table_md(
            result.roas[["channel", "previous_roas", "current_roas", "change_pct", "mroas_change_pct", "flagged"]]
        )
        if result.recommendations is not None:
            metadata["advice_changes"] = md.table_md(result.recommendations[
                ["channel", "previous_action", "current_action", "share_change_pp", "flagged"]])
            metadata["advice_compared"] = (
                "at the previous plan's reference spend and total" if result.replanned
                else "as planned, each around its own last horizon_weeks' spend"
            )
    (context.log.warning if result.flagged else context.log.info)(result.message)
    return AssetCheckResult(
        passed=result.passed, severity=AssetCheckSeverity.WARN, description=result.message, metadata=metadata
    )


def _replanned(context: AssetCheckExecutionContext, cfg, champion: Champion, previous_advice: pd.DataFrame | None):
    """The champion's advice at the previous advice's reference spend (core.decisions.advice.replanned_advice);
    None when there is none to replan at or the replan fails (the check then compares the advice as planned)."""
    from mmm_assets.core.decisions.advice import replanned_advice
    from mmm_assets.core.modelling.persistence import load_model
    from mmm_assets.core.modelling.posterior import fitted_features

    if previous_advice is None:
        return None
    mmm = load_model(champion.path)
    try:
        return replanned_advice(mmm, fitted_features(mmm), cfg, previous_advice)
    except ValueError as err:  # bounds that cannot hold the previous total, ...: compare as planned instead
        context.log.warning(f"no replan at the previous plan's reference spend ({err}); advice compared as planned")
        return None


def _plans_section(goal_plans: pd.DataFrame, plan_evaluations: pd.DataFrame, terms):
    """The report's side-by-side view of every plan (the planner's assets), with the goals' outcomes."""
    from mmm_assets.core.decisions.goals import goal_summary
    from mmm_assets.core.presentation.plots import plans_plot
    from mmm_assets.core.presentation.report import Section

    plans = plan_evaluations.drop(columns=["channel", "spend", "share_pct"]).drop_duplicates("plan")
    spend = plan_evaluations[["plan", "channel", "spend", "share_pct"]]
    goals = goal_summary(goal_plans)
    notes = [f"Goal {row.goal}: {row.note}." for row in goals.itertuples()]
    return Section("Plans side by side", notes, plots={"plans": plans_plot(plans.reset_index(drop=True), spend, terms)},
                   tables={"plans": plans, "goals": goals}, exports={"plan_spend": spend})


@asset(group_name=GROUP, partitions_def=MARKETS, kinds={"html"}, owners=OWNERS)
def mmm_report(
    context: AssetExecutionContext,
    scenario: ScenarioResource,
    mmm_posterior: FittedModel,
    mmm_validation: ValidationReport,
    channel_contributions: pd.DataFrame,
    channel_roas: pd.DataFrame,
    response_curves: pd.DataFrame,
    optimized_budget,
    budget_scenarios: pd.DataFrame,
    budget_recommendations: pd.DataFrame,
    model_comparison: ModelChoice,
    goal_plans: pd.DataFrame,
    plan_evaluations: pd.DataFrame,
) -> str:
    """A self-contained HTML report (actual vs fitted, contributions, ROAS, response curves, current vs optimised
    allocation, budget scenarios, the plans side by side (goal and what-if plans), validation, and the specification comparison when `model.candidates` are set), the
    same plots as PNG files and every table as CSV and JSON, in one folder per run under `paths.reports_dir`.
    """
    from mmm_assets.core.decisions.contributions import BASELINE, wide_means
    from mmm_assets.core.presentation import plots
    from mmm_assets.core.presentation.report import Section, executive_summary, write_report

    cfg = scenario.load().with_candidate(mmm_posterior.specification)
    terms = kpi_terms(cfg)
    wide = wide_means(channel_contributions)
    v = mmm_validation
    gates = pd.DataFrame(v.gates)[["gate", "value", "direction", "threshold", "passed"]]
    sections = [
        Section("Fit", [f"Model {mmm_posterior.path} ({cfg.model.adstock.family} adstock + "
                        f"{cfg.model.saturation.family} saturation; {mmm_posterior.sampler}, {mmm_posterior.chains} "
                        f"chains x {mmm_posterior.draws} draws, fit {mmm_posterior.wall_seconds:.0f} s)."],
                {"fit": plots.fit_plot(v.in_sample, v.holdout, fit_title(cfg))}),
        Section(f"Where {terms.label if terms.conversions else 'sales'} came from", plots={
            "contributions": plots.contributions_plot(wide, [BASELINE, *cfg.channels], "weekly contributions", terms)},
            tables={"contribution_totals": _totals(wide, [*cfg.channels, BASELINE])}, exports={"contributions": wide}),
        Section("Cost per acquisition (CPA)" if terms.conversions else "Return on ad spend", [terms.describe()],
                plots={"roas": plots.roas_plot(channel_roas, terms)}, tables={"roas": channel_roas}),
        Section("Response curves", plots={"response_curves": plots.response_curves_plot(response_curves, terms)},
                tables={"current_spend": response_curves[response_curves["is_current"]].drop(columns="is_current")},
                exports={"response_curves": response_curves}),
        Section("Budget: current vs optimised", [optimized_budget.method],
                {"allocation": _allocation_png(optimized_budget)},
                {"allocation": optimized_budget.allocation, "recommendations": budget_recommendations}),
        Section("Budget scenarios", plots={"scenarios": plots.scenarios_plot(_levels(budget_scenarios), terms)},
                tables={"scenario_levels": _levels(budget_scenarios)}, exports={"budget_scenarios": budget_scenarios}),
        Section("Validation", plots=({"recovery": plots.recovery_plot(v.recovery)} if v.recovery is not None else {}),
                tables={"validation_gates": gates, **({"recovery": v.recovery} if v.recovery is not None else {})}),
    ]
    sections.append(_plans_section(goal_plans, plan_evaluations, terms))
    if not model_comparison.table.empty:
        sections.append(Section(
            "Which specification", [f"Chosen: {model_comparison.selected or 'the scenario model'}. "
                                    f"{model_comparison.reason}."],
            plots={"model_comparison": plots.comparison_plot(model_comparison.table)},
            tables={"model_comparison": model_comparison.table}))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = write_report(
        cfg.paths.reports_dir / f"{cfg.scenario}_{cfg.market}_{stamp}_{context.run_id[:8]}",
        f"Marketing-mix report: {cfg.scenario}, market {cfg.market}",
        f"Run {context.run_id}, data {mmm_posterior.data_version}, generated {stamp}",
        executive_summary(optimized_budget, budget_recommendations, cfg.kpi),
        sections,
    )
    from mmm_assets.core.stores import tracking

    tracking.client_for(cfg).log_artifacts(mmm_posterior.mlflow_run_id, str(folder), artifact_path="report")
    context.log.info(f"report written to {folder / 'index.html'} and logged to MLflow run {mmm_posterior.mlflow_run_id}")
    context.add_output_metadata(
        {
            "report": MetadataValue.path(str(folder / "index.html")),
            "folder": MetadataValue.path(str(folder)),
            "files": ", ".join(sorted(p.name for p in folder.iterdir())),
        }
    )
    return str(folder)
