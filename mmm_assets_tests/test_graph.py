"""The whole graph, wired: a passing refresh, a refresh blocked by its gates, and rejected landing files."""

import re

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from mmm_assets import cli
from mmm_assets.core.config import load_config
from mmm_assets.core.generator import generate, landing_export
from mmm_assets.definitions import ASSETS
from mmm_assets.defs.features import mmm_features
from mmm_assets.defs.ingest import marketing_spend
from mmm_assets.defs.resources import ScenarioResource
from mmm_assets_tests.conftest import SMALL, merge

ALL_ASSETS = [a.key.to_user_string() for a in ASSETS]
DECISIONS = ["channel_contributions", "channel_roas", "response_curves", "optimized_budget", "budget_scenarios",
             "budget_recommendations", "mmm_report"]


def _materialized(instance: DagsterInstance) -> set[str]:
    return {name for name in ALL_ASSETS if instance.get_latest_materialization_event(AssetKey(name))}


def _tables(path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(path), read_only=True) as conn:
        names = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return {n: conn.execute(f'SELECT * FROM "{n}"').df() for n in names}


@pytest.mark.slow
def test_whole_graph_materialises_and_passes_its_gates(write_config, capsys):
    path = write_config(SMALL)
    cfg = load_config(path)
    assert cli.main(["run", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "RESULT: success" in out and "checks: 13/13 passed" in out, out
    assert "recovered vs true parameters" in out
    assert _materialized(DagsterInstance.get()) == set(ALL_ASSETS)

    tables = _tables(cfg.paths.duckdb)
    assert len(tables["mmm_features"]) == 104
    history = tables["validation_history"]
    assert history["passed"].all()
    assert {"in_sample_r2", "holdout_mape_pct", "max_rhat", "saturation_lam_relative_error.adwords"} <= set(
        history["metric"]
    )
    contributions = tables["channel_contributions"]
    assert len(contributions) == 104 * (len(cfg.channels) + 2)
    assert len(list(cfg.paths.models_dir.glob("*.nc"))) == 1

    budget = tables["optimized_budget"]
    spent, total = budget["optimized_spend"].sum(), budget["current_spend"].sum()
    assert abs(spent - total) <= cfg.decisions.budget.total_tolerance * total
    assert (budget["optimized_spend"] >= budget["lower_bound"] * (1 - 1e-6)).all()
    assert (budget["optimized_spend"] <= budget["upper_bound"] * (1 + 1e-6)).all()
    assert set(tables["budget_recommendations"]["action"]) <= {"INCREASE", "HOLD", "REDUCE"}
    assert len(tables["budget_scenarios"]["level"].unique()) == len(cfg.decisions.budget.scenario_levels)
    assert set(tables["channel_roas"]["channel"]) == set(cfg.channels)
    assert tables["response_curves"]["is_current"].sum() == len(cfg.channels)

    (report,) = cfg.paths.reports_dir.iterdir()
    page = (report / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 7  # fit, contributions, roas, curves, allocation, scenarios, recovery
    assert {"fit.png", "roas.png", "allocation.png", "roas.csv", "allocation.json", "recommendations.csv"} <= {
        p.name for p in report.iterdir()
    }


@pytest.mark.slow
def test_undersampled_model_fails_its_gates_and_blocks_downstream(write_config, capsys):
    path = write_config(merge(SMALL, {"sampler": {"chains": 2, "draws": 15, "tune": 15},
                                      "validation": {"thresholds": {"ess_bulk_min": 400, "rhat_max": 1.01}}}))
    cfg = load_config(path)
    assert cli.main(["run", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "RESULT: FAILED" in out
    assert "FAIL  mmm_validation:min_ess_bulk" in out
    assert "not materialised (blocked by a failed check or an upstream failure): " + ", ".join(
        sorted(DECISIONS)) in out
    materialized = _materialized(DagsterInstance.get())
    assert "mmm_validation" in materialized and not materialized & set(DECISIONS)
    tables = _tables(cfg.paths.duckdb)
    assert not set(tables) & {"channel_contributions", "channel_roas", "optimized_budget", "budget_scenarios"}
    assert not cfg.paths.reports_dir.exists()
    failed = tables["validation_history"].query("metric == 'min_ess_bulk'")
    assert not failed["passed"].any()


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
    return materialize([marketing_spend, mmm_features], resources={"scenario": resource}, raise_on_error=False)


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
    stored = _tables(cfg.paths.duckdb)["mmm_features"]
    pd.testing.assert_frame_equal(stored, frame[stored.columns], check_dtype=False)
