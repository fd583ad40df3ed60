"""Scenarios are namespaces: two scenarios naming a market alike share a DuckDB file, an MLflow store and a Dagster
instance without touching each other's champion, table rows or histories."""

from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance

from mmm_assets import cli
from mmm_assets.core.config import DEFAULT_MARKET, SCENARIO_COLUMN, load_config
from mmm_assets.core.config.paths import DEFAULT_CONFIG
from mmm_assets.core.stores import tracking
from mmm_assets.core.stores.duckdb_store import read_table
from mmm_assets_tests.conftest import merge
from mmm_assets_tests.system.test_faults import TINY

#: The default goal plans, which TINY leaves out: their tables' rows are compared too.
_GOALS = {"decisions": {"planner": {"goals": yaml.safe_load(DEFAULT_CONFIG.read_text())["decisions"]["planner"]["goals"]}}}
#: Another brand's data on the same machine: its own scenario name and seed, the same (default) market name.
BRAND_A = merge(TINY, {"scenario": "brand_a", **_GOALS})
BRAND_B = merge(TINY, {"scenario": "brand_b", "data": {"synthetic": {"seed": 11}}, **_GOALS})


def _rows_of(conn: duckdb.DuckDBPyConnection, scenario: str) -> dict[str, pd.DataFrame]:
    """Every table's rows of ``scenario``, in a stable order."""
    tables = [name for (name,) in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    rows = {}
    for table in tables:
        frame = read_table(conn, table)
        assert SCENARIO_COLUMN in frame.columns, f"table {table} has no scenario column"
        frame = frame[frame[SCENARIO_COLUMN] == scenario]
        rows[table] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return rows


def _stability_metadata(instance: DagsterInstance, run_id: str) -> dict:
    (evaluation,) = [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.dagster_event.event_specific_data.check_name == "refresh_stability"
    ]
    return {key: value.value for key, value in evaluation.metadata.items()}


@pytest.mark.slow
def test_two_scenarios_sharing_a_market_keep_their_own_champion_and_rows(write_config, tmp_path: Path) -> None:
    first, second = write_config(BRAND_A, "brand_a.yaml"), write_config(BRAND_B, "brand_b.yaml")
    cfg_a, cfg_b = (load_config(p).for_market(DEFAULT_MARKET) for p in (first, second))
    assert cfg_a.paths.duckdb == cfg_b.paths.duckdb and cfg_a.paths.mlflow_dir == cfg_b.paths.mlflow_dir

    assert cli.main(["run", "--config", str(first)]) == 0
    with duckdb.connect(str(cfg_a.paths.duckdb), read_only=True) as conn:
        before = _rows_of(conn, "brand_a")
    assert cli.main(["run", "--config", str(second)]) == 0

    client = tracking.client_for(cfg_a)
    champions = {cfg.scenario: tracking.champion(client, cfg) for cfg in (cfg_a, cfg_b)}
    assert {s: c.name for s, c in champions.items()} == {
        "brand_a": "mmm_assets.brand_a.national", "brand_b": "mmm_assets.brand_b.national"
    }
    assert all(str(c.version) == "1" for c in champions.values())  # the second fit is no version of the first

    with duckdb.connect(str(cfg_a.paths.duckdb), read_only=True) as conn:
        after_a, after_b = _rows_of(conn, "brand_a"), _rows_of(conn, "brand_b")
    assert set(before) == set(after_a) == set(after_b)
    for table, rows in before.items():
        assert len(rows), f"brand_a wrote no rows to {table}"
        pd.testing.assert_frame_equal(after_a[table], rows, obj=table)  # untouched by brand_b's refresh
        assert len(after_b[table]), f"brand_b's rows missing from {table}"
    for history in ("validation_history", "channel_roas_history", "budget_recommendations_history"):
        assert set(after_b[history]["market"]) == {DEFAULT_MARKET}
    assert not after_b["channel_roas"]["roas_mean"].equals(after_a["channel_roas"]["roas_mean"])

    # brand_b's stability check did not compare its ROAS with brand_a's: it is brand_b's first champion
    instance = DagsterInstance.get()
    runs = {run.tags["scenario"]: run for run in instance.get_runs()}
    assert set(runs) == {"brand_a", "brand_b"}
    assert all(run.tags["dagster/partition"] == DEFAULT_MARKET for run in runs.values())
    assert _stability_metadata(instance, runs["brand_b"].run_id)["previous_run_id"] == "none (first champion)"

    # Dagster's own history is per asset and partition: both scenarios' materialisations of `national`, newest
    # first (the runs' scenario tags tell them apart); the IO manager keeps one stored output per asset and
    # partition, the last run's, which only that run's later steps read.
    history = instance.fetch_materializations(AssetKey("mmm_posterior"), limit=10).records
    assert [r.run_id for r in history] == [runs["brand_b"].run_id, runs["brand_a"].run_id]
    assert (Path(instance.storage_directory()) / "mmm_posterior" / DEFAULT_MARKET).is_file()
