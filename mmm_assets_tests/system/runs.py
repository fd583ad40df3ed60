"""Dagster runs of one market for the system tests (kept out of the shared conftest, so core tests load no Dagster)."""

from dagster import DagsterInstance, ExecuteInProcessResult, materialize

from mmm_assets.core.config import DEFAULT_MARKET
from mmm_assets.defs.partitions import register_markets


def _instance_with(market: str) -> DagsterInstance:
    """The test's own instance (the session's in module-scoped fixtures), with ``market`` registered."""
    instance = DagsterInstance.get()
    register_markets(instance, [market])
    return instance


def materialize_market(assets: list, market: str = DEFAULT_MARKET, **kwargs) -> ExecuteInProcessResult:
    """``dagster.materialize`` of one market's partition (the market registered first)."""
    return materialize(assets, instance=_instance_with(market), partition_key=market, **kwargs)


def execute_market(job, run_config: dict, market: str = DEFAULT_MARKET, **kwargs) -> ExecuteInProcessResult:
    """One market's run of ``job`` (the market registered first)."""
    return job.execute_in_process(run_config=run_config, instance=_instance_with(market), partition_key=market, **kwargs)
