"""Resources: the scenario configuration and the DuckDB database it names."""


import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
from dagster import ConfigurableResource, InitResourceContext
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr

from mmm_assets.core.config import ENV_CONFIG, MMMConfig, load_config

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_DIR / "config" / "default.yaml"


def default_config_path() -> str:
    return os.environ.get(ENV_CONFIG) or str(DEFAULT_CONFIG)


class ScenarioResource(ConfigurableResource):
    """The scenario YAML a run uses (data source, model, sampler, gates, paths)."""

    config_path: str = Field(
        default_factory=default_config_path,
        description=f"Path of the scenario YAML; defaults to ${ENV_CONFIG} or config/default.yaml.",
    )

    _loaded: MMMConfig | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Read the scenario once per run, so every step of a run sees the same settings even if the file changes."""
        self._loaded = load_config(self.config_path)

    def load(self) -> MMMConfig:
        return self._loaded if self._loaded is not None else load_config(self.config_path)

    @contextlib.contextmanager
    def duckdb(self, cfg: MMMConfig) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the scenario's DuckDB file, through dagster-duckdb's resource."""
        cfg.paths.duckdb.parent.mkdir(parents=True, exist_ok=True)
        with DuckDBResource(database=str(cfg.paths.duckdb)).get_connection() as conn:
            yield conn
