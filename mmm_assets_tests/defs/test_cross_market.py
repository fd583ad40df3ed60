"""Every market at once in Dagster: the sensor waits for the last market's refresh, the job rolls the markets up and
plans one budget from every market's champion (stand-in champion assets holding real small fits), and the tables
land under market '*'; under scope market the budget is skipped and the roll-up still runs."""

import duckdb
import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    Definitions,
    FilesystemIOManager,
    SkipReason,
    asset,
    define_asset_job,
)

from mmm_assets.core.decisions.rollup import ALL_CHANNELS_ROW, ALL_MARKETS_ROW
from mmm_assets.core.modelling.persistence import save_model
from mmm_assets.core.records import Champion
from mmm_assets.core.stores.tracking import model_name
from mmm_assets.defs.constants import ALL_MARKETS, JOB
from mmm_assets.defs.cross_market import all_markets_budget, all_markets_sensor, markets_rollup, plan_all_markets
from mmm_assets.defs.decisions import window_contributions
from mmm_assets.defs.partitions import MARKETS, register_markets
from mmm_assets.defs.resources import ScenarioResource
from mmm_assets_tests.defs.conftest import evaluate_sensor

pytestmark = pytest.mark.slow


def _definitions(fits, folder, config_path=None, foreign=(), version="1") -> Definitions:
    """A weekly_refresh stand-in whose champion is each market's small fit, saved as a model file, registered under
    the scenario's model name (as ``version``), with its window_contributions; a market in ``foreign`` (or not the
    scenario's) gets another scenario's champion. Job "champion_only" promotes without the draws."""
    paths = {m: save_model(model, folder / f"{m}.nc") for m, model in fits.models.items()}

    @asset(name="mmm_champion", partitions_def=MARKETS)
    def champion(context) -> Champion:
        market = context.partition_key
        if market in paths and market not in foreign:
            name = model_name(fits.cfg.for_market(market))
            return Champion(str(paths[market]), name, version, "data", "run", "source")
        return Champion(str(paths["north"]), f"mmm_assets.another_scenario.{market}", "1", "data", "run", "source")

    return Definitions(
        assets=[champion, window_contributions, markets_rollup, all_markets_budget],
        jobs=[define_asset_job(JOB, selection=[champion, window_contributions]),
              define_asset_job("champion_only", selection=[champion]), plan_all_markets],
        resources={"scenario": ScenarioResource(config_path=str(config_path or fits.path)),
                   "io_manager": FilesystemIOManager()},
    )


def test_the_last_market_refresh_starts_one_budget_across_markets(three_market_fits, tmp_path):
    fits = three_market_fits
    defs = _definitions(fits, tmp_path)
    instance = DagsterInstance.get()
    register_markets(instance, fits.cfg.market_names)
    run_config = {"resources": {"scenario": {"config": {"config_path": str(fits.path)}}}}
    refresh = defs.resolve_job_def(JOB)
    runs = [refresh.execute_in_process(run_config=run_config, instance=instance, partition_key=m).run_id
            for m in fits.cfg.market_names[:2]]
    waiting = evaluate_sensor(all_markets_sensor, runs[-1], DagsterEventType.RUN_SUCCESS)
    assert isinstance(waiting, SkipReason) and "west have no champion yet" in waiting.skip_message

    runs.append(refresh.execute_in_process(run_config=run_config, instance=instance, partition_key="west").run_id)
    # a market of another scenario on the same instance: not the scenario's, so not rolled up nor planned
    register_markets(instance, ["east"])
    refresh.execute_in_process(run_config=run_config, instance=instance, partition_key="east")
    request = evaluate_sensor(all_markets_sensor, runs[-1], DagsterEventType.RUN_SUCCESS)
    assert request.run_key.startswith("all_markets:")
    planned = defs.resolve_job_def("plan_all_markets").execute_in_process(run_config=request.run_config,
                                                                          instance=instance)
    assert planned.success
    events = {e.asset_key.to_user_string(): e for e in planned.get_asset_materialization_events()}
    assert sorted(events) == ["all_markets_budget", "markets_rollup"]
    metadata = events["all_markets_budget"].materialization.metadata
    assert metadata["uplift_pct"].value > 0 and metadata["method"].text.startswith("scipy SLSQP across markets")
    with duckdb.connect(str(fits.cfg.paths.duckdb), read_only=True) as conn:
        table = conn.execute('SELECT * FROM "all_markets_budget"').df()
    assert set(table["market"]) == {ALL_MARKETS} and set(table["scenario"]) == {fits.cfg.scenario}
    assert set(table["market_name"]) == set(fits.cfg.market_names)
    assert len(table) == 9 and table["joint_spend"].sum() == pytest.approx(table["current_spend"].sum(), rel=1e-3)
    rollup = conn_rows(fits.cfg.paths.duckdb, "markets_rollup")
    assert set(rollup["market"]) == {ALL_MARKETS}
    assert set(rollup["market_name"]) == {*fits.cfg.market_names, ALL_MARKETS_ROW}
    assert len(rollup) == 4 * 4 and set(rollup["channel"]) == {*fits.models["north"].channel_columns, ALL_CHANNELS_ROW}
    assert events["markets_rollup"].materialization.metadata["markets"].value == 3


def conn_rows(path, table: str):
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(f'SELECT * FROM "{table}"').df()


def test_scope_market_rolls_up_without_a_budget_across_markets(three_market_fits, tmp_path):
    """Under scope market the job still rolls the markets up; the budget across markets is skipped, not failed."""
    import yaml

    fits = three_market_fits
    raw = yaml.safe_load(fits.path.read_text())
    raw["decisions"]["budget"]["scope"] = "market"
    raw["paths"]["duckdb"] = str(tmp_path / "scope_market.duckdb")
    path = tmp_path / "scope_market.yaml"
    path.write_text(yaml.safe_dump(raw))
    defs = _definitions(fits, tmp_path, path)
    instance = DagsterInstance.get()
    register_markets(instance, fits.cfg.market_names)
    run_config = {"resources": {"scenario": {"config": {"config_path": str(path)}}}}
    for market in fits.cfg.market_names:
        defs.resolve_job_def(JOB).execute_in_process(run_config=run_config, instance=instance, partition_key=market)
    planned = defs.resolve_job_def("plan_all_markets").execute_in_process(run_config=run_config, instance=instance)
    assert planned.success
    assert [e.asset_key.to_user_string() for e in planned.get_asset_materialization_events()] == ["markets_rollup"]
    with duckdb.connect(str(tmp_path / "scope_market.duckdb"), read_only=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "markets_rollup" in tables and "all_markets_budget" not in tables


def test_a_market_whose_champion_is_another_scenarios_model_fails_the_plan_by_name(three_market_fits, tmp_path):
    """The same market name refreshed last under another scenario: its champion is not this scenario's model."""
    fits = three_market_fits
    defs = _definitions(fits, tmp_path, foreign=("west",))
    instance = DagsterInstance.get()
    register_markets(instance, fits.cfg.market_names)
    run_config = {"resources": {"scenario": {"config": {"config_path": str(fits.path)}}}}
    for market in fits.cfg.market_names:
        defs.resolve_job_def(JOB).execute_in_process(run_config=run_config, instance=instance, partition_key=market)
    planned = defs.resolve_job_def("plan_all_markets").execute_in_process(run_config=run_config, instance=instance,
                                                                          raise_on_error=False)
    assert not planned.success
    failure = next(e for e in planned.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.message
    assert "market(s) west is another scenario's model (west: mmm_assets.another_scenario.west instead of " in message
    assert "refresh those markets under this scenario" in message


def test_a_market_whose_draws_are_not_its_champions_fails_the_roll_up_by_name(three_market_fits, tmp_path):
    """A champion promoted without its window_contributions (e.g. materialised alone in the UI): the roll-up would
    sum another model's draws, so it fails and says which market to refresh."""
    fits = three_market_fits
    instance = DagsterInstance.get()
    register_markets(instance, fits.cfg.market_names)
    run_config = {"resources": {"scenario": {"config": {"config_path": str(fits.path)}}}}
    refresh = _definitions(fits, tmp_path / "v1").resolve_job_def(JOB)
    for market in fits.cfg.market_names:
        refresh.execute_in_process(run_config=run_config, instance=instance, partition_key=market)
    newer = _definitions(fits, tmp_path / "v2", version="2")
    newer.resolve_job_def("champion_only").execute_in_process(run_config=run_config, instance=instance,
                                                               partition_key="west")
    planned = newer.resolve_job_def("plan_all_markets").execute_in_process(run_config=run_config, instance=instance,
                                                                           raise_on_error=False)
    assert not planned.success
    failure = next(e for e in planned.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.message
    west = model_name(fits.cfg.for_market("west"))
    assert f"market(s) west are not their champion's (west: {west} v1, the champion is {west} v2)" in message
    assert "refresh those markets" in message
