"""Resources: the scenario configuration, the DuckDB database it names, and MLflow tracking.

MLflow is imported when a run first tracks, not when the definitions load: importing it (through dagster-mlflow)
takes about as long as the rest of the definitions, and the code server, the daemon and sensors never use it
(docs/performance.md, "Start-up of a process").
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING

import duckdb
import pandas as pd
from dagster import ConfigurableResource, HookDefinition, InitResourceContext, resource
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr

from mmm_assets.core.config import (
    ENV_CONFIG,
    ConfigError,
    MMMConfig,
    load_config,
)
from mmm_assets.core.config.paths import PROJECT_DIR, default_config_path
from mmm_assets.core.data.inputs import with_landing_file
from mmm_assets.core.stores.duckdb_store import (
    append_rows,
    connect,
    ensure_free_space,
    read_market,
    read_scenario,
    replace_market,
)
from mmm_assets.defs.constants import ALL_MARKETS, PARTITION_TAG

if TYPE_CHECKING:
    from dagster_mlflow.resources import MlFlow


class ScenarioResource(ConfigurableResource):
    """The scenario YAML a run uses (data source, model, sampler, gates, paths)."""

    config_path: str = Field(
        default_factory=default_config_path,
        description=f"Path of the scenario YAML; defaults to ${ENV_CONFIG} or config/default.yaml.",
    )

    landing_file: str | None = Field(
        default=None,
        description="For a files scenario: the landing file this run reads (set by the landing-folder sensor).",
    )
    _loaded: MMMConfig | None = PrivateAttr(default=None)
    _scenario: MMMConfig | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Read the scenario once per run, so every step of a run sees the same settings even if the file changes,
        narrowed to the run's market (its partition).

        A run whose output disks are (nearly) full stops here, before it fits anything.
        """
        if context.dagster_run is None:  # initialised outside a run (e.g. to clean up after a failure): nothing to read
            return
        market = context.dagster_run.tags.get(PARTITION_TAG)
        if market is None:  # a run over every market (all_markets_budget): the scenario as a whole
            self._scenario = cfg = self._read()
            ensure_free_space({"DuckDB folder (paths.duckdb)": cfg.paths.duckdb.parent},
                              cfg.operations.min_free_disk_mb)
            return
        self._loaded = cfg = self._read().for_market(market)
        ensure_free_space(
            {
                "models directory (paths.models_dir)": cfg.paths.models_dir,
                "reports directory (paths.reports_dir)": cfg.paths.reports_dir,
                "DuckDB folder (paths.duckdb)": cfg.paths.duckdb.parent,
            },
            cfg.operations.min_free_disk_mb,
        )

    def load(self) -> MMMConfig:
        """The run's scenario, narrowed to its market."""
        if self._loaded is None:
            if self._scenario is not None:
                raise ConfigError(
                    "every asset but all_markets_budget is partitioned by market: materialise one market "
                    "(partition), e.g. `python -m mmm_assets run --market <name>` or pick a partition in the UI"
                )
            raise RuntimeError("the scenario resource is read when a run starts; load() is for steps of a run")
        return self._loaded

    def load_scenario(self) -> MMMConfig:
        """The run's scenario as a whole, for a run over every market (no partition)."""
        if self._scenario is None:
            raise RuntimeError("load_scenario() is for the steps of a run over every market (all_markets_budget)")
        return self._scenario

    def store_all_markets(self, table: str, frame: pd.DataFrame) -> None:
        """Replace the scenario's rows of ``table`` (a table over every market; market column ``*``)."""
        cfg = self.load_scenario()
        with self.duckdb(cfg) as conn:
            replace_market(conn, table, frame, ALL_MARKETS, scenario=cfg.scenario)

    def _read(self) -> MMMConfig:
        cfg = load_config(self.config_path)
        return cfg if self.landing_file is None else with_landing_file(cfg, self.landing_file)

    @contextlib.contextmanager
    def duckdb(self, cfg: MMMConfig) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the scenario's DuckDB file through dagster-duckdb's resource.

        First waits up to operations.duckdb_lock_timeout_s while another process holds the file (dagster-duckdb's own
        retry is a fixed ~100 s that cannot be configured), then opens it.
        """
        cfg.paths.duckdb.parent.mkdir(parents=True, exist_ok=True)
        connect(cfg.paths.duckdb, cfg.operations.duckdb_lock_timeout_s).close()
        with DuckDBResource(database=str(cfg.paths.duckdb)).get_connection() as conn:
            yield conn

    def store(self, table: str, frame: pd.DataFrame) -> None:
        """Replace the rows of the run's scenario and market in ``table`` with ``frame`` (one transaction)."""
        cfg = self.load()
        with self.duckdb(cfg) as conn:
            replace_market(conn, table, frame, cfg.market, scenario=cfg.scenario)

    def append(self, table: str, frame: pd.DataFrame) -> None:
        """Append ``frame`` to ``table`` as rows of the run's scenario and market."""
        cfg = self.load()
        with self.duckdb(cfg) as conn:
            append_rows(conn, table, frame, scenario=cfg.scenario, market=cfg.market)

    def read_every_market(self, table: str) -> pd.DataFrame:
        """Every market's rows of ``table`` in the run's scenario, with the market column (what a pooled model
        reads)."""
        cfg = self.load()
        with self.duckdb(cfg) as conn:
            return read_scenario(conn, table, cfg.scenario)

    def read(self, table: str, columns: list[str] | None = None) -> pd.DataFrame:
        """The rows of the run's scenario and market in ``table`` (without those two columns)."""
        cfg = self.load()
        with self.duckdb(cfg) as conn:
            return read_market(conn, table, cfg.market, columns, scenario=cfg.scenario)


class LazyMlflow:
    """dagster-mlflow's tracking resource, started on first use: a run that stops before the fit (input rejected, a
    full disk) leaves no MLflow run behind. Ending a run that never started does nothing."""

    def __init__(self, start: Callable[[], MlFlow]):
        self._start = start
        self._tracking: MlFlow | None = None

    def end_run(self, *args, **kwargs) -> None:
        """What dagster-mlflow's `end_mlflow_on_run_finished` hook calls after every step: a no-op before the start."""
        if self._tracking is not None:
            self._tracking.end_run(*args, **kwargs)

    def __getattr__(self, name: str):
        if self._tracking is None:
            self._tracking = self._start()
        return getattr(self._tracking, name)


@resource(required_resource_keys={"scenario"})
def mlflow_tracking_for_scenario(context: InitResourceContext) -> LazyMlflow:
    """dagster-mlflow's tracking resource, configured from the run's scenario: one MLflow run per Dagster run that
    reaches a step using it (see `LazyMlflow`).

    The experiment is created with the project's artifact folder first (embedded store), and the tracking URI,
    which may hold credentials, is read from the environment here rather than put in run config.
    """
    from mmm_assets.core.stores import tracking

    client = tracking.client_for(context.resources.scenario.load())  # an unreachable server stops the run here
    return LazyMlflow(functools.partial(_start_tracking, context, client))


def _start_tracking(context: InitResourceContext, client) -> MlFlow:
    from dagster_mlflow.resources import MlFlow

    from mmm_assets.core.stores import tracking

    cfg = context.resources.scenario.load()
    tracking.ensure_experiment(client, cfg)
    config = {
        "experiment_name": cfg.operations.mlflow_experiment,
        "mlflow_tracking_uri": tracking.tracking_uri(cfg),
        "extra_tags": {
            "scenario": cfg.scenario, "market": cfg.market, "code_version": tracking.code_version(PROJECT_DIR)
        },
    }
    adapted = SimpleNamespace(
        log=context.log, dagster_run=context.dagster_run, run_id=context.run_id, resource_config=config
    )
    # MLflow's set_tracking_uri (called by MlFlow) exports MLFLOW_TRACKING_URI for subprocesses; put it back as it
    # was, or the rest of the run takes the embedded store for a remote server (run links to the SQLite file).
    exported = os.environ.get("MLFLOW_TRACKING_URI")
    tracking_resource = MlFlow(adapted)
    if exported is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = exported
    return tracking_resource


def _end_mlflow_run(context, event_list):
    """dagster-mlflow's own hook, imported on its first call (after a run's first step), not at load."""
    from dagster_mlflow import end_mlflow_on_run_finished as library_hook

    return library_hook.hook_fn(context, event_list)


#: dagster-mlflow's `end_mlflow_on_run_finished` (same name, resource and code): ends the run's MLflow run as failed
#: after a failed step, and as finished after the job's last step.
end_mlflow_on_run_finished = HookDefinition(
    name="end_mlflow_on_run_finished", hook_fn=_end_mlflow_run, required_resource_keys={"mlflow"}
)
