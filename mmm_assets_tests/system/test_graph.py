"""The whole graph, wired: a passing refresh, a refresh blocked by its gates, and rejected landing files."""

import contextlib
import io
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, SkipReason, build_sensor_context

from mmm_assets import cli
from mmm_assets.core.config import DEFAULT_MARKET, TARGET_COLUMN, MMMConfig, load_config
from mmm_assets.core.config.paths import DEFAULT_CONFIG, PROJECT_DIR
from mmm_assets.core.stores import tracking
from mmm_assets.core.stores.alerts import fmt_number
from mmm_assets.core.stores.duckdb_store import content_hash
from mmm_assets.core.synthetic.generator import generate, landing_export
from mmm_assets.definitions import ASSETS, CHECKS, defs
from mmm_assets.defs.alerts import run_failure_alert_sensor
from mmm_assets.defs.features import mmm_features
from mmm_assets.defs.ingest import marketing_spend
from mmm_assets.defs.resources import ScenarioResource
from mmm_assets.defs.sensors import plan_file_sensor
from mmm_assets_tests.conftest import SMALL, merge, write_scenario
from mmm_assets_tests.core.stores.test_alerts import Webhook
from mmm_assets_tests.defs.conftest import evaluate_sensor, read_alerts
from mmm_assets_tests.system.runs import materialize_market

#: What weekly_refresh materialises: every asset but those over all markets (job plan_all_markets).
ALL_ASSETS = [a.key.to_user_string() for a in ASSETS
              if a.key.to_user_string() not in ("markets_rollup", "all_markets_budget")]
_FAMILIES = yaml.safe_load((PROJECT_DIR / "config" / "families" / "weibull_hill.yaml").read_text())
#: The small scenario on Weibull-adstock + Hill-saturation data (config/families/weibull_hill.yaml) with two
#: candidate specifications, and the optional time-slice cross-validation on (2 folds): every asset materialises, and
#: the comparison's choice flows through the fit, its validation, the folds and every decision.
WITH_CV = merge(SMALL, {
    "data": _FAMILIES["data"],
    "model": {**_FAMILIES["model"], "candidates": {
        "geometric_logistic": {"adstock": {"family": "geometric"}, "saturation": {"family": "logistic"}},
        "weibull_hill": {},
    }},
    "validation": {"cross_validation": {"enabled": True, "max_folds": 2, "draws": 150}},
    "sampler": {"max_draws": 800},  # Weibull + Hill's tail ESS can fall short of 100 at 2 x 250 draws: sample more
    "decisions": {"planner": {"goals": yaml.safe_load(DEFAULT_CONFIG.read_text())["decisions"]["planner"]["goals"]}},
})
#: What a failed gate keeps from being materialised: the champion and every decision behind it.
DECISIONS = ["mmm_champion", "channel_contributions", "window_contributions", "channel_roas", "response_curves",
             "optimized_budget", "budget_scenarios", "budget_recommendations", "goal_plans", "plan_evaluations",
             "mmm_report"]


def _tables(path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(path), read_only=True) as conn:
        names = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return {n: conn.execute(f'SELECT * FROM "{n}"').df() for n in names}


@dataclass(frozen=True)
class Refresh:
    """One `make run` equivalent: its scenario, printed summary and the assets it materialised."""

    path: Path
    cfg: MMMConfig
    out: str
    exit_code: int
    materialized: set[str]
    run_id: str


def _refresh(path: Path, read_stdout: Callable[[], str]) -> Refresh:
    """Run the whole graph as `make run` does and collect what it printed and materialised."""
    exit_code = cli.main(["run", "--config", str(path)])
    out = read_stdout()
    run_id = re.search(r"- run ([0-9a-f-]{36}) -", out).group(1)
    records = DagsterInstance.get().get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    materialized = {r.event_log_entry.dagster_event.asset_key.to_user_string() for r in records.records}
    return Refresh(path, load_config(path), out, exit_code, materialized, run_id)


@pytest.fixture(scope="module")
def good_refresh(tmp_path_factory) -> Refresh:
    folder = tmp_path_factory.mktemp("refresh")
    home = folder / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_DIR / "dagster.yaml", home / "dagster.yaml")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("DAGSTER_HOME", str(home))
        for name in ("MLFLOW_TRACKING_URI", "MMM_CONFIG", "MMM_DUCKDB_PATH"):
            patch.delenv(name, raising=False)
        plans = folder / "plans"  # one what-if plan, scored with the goal plans by the whole graph
        plans.mkdir()
        pd.DataFrame({"channel": ["adwords", "facebook", "linkedin"], "spend": [150_000, 100_000, 250_000]}).to_csv(
            plans / "more linkedin.csv", index=False)
        scenario = merge(WITH_CV, {"decisions": {"planner": {"plans_dir": str(plans)}}})
        return _refresh(write_scenario(folder, scenario), printed.getvalue)


@pytest.mark.slow
def test_whole_graph_materialises_and_passes_its_gates(good_refresh):
    cfg, out = good_refresh.cfg, good_refresh.out
    assert good_refresh.exit_code == 0, out
    checks = sum(len(list(c.check_specs)) for c in CHECKS)
    assert "RESULT: success" in out and f"checks: {checks}/{checks} passed" in out, out
    for check in ("mmm_validation:prior_predictive_scale", "channel_roas:roas_plausible",
                  "channel_contributions:baseline_share_positive", "channel_contributions:channel_share_plausible",
                  "channel_contributions:media_share_plausible"):
        assert f"PASS  {check}" in out, out
    assert "PASS  mmm_validation:max_rhat" in out and "PASS  mmm_cross_validation:cross_validation_gates" in out
    assert "PASS  budget_recommendations:refresh_stability" in out  # the first champion: nothing to compare with
    assert "recovered vs true parameters" in out
    assert good_refresh.materialized == set(ALL_ASSETS)

    tables = _tables(cfg.paths.duckdb)
    assert len(tables["mmm_features"]) == 104
    history = tables["validation_history"]
    assert history["passed"].all()
    assert {"in_sample_r2", "holdout_mape_pct", "max_rhat", "response_curve_relative_error.adwords",
            "adstock_mean_lag_absolute_error.adwords"} <= set(history["metric"])
    comparison = tables["model_comparison"].set_index("candidate")
    assert comparison["selected"].to_dict() == {"geometric_logistic": False, "weibull_hill": True}
    assert "response_curve_recovery" in comparison.loc["geometric_logistic", "failed_gates"]
    prior = tables["prior_posterior"]  # the data informed every beta of the small scenario
    betas = prior[prior["parameter"] == "saturation_beta"]
    assert set(betas["element"]) == set(cfg.channels) and (betas["verdict"] == "informed by the data").all()
    contributions = tables["channel_contributions"]
    assert len(contributions) == 104 * (len(cfg.channels) + 2)
    folds = tables["cv_folds"]
    assert len(folds) == 2 and (folds["mape_pct"] < cfg.validation.thresholds.oos_mape_max_pct).all()
    assert set(tables["channel_roas_history"]["model_version"]) == {"1"}  # kept for the next refresh's comparison
    assert len(tables["budget_recommendations_history"]) == len(cfg.channels)
    (model_file,) = cfg.paths.models_dir.glob("*.nc")
    assert model_file.name.endswith("_weibull_hill.nc")  # the comparison's fit of the chosen one, not fitted twice

    budget = tables["optimized_budget"]
    spent, total = budget["optimized_spend"].sum(), budget["current_spend"].sum()
    assert abs(spent - total) <= cfg.decisions.budget.total_tolerance * total
    assert (budget["optimized_spend"] >= budget["lower_bound"] * (1 - 1e-6)).all()
    assert (budget["optimized_spend"] <= budget["upper_bound"] * (1 + 1e-6)).all()
    assert set(tables["budget_recommendations"]["action"]) <= {"INCREASE", "HOLD", "REDUCE"}
    assert len(tables["budget_scenarios"]["level"].unique()) == len(cfg.decisions.budget.scenario_levels)
    assert set(tables["channel_roas"]["channel"]) == set(cfg.channels)
    measured = tables["channel_measurement"].set_index("channel")["verdict"]  # the validation's, via the champion
    assert tables["channel_roas"].set_index("channel")["roas_basis"].to_dict() == measured[cfg.channels].to_dict()
    assert tables["response_curves"]["is_current"].sum() == len(cfg.channels)

    (report,) = cfg.paths.reports_dir.iterdir()
    page = (report / "index.html").read_text()
    # fit, contributions, roas, curves, allocation, scenarios, plans, recovery, specification comparison
    assert page.count('src="data:image/png;base64,') == 9 and "Which specification" in page
    assert "Plans side by side" in page and "more linkedin" in page
    goals = tables["goal_plans"].drop_duplicates("goal").set_index("goal")
    assert list(goals.index) == ["same_response_least_spend", "target_mroas"] and goals["reached"].all()
    plans = tables["plan_evaluations"].drop_duplicates("plan").set_index("plan")
    assert list(plans.index) == ["current", "optimized", "same_response_least_spend", "target_mroas", "more linkedin"]
    assert plans.loc["more linkedin", "total_spend"] == pytest.approx(500_000)
    assert plans.loc["optimized", "expected_response_mean"] >= plans.loc["current", "expected_response_mean"]
    assert set(tables["saved_plans"]["model_version"]) == {"1"}
    assert {"fit.png", "roas.png", "allocation.png", "roas.csv", "allocation.json", "recommendations.csv"} <= {
        p.name for p in report.iterdir()
    }


@pytest.mark.slow
def test_the_fit_is_an_mlflow_run_with_its_lineage_and_the_champion(good_refresh, tmp_path):
    cfg = good_refresh.cfg
    client = tracking.client_for(cfg)
    experiment = client.get_experiment_by_name(cfg.operations.mlflow_experiment)
    (run,) = client.search_runs([experiment.experiment_id])
    dagster_run_id = good_refresh.run_id
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert tags["dagster_run_id"] == dagster_run_id and tags["dagster_asset_key"] == "mmm_posterior"
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", tags["code_version"])
    features = _tables(cfg.paths.duckdb)["mmm_features"]
    assert set(features.pop("market")) == {DEFAULT_MARKET} and set(features.pop("scenario")) == {cfg.scenario}
    assert tags["data_version"] == content_hash(features)
    assert tags["dagster_partition"] == tags["market"] == DEFAULT_MARKET
    assert run.data.params["sampler.draws"] == str(cfg.sampler.draws)
    assert run.data.params["model.adstock_l_max"] == str(cfg.model.adstock_l_max)
    assert tags["model_specification"] == "weibull_hill"
    assert tags["media_transforms"] == "weibull_cdf adstock + hill saturation"
    assert {"fit_wall_seconds", "max_rhat", "validation.in_sample_r2", "validation.holdout_mape_pct"} <= set(
        run.data.metrics
    )
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "report"} <= artifacts and "posterior" not in artifacts  # the posterior is the model's artifact
    # the scales the fit divided by (no fixed ones: the data's maxima), in the shape model.scaling takes
    scales = json.loads(Path(client.download_artifacts(run.info.run_id, "model_scales.json", str(tmp_path)))
                        .read_text())
    assert scales == {"target": features[TARGET_COLUMN].max(), "controls": {},
                      "channels": {c: features[c].max() for c in cfg.channels}}
    assert "between_market_spreads.json" not in artifacts  # a market fitted on its own
    (dataset,) = run.inputs.dataset_inputs
    assert (dataset.dataset.name, dataset.dataset.digest) == ("mmm_features", tags["data_version"])
    champion = tracking.champion(client, cfg.for_market(DEFAULT_MARKET))
    assert champion.run_id == run.info.run_id and champion.tags["status"] == "champion"
    assert champion.source.startswith("models:/m-") and champion.tags["data_version"] == tags["data_version"]


@pytest.mark.slow
def test_a_failing_refresh_is_blocked_and_keeps_the_last_good_state(good_refresh, capsys, monkeypatch):
    """An under-sampled refresh into the same stores: gates fail, nothing downstream moves, the champion stays, and
    the failure sensor raises one alert per failed check."""
    folder = good_refresh.path.parent
    cfg = good_refresh.cfg
    before = _tables(cfg.paths.duckdb)
    reports_before = sorted(cfg.paths.reports_dir.iterdir())
    bad = write_scenario(
        folder,
        merge(SMALL, {"sampler": {"chains": 2, "draws": 15, "tune": 15},
                      "validation": {"thresholds": {"ess_bulk_min": 400, "rhat_max": 1.01}}}),
        name="undersampled.yaml",
    )
    with Webhook() as webhook:
        monkeypatch.setenv("MMM_ALERT_WEBHOOK_URL", webhook.url)
        failing = _refresh(bad, lambda: capsys.readouterr().out)
        _assert_one_alert_per_failed_check(failing, webhook)
    assert failing.exit_code == 1
    assert "RESULT: FAILED" in failing.out and "FAIL  mmm_validation:min_ess_bulk" in failing.out
    assert "EXIT 1 (gates failed)" in failing.out
    assert re.search(r"failed gate\(s\): .*mmm_validation:min_ess_bulk [0-9.e+]+ \(threshold 400\)", failing.out)
    assert "not materialised (blocked by a failed check or an upstream failure): " + ", ".join(
        sorted(DECISIONS)) in failing.out
    assert "mmm_validation" in failing.materialized and not failing.materialized & set(DECISIONS)

    after = _tables(cfg.paths.duckdb)
    for table in ("channel_contributions", "channel_roas", "optimized_budget", "budget_scenarios",
                  "budget_recommendations", "response_curves", "goal_plans", "plan_evaluations", "saved_plans"):
        pd.testing.assert_frame_equal(after[table], before[table])
    assert sorted(cfg.paths.reports_dir.iterdir()) == reports_before
    assert not after["validation_history"].query("metric == 'min_ess_bulk'")["passed"].all()

    client = tracking.client_for(cfg)
    champion = tracking.champion(client, cfg.for_market(DEFAULT_MARKET))
    assert str(champion.version) == "1"
    rejected = client.get_model_version(tracking.model_name(cfg.for_market(DEFAULT_MARKET)), "2")
    assert rejected.tags["status"] == "rejected_challenger"
    assert "min_ess_bulk" in rejected.tags["failed_checks"].split(",")


@pytest.mark.slow
def test_a_new_plan_file_is_scored_by_the_sensor_without_a_refit(good_refresh, monkeypatch):
    """A what-if plan dropped into plans_dir: the sensor asks for score_plans on the market that has a budget, which
    scores it with the stored champion, budget and goal plans (only plan_evaluations runs), well within a minute."""
    cfg = good_refresh.cfg
    monkeypatch.setenv("DAGSTER_HOME", str(good_refresh.path.parent / "dagster_home"))
    monkeypatch.setenv("MMM_CONFIG", str(good_refresh.path))
    instance = DagsterInstance.get()
    after_data = _tables(cfg.paths.duckdb)["mmm_features"]["date"].max() + pd.Timedelta(days=7)
    weeks = pd.date_range(after_data, periods=3, freq="7D")
    pd.DataFrame({"date": weeks.strftime("%Y-%m-%d"), "adwords": [90_000, 30_000, 0], "facebook": [50_000] * 3,
                  "linkedin": [60_000] * 3}).to_csv(cfg.decisions.planner.plans_dir / "burst.csv", index=False)

    tick = plan_file_sensor(build_sensor_context(instance=instance))
    (request,) = tick.run_requests
    assert request.partition_key == DEFAULT_MARKET and request.job_name in (None, "score_plans")
    started = time.monotonic()
    run = defs.resolve_job_def("score_plans").execute_in_process(
        run_config=request.run_config, instance=instance, partition_key=request.partition_key, tags=request.tags)
    seconds = time.monotonic() - started
    assert run.success and seconds < 60, seconds
    assert {e.asset_key.to_user_string() for e in run.get_asset_materialization_events()} == {"plan_evaluations"}
    plans = _tables(cfg.paths.duckdb)["plan_evaluations"].drop_duplicates("plan").set_index("plan")
    assert "burst" in plans.index and plans.loc["burst", "weeks"] == 3
    assert plans.loc["burst", "total_spend"] == pytest.approx(120_000 + 150_000 + 180_000)
    assert len(set(_tables(cfg.paths.duckdb)["saved_plans"]["run_id"])) == 2  # the refresh's plans and these

    again = plan_file_sensor(build_sensor_context(instance=instance, cursor=tick.cursor))
    assert isinstance(again, SkipReason) and "no new, changed or removed plan file" in again.skip_message

    # a bad plan file fails the scoring with the file, line and column, and changes no table
    before = _tables(cfg.paths.duckdb)
    (cfg.decisions.planner.plans_dir / "typo.csv").write_text("channel,spend\nadwords,1e5\nfacebok,2e5\nlinkedin,3e5\n")
    (request,) = plan_file_sensor(build_sensor_context(instance=instance, cursor=tick.cursor)).run_requests
    failed = defs.resolve_job_def("score_plans").execute_in_process(
        run_config=request.run_config, instance=instance, partition_key=request.partition_key, raise_on_error=False)
    assert not failed.success
    (error,) = [e.event_specific_data.error for e in failed.all_events if e.is_step_failure]
    while error.cause is not None:  # the user's InputError under Dagster's wrapper
        error = error.cause
    assert error.cls_name == "InputError" and "typo.csv" in error.message
    assert "column 'channel': not a model channel at line 3 ('facebok')" in error.message
    after = _tables(cfg.paths.duckdb)
    for table in ("plan_evaluations", "saved_plans", "goal_plans"):
        pd.testing.assert_frame_equal(after[table], before[table])


def _assert_one_alert_per_failed_check(failing: Refresh, webhook: Webhook) -> None:
    """The failure sensor, evaluated on the failed run as the daemon would, logs and posts one alert per failed
    check, each with its value, threshold and a link to the run."""
    instance = DagsterInstance.get()
    evaluations = [e.dagster_event.event_specific_data for e in
                   instance.all_logs(failing.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)]
    failed = {(e.asset_key.to_user_string(), e.check_name): e.metadata for e in evaluations if not e.passed}
    assert ("mmm_validation", "min_ess_bulk") in failed

    evaluate_sensor(run_failure_alert_sensor, failing.run_id, DagsterEventType.RUN_FAILURE)
    alerts = read_alerts(failing.cfg.paths.alerts_log)
    assert len(alerts) == len(failed) == len(webhook.bodies)
    run_url = f"http://127.0.0.1:3000/runs/{failing.run_id}"
    assert {(a["asset"], a["check"]) for a in alerts} == set(failed)
    for alert, body in zip(alerts, webhook.bodies):
        metadata = failed[alert["asset"], alert["check"]]
        assert alert["kind"] == "blocking_check_failed" and alert["run_url"] == run_url
        assert alert["value"] == pytest.approx(metadata["value"].value)
        assert alert["threshold"] == pytest.approx(metadata["threshold"].value)
        facts = [f["text"] for f in body["blocks"][1]["fields"]]
        numbers = f"{fmt_number(alert['value'])} vs {fmt_number(alert['threshold'])}"
        assert facts[:3] == [
            f"*Asset*\n{alert['asset']}", f"*Check*\n{alert['check']}", f"*Value vs threshold*\n{numbers}"
        ]
        assert f"<{run_url}|{failing.run_id[:8]}>" in facts[-1] and run_url in body["text"]


def test_shipped_undersampled_config_is_set_up_to_fail():
    cfg = load_config("config/undersampled.yaml")
    s, t = cfg.sampler, cfg.validation.thresholds
    # at most chains * draws effective samples could exist: fewer than the gate asks for
    assert s.chains * s.draws < t.ess_bulk_min


def _landing_config(write_config, tmp_path) -> tuple[ScenarioResource, object]:
    path = write_config(
        {"scenario": "landing", "data": {"source": "files", "files": {
            "landing_dir": str(tmp_path / "landing"), "file": "spend.csv",
            "columns": {"date": "Week Start", "target": "Revenue (EUR)",
                        "channels": {"adwords": "Google Ads", "facebook": "Facebook", "linkedin": "LinkedIn"}},
        }}}
    )
    return ScenarioResource(config_path=str(path)), load_config(path)


def _ingest(resource: ScenarioResource):
    return materialize_market([marketing_spend, mmm_features], resources={"scenario": resource}, raise_on_error=False)


def _break_duplicate_week(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame.iloc[:10], frame.iloc[[9]], frame.iloc[10:]])


def _break_negative_spend(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[20, "Facebook"] = -150.0
    return frame


@pytest.mark.parametrize(
    ("breaker", "expected"),
    [
        (_break_duplicate_week, r"duplicate.*2019-03-11"),
        (_break_negative_spend, r"'facebook'.*negative spend on 2019-05-27 \(-150\)"),
        (lambda frame: frame.drop(columns=["LinkedIn"]), r"not in the file: 'LinkedIn' \(channel 'linkedin'\)"),
    ],
    ids=["duplicate-week", "negative-spend", "missing-column"],
)
def test_rejected_landing_file_leaves_previous_feature_table(write_config, tmp_path, breaker, expected):
    resource, cfg = _landing_config(write_config, tmp_path)
    frame, _ = generate(load_config("config/default.yaml").data.synthetic)
    good = landing_export(frame, cfg.data.files.columns)
    landing = cfg.data.files.landing_dir
    landing.mkdir()
    good.to_csv(landing / "spend.csv", index=False)
    assert _ingest(resource).success
    before = _tables(cfg.paths.duckdb)["mmm_features"]
    assert len(before) == 208

    breaker(good).to_csv(landing / "spend.csv", index=False)
    result = _ingest(resource)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    message = failure.cause.message if failure.cause else failure.message
    assert "spend.csv" in message
    assert re.search(expected, message, flags=re.IGNORECASE | re.DOTALL), message
    pd.testing.assert_frame_equal(_tables(cfg.paths.duckdb)["mmm_features"], before)


def test_sample_landing_file_is_read_back_unchanged(write_config, tmp_path):
    resource, cfg = _landing_config(write_config, tmp_path)
    assert cli.main(["sample-landing", "--config", resource.config_path]) == 0
    assert _ingest(resource).success
    frame, _ = generate(load_config("config/default.yaml").data.synthetic)
    stored = _tables(cfg.paths.duckdb)["mmm_features"].drop(columns=["scenario", "market"])
    pd.testing.assert_frame_equal(stored, frame[stored.columns], check_dtype=False)


@pytest.mark.slow
def test_a_refresh_on_a_contradicting_new_week_trips_the_stability_check(tmp_path, capsys):
    """Two refreshes of a landing file: the second adds a week whose KPI is half of what the model expects (an
    export taken before the week closed). The run still succeeds (the check is a WARN, not a gate), the check fails
    and names the channels, and the comparison is kept in `stability_history`."""
    # About the stability check, so the gates are loosened to let the second refresh reach the decisions: with the
    # default gates this week already fails in-sample R² (measured 0.75 < 0.95) and the budget would be blocked.
    # Convergence is not the point either (measured on a clean machine: min tail ESS 31 of 2 x 250 draws), so more
    # draws and a lower ESS floor than SMALL's.
    validation = {"holdout_weeks": 0, "thresholds": {"ess_bulk_min": 25, "ess_tail_min": 25, "r2_min": 0.5,
                                                     "mape_max_pct": 5.0}}
    # The data are the reference scenario's (1 % noise): the bounds measured on it, not the real profile's (wider,
    # measured on 7 % noise; docs/performance.md "Refresh-stability bounds").
    stability = {"max_roas_change_pct": 5.0, "max_mroas_change_pct": 5.0, "max_share_change_pp": 5.0}
    overrides = merge(SMALL, {"validation": validation, "stability": stability, "sampler": {"draws": 400},
                              "data": {"source": "files", "files": {
        "landing_dir": str(tmp_path / "landing"),
        "columns": {"date": "Week", "target": "Sales",
                    "channels": {"adwords": "Google", "facebook": "Meta", "linkedin": "LinkedIn"}},
    }}})
    path = write_scenario(tmp_path, overrides)
    cfg = load_config(path)
    frame, _ = generate(load_config(write_scenario(tmp_path, SMALL, name="truth.yaml")).data.synthetic)
    landing = landing_export(frame, cfg.data.files.columns)
    cfg.data.files.landing_dir.mkdir()
    landing.iloc[:-1].to_csv(cfg.data.files.landing_dir / "spend.csv", index=False)
    assert cli.main(["run", "--config", str(path)]) == 0
    first = capsys.readouterr().out
    assert "PASS  budget_recommendations:refresh_stability" in first, first

    landing.loc[landing.index[-1], "Sales"] *= 0.5
    landing.to_csv(cfg.data.files.landing_dir / "spend.csv", index=False)
    assert cli.main(["run", "--config", str(path)]) == 0  # a WARN: the run and its budget go through
    second = capsys.readouterr().out
    assert "FAIL  budget_recommendations:refresh_stability" in second, second
    run_id = re.search(r"- run ([0-9a-f-]{36}) -", second).group(1)
    (check,) = [e.dagster_event.event_specific_data for e in DagsterInstance.get().all_logs(
        run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.dagster_event.event_specific_data.check_name == "refresh_stability"]
    assert check.metadata["advice_compared"].value == "at the previous plan's reference spend and total"
    stability = _tables(cfg.paths.duckdb)["stability_history"]
    assert stability["flagged"].any() and stability["change_pct"].abs().max() > cfg.stability.max_roas_change_pct
    assert set(stability["previous_run_id"]) == {re.search(r"- run ([0-9a-f-]{36}) -", first).group(1)}
