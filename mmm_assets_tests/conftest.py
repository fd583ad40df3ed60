"""Shared fixtures: small scenarios written as real YAML files, with every output under the test's tmp_path."""

import copy
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mmm_assets.core.config import MMMConfig, load_config
from mmm_assets.defs.resources import DEFAULT_CONFIG, PROJECT_DIR


def merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


#: Two years of the reference scenario with few draws: enough to wire and recover, quick to sample.
SMALL = {
    "scenario": "small",
    "data": {"synthetic": {"end_date": "2020-12-31"}},
    "sampler": {"chains": 2, "draws": 250, "tune": 250},
    "validation": {"holdout_weeks": 6, "thresholds": {"ess_bulk_min": 100, "ess_tail_min": 100, "rhat_max": 1.05}},
}


def write_scenario(folder: Path, overrides: dict | None = None, name: str = "scenario.yaml") -> Path:
    """Write the default scenario with ``overrides`` merged in; its outputs go under ``folder``."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["paths"] = {"duckdb": str(folder / "mmm.duckdb"), "models_dir": str(folder / "models")}
    path = folder / name
    path.write_text(yaml.safe_dump(merge(raw, overrides or {}), sort_keys=False))
    return path


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(overrides: dict | None = None, name: str = "scenario.yaml") -> Path:
        return write_scenario(tmp_path, overrides, name)

    return write


@pytest.fixture
def small_config(write_config) -> Callable[..., MMMConfig]:
    def make(overrides: dict | None = None) -> MMMConfig:
        return load_config(write_config(merge(SMALL, overrides or {})))

    return make


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own overrides, and each test has its own Dagster home."""
    monkeypatch.delenv("MMM_CONFIG", raising=False)
    monkeypatch.delenv("MMM_DUCKDB_PATH", raising=False)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_DIR / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
