"""The identification checks on mmm_features, in real runs of the feature assets (no fit): WARN lets the run go on
and says which channels, ERROR stops what comes after; every finding lands in DuckDB table `data_adequacy`."""

import duckdb
import numpy as np
from dagster import AssetCheckSeverity, DagsterEventType, DagsterInstance, asset

from mmm_assets.core.config import DEFAULT_MARKET, load_config
from mmm_assets.core.evaluation import adequacy
from mmm_assets.definitions import defs
from mmm_assets.defs.alerts import _check_alert
from mmm_assets.defs.features import ADEQUACY_TABLE, mmm_features, mmm_features_adequacy
from mmm_assets.defs.ingest import marketing_spend
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import ScenarioResource
from mmm_assets_tests.defs.conftest import landing_frame
from mmm_assets_tests.system.runs import materialize_market


@asset(deps=[mmm_features], partitions_def=MARKETS)
def after_features() -> None:
    """Stands in for the fit: runs only when no blocking check on the features failed with ERROR."""


def _run(config, folder, frame):
    frame.to_csv(folder / "spend.csv", index=False)
    resource = ScenarioResource(config_path=str(config))
    return materialize_market(
        [marketing_spend, mmm_features, mmm_features_adequacy, after_features],
        resources={"scenario": resource}, raise_on_error=False,
    )


def _evaluations(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_collinear_channels_warn_name_both_and_the_run_goes_on(landing):
    config, folder = landing
    frame = landing_frame(config)
    noise = np.random.default_rng(0).normal(0, 500, len(frame))
    result = _run(config, folder, frame.assign(Facebook=(frame["Google Ads"] * 1.5 + noise).round(2)))
    assert result.success
    evaluations = _evaluations(result)
    assert set(evaluations) >= set(adequacy.CHECKS)
    correlation = evaluations[adequacy.CORRELATION]
    assert not correlation.passed and correlation.severity == AssetCheckSeverity.WARN
    assert correlation.metadata["value"].value > 0.99 and correlation.metadata["threshold"].value == 0.8
    assert "adwords and facebook" in correlation.metadata["findings"].value
    assert "](data:image/png;base64," in correlation.metadata["heatmap"].value
    assert all(evaluations[c].passed for c in (adequacy.WEEKS, adequacy.VARIATION, adequacy.ZEROS))
    assert result.asset_materializations_for_node("after_features")  # a WARN does not stop the fit

    alert = _check_alert(load_config(config), result.run_id, correlation)  # what the alert sensor would send
    assert "adwords and facebook" in alert.message and "data:image" not in alert.message
    cfg = load_config(config)
    with duckdb.connect(str(cfg.paths.duckdb), read_only=True) as conn:
        stored = conn.execute(f"SELECT * FROM {ADEQUACY_TABLE}").df()
    assert set(stored["scenario"]) == {"landing"} and set(stored["market"]) == {DEFAULT_MARKET}
    assert {"check", "subject", "value", "threshold", "severity", "passed", "message"} <= set(stored.columns)
    assert set(stored.loc[~stored["passed"], "subject"]) == {"adwords & facebook", "adwords", "facebook"}


def test_a_channel_whose_spend_never_changes_stops_the_run_before_the_fit(landing):
    config, folder = landing
    frame = landing_frame(config)
    result = _run(config, folder, frame.assign(LinkedIn=25_000.0))
    variation = _evaluations(result)[adequacy.VARIATION]
    assert not variation.passed and variation.severity == AssetCheckSeverity.ERROR and variation.blocking
    assert "linkedin: spend is 25000 every week, it never changes" in variation.metadata["findings"].value
    assert not result.success and not result.asset_materializations_for_node("after_features")
    failures = DagsterInstance.get().all_logs(result.run_id, of_type=DagsterEventType.STEP_FAILURE)
    assert [e.step_key for e in failures] == ["mmm_features_adequacy"]


def test_the_checks_are_registered_blocking_and_per_market():
    specs = {spec.name: spec for checks in defs.asset_checks for spec in checks.check_specs}
    for name in adequacy.CHECKS:
        assert specs[name].blocking and specs[name].asset_key.to_user_string() == "mmm_features", name
        assert specs[name].partitions_def == MARKETS
    job = defs.resolve_job_def("weekly_refresh")
    assert set(adequacy.CHECKS) <= {key.name for key in job.asset_layer.asset_graph.asset_check_keys}
