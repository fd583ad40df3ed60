"""The budget across markets in Dagster: the sensor waits for the last market's refresh, the job plans from every
market's champion (stand-in champion assets holding real small fits), and the table lands under market '*'."""

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

from mmm_assets.core.modelling.persistence import save_model
from mmm_assets.core.records import Champion
from mmm_assets.defs.constants import ALL_MARKETS, JOB
from mmm_assets.defs.cross_market import all_markets_budget, all_markets_budget_sensor, plan_all_markets
from mmm_assets.defs.partitions import MARKETS, register_markets
from mmm_assets.defs.resources import ScenarioResource
from mmm_assets_tests.defs.conftest import evaluate_sensor

pytestmark = pytest.mark.slow


def _definitions(fits, folder) -> Definitions:
    """A weekly_refresh stand-in whose champion is each market's small fit, saved as a model file."""
    paths = {m: save_model(model, folder / f"{m}.nc") for m, model in fits.models.items()}

    @asset(name="mmm_champion", partitions_def=MARKETS)
    def champion(context) -> Champion:
        market = context.partition_key
        return Champion(str(paths[market]), f"small.{market}", "1", "data", "run", "source")

    return Definitions(
        assets=[champion, all_markets_budget],
        jobs=[define_asset_job(JOB, selection=[champion]), plan_all_markets],
        resources={"scenario": ScenarioResource(config_path=str(fits.path)), "io_manager": FilesystemIOManager()},
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
    waiting = evaluate_sensor(all_markets_budget_sensor, runs[-1], DagsterEventType.RUN_SUCCESS)
    assert isinstance(waiting, SkipReason) and "west have no champion yet" in waiting.skip_message

    runs.append(refresh.execute_in_process(run_config=run_config, instance=instance, partition_key="west").run_id)
    request = evaluate_sensor(all_markets_budget_sensor, runs[-1], DagsterEventType.RUN_SUCCESS)
    assert request.run_key.startswith("all_markets:")
    planned = defs.resolve_job_def("plan_all_markets").execute_in_process(run_config=request.run_config,
                                                                          instance=instance)
    assert planned.success
    (event,) = planned.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["uplift_pct"].value > 0 and metadata["method"].text.startswith("scipy SLSQP across markets")
    with duckdb.connect(str(fits.cfg.paths.duckdb), read_only=True) as conn:
        table = conn.execute('SELECT * FROM "all_markets_budget"').df()
    assert set(table["market"]) == {ALL_MARKETS} and set(table["scenario"]) == {fits.cfg.scenario}
    assert set(table["market_name"]) == set(fits.cfg.market_names)
    assert len(table) == 9 and table["joint_spend"].sum() == pytest.approx(table["current_spend"].sum(), rel=1e-3)
