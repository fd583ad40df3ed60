"""The definitions load, say what they are, and gate what they should; the instance config is valid."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from dagster import AssetKey, DagsterInstance, Definitions, job, op

from mmm_assets.core.config.paths import PROJECT_DIR
from mmm_assets.definitions import defs
from mmm_assets.defs.model import FIT_POOL
from mmm_assets.defs.partitions import MARKETS

EXPECTED_GROUPS = {
    "marketing_spend": "ingest", "ground_truth": "ingest", "mmm_features": "features",
    "model_comparison": "model", "pooled_holdout": "model", "mmm_posterior": "model", "mmm_validation": "model",
    "mmm_champion": "model", "mmm_cross_validation": "model",
    "channel_contributions": "decisions", "window_contributions": "decisions",
    "channel_roas": "decisions", "response_curves": "decisions", "optimized_budget": "decisions",
    "budget_scenarios": "decisions", "budget_recommendations": "decisions", "goal_plans": "decisions",
    "plan_evaluations": "decisions", "mmm_report": "decisions",
}


def test_definitions_load():
    Definitions.validate_loadable(defs)


def test_every_asset_is_described_grouped_and_owned():
    graph = defs.resolve_asset_graph()
    for name, group in EXPECTED_GROUPS.items():
        node = graph.get(AssetKey(name))
        assert node.group_name == group, name
        assert node.description and len(node.description) > 40, name
        assert node.owners == ["team:marketing-science"], name
        assert node.kinds, name


def test_weekly_refresh_selects_the_whole_graph_and_every_check():
    job = defs.resolve_job_def("weekly_refresh")
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert keys == set(EXPECTED_GROUPS)
    checks = {k.name for k in job.asset_layer.asset_graph.asset_check_keys}
    assert {"in_sample_r2", "max_rhat", "min_ess_bulk", "divergences", "saturation_lam_recovery",
            "adstock_alpha_recovery", "response_curve_recovery", "carryover_recovery", "holdout_mape", "enough_weeks",
            "weekly_contiguous"} <= checks


def test_score_plans_selects_only_the_plan_evaluations():
    """Scoring a new plan file reads the stored champion, budget and goal plans: nothing upstream runs again."""
    job = defs.resolve_job_def("score_plans")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {"plan_evaluations"}


def test_every_decision_sits_downstream_of_the_champion_behind_the_gated_validation():
    graph = defs.resolve_asset_graph()
    validation, champion = AssetKey("mmm_validation"), AssetKey("mmm_champion")
    assert validation in graph.get(champion).parent_keys
    for name, group in EXPECTED_GROUPS.items():
        if group == "decisions":
            assert {validation, champion} <= graph.get_ancestor_asset_keys(AssetKey(name)), name
    for name in ("channel_contributions", "window_contributions", "channel_roas", "response_curves", "optimized_budget",
                 "budget_scenarios", "goal_plans", "plan_evaluations"):
        parents = graph.get(AssetKey(name)).parent_keys
        assert champion in parents and AssetKey("mmm_posterior") not in parents, name


def test_the_gates_block_and_the_advisory_checks_do_not():
    specs = {spec.name: spec for checks_def in defs.asset_checks for spec in checks_def.check_specs}
    advisory = {"cross_validation_gates", "refresh_stability",  # nothing downstream to stop; they alert instead
                "roas_plausible", "baseline_share_positive", "channel_share_plausible", "media_share_plausible",
                "channels_measured"}
    assert len(specs) == 33 and advisory <= set(specs) and "prior_predictive_scale" in specs
    assert all(spec.blocking == (name not in advisory) for name, spec in specs.items())


def test_loading_the_code_location_imports_neither_pymc_nor_mlflow():
    """The code server, the daemon and sensors load the definitions without the modelling stack or MLflow (a run
    imports them when its steps need them; docs/performance.md, "Start-up of a process")."""
    code = "import sys, mmm_assets.definitions; print(*(m in sys.modules for m in sys.argv[1:]))"
    modules = ["pymc_marketing", "pymc", "mlflow", "dagster_mlflow"]
    out = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, check=True).stdout
    assert dict(zip(modules, out.split())) == dict.fromkeys(modules, "False")


def test_workspace_points_at_the_definitions():
    workspace = yaml.safe_load((PROJECT_DIR / "workspace.yaml").read_text())
    target = workspace["load_from"][0]["python_module"]
    assert (target["module_name"], target["attribute"]) == ("mmm_assets.definitions", "defs")


def test_embedded_instance_config(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(PROJECT_DIR / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = DagsterInstance.get()
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    concurrency = instance.get_concurrency_config()
    assert concurrency.run_queue_config.max_concurrent_runs == 3  # market runs side by side
    assert concurrency.pool_config.default_pool_limit == 1  # ... but one posterior sampled at a time
    assert instance.event_log_storage.supports_global_concurrency_limits
    assert not instance.telemetry_enabled
    assert Path(instance.storage_directory()).is_relative_to(home)
    assert instance.code_server_process_startup_timeout >= 300


def test_debug_messages_stay_out_of_the_event_log_and_events_are_kept(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(PROJECT_DIR / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    @op
    def chatty(context) -> int:
        context.log.debug("a debug line")
        context.log.info("an info line")
        return 1

    @job
    def talk():
        chatty()

    result = talk.execute_in_process(instance=DagsterInstance.get())
    logs = DagsterInstance.get().all_logs(result.run_id)
    messages = [r.user_message for r in logs if r.dagster_event is None]
    assert "an info line" in messages and "a debug line" not in messages
    events = {r.dagster_event.event_type_value for r in logs if r.dagster_event is not None}
    assert {"STEP_START", "STEP_OUTPUT", "STEP_SUCCESS"} <= events  # DEBUG-level events, stored all the same


def test_posterior_and_budget_go_stale_after_a_missed_weekly_refresh():
    graph = defs.resolve_asset_graph()
    for name in ("mmm_posterior", "optimized_budget"):
        policy = graph.get(AssetKey(name)).freshness_policy
        assert policy.fail_window.to_timedelta().days == 8, name


def test_every_asset_and_check_is_partitioned_by_market_and_the_samplers_share_a_pool():
    """All but the roll-up and the budget across markets, which take every market's champion. The pooled holdout
    refit is outside the fit pool: one per version of the data, it runs beside the pooled fit."""
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        expected = None if key in (AssetKey("markets_rollup"), AssetKey("all_markets_budget")) else MARKETS
        assert graph.get(key).partitions_def == expected, key
    for key in graph.asset_check_keys:
        assert graph.get(key).partitions_def == MARKETS, key
    pools = {a.key.to_user_string(): a.op.pool for a in defs.assets}
    assert {name for name, pool in pools.items() if pool == FIT_POOL} == {
        "model_comparison", "mmm_posterior", "mmm_validation", "mmm_cross_validation"
    }


def test_the_fit_retries_transient_failures():
    (spec,) = [a for a in defs.assets if a.key == AssetKey("mmm_posterior")]
    policy = spec.op.retry_policy
    assert policy.max_retries >= 1 and policy.delay > 0
