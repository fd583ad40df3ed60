"""Shared fixtures: small scenarios written as real YAML files, with every output under the test's tmp_path."""

import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import yaml

from mmm_assets.core.config import MMMConfig, load_config
from mmm_assets.core.config import merged as merge  # the tests' name for the config's own deep merge
from mmm_assets.core.config.paths import DEFAULT_CONFIG, PROJECT_DIR
from mmm_assets.core.data.features import validate_features
from mmm_assets.core.synthetic.generator import GroundTruth, generate

if TYPE_CHECKING:
    from mmm_assets.core.inference.sampling import FitResult


#: Two years of the reference scenario with few draws: enough to wire and recover, quick to sample (never sampled
#: again to reach the ESS gates: each test chooses its draws). No goal plans (~6 s of budget searches per refresh):
#: the whole-graph test (system/test_graph.py) plans the default goals, core/decisions/test_goals.py every kind.
SMALL = {
    "scenario": "small",
    "data": {"synthetic": {"end_date": "2020-12-31"}},
    "sampler": {"chains": 2, "draws": 250, "tune": 250, "max_draws": None},
    "validation": {"holdout_weeks": 6, "thresholds": {"ess_bulk_min": 100, "ess_tail_min": 100, "rhat_max": 1.05}},
    "decisions": {"planner": {"goals": []}},
}


def write_scenario(folder: Path, overrides: dict | None = None, name: str = "scenario.yaml") -> Path:
    """Write the default scenario with ``overrides`` merged in; its outputs go under ``folder``."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["paths"] = {
        "duckdb": str(folder / "mmm.duckdb"),
        "models_dir": str(folder / "models"),
        "reports_dir": str(folder / "reports"),
        "alerts_log": str(folder / "alerts.jsonl"),
        "mlflow_dir": str(folder / "mlruns"),
    }
    scenario = merge(raw, overrides or {})
    path = folder / name
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    _seed_mlflow_store(Path(scenario["paths"]["mlflow_dir"]))
    return path


#: The session's temporary folders, for what the plain helpers above make once per session (set by _isolated_session).
_session_temp: pytest.TempPathFactory | None = None


@functools.cache
def _empty_mlflow_store() -> Path:
    """An MLflow SQLite store as MLflow creates it on first use (its schema, nothing logged), made once per session."""
    from mlflow import MlflowClient

    from mmm_assets.core.stores.tracking import DB_FILE

    store = _session_temp.mktemp("empty_mlflow_store") / DB_FILE
    MlflowClient(f"sqlite:///{store}").search_experiments()
    return store


def _seed_mlflow_store(folder: Path) -> None:
    """A copy of the session's empty MLflow store where a scenario's embedded store will be, unless one is there.

    MLflow creates a new store's schema by running its every migration, seconds of CPU each time; a copy of the empty
    store it made once is the same empty store (docs/performance.md, "Test suite time")."""
    from mmm_assets.core.stores.tracking import DB_FILE

    if _session_temp is None or (folder / DB_FILE).exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_empty_mlflow_store(), folder / DB_FILE)


#: A file system in memory, used for the tests' temporary files when it has room (see ``pytest_configure``).
RAM_TEMP = Path("/dev/shm")
RAM_TEMP_MIN_FREE = 8 * 2**30


def pytest_configure(config: pytest.Config) -> None:
    """Every temporary file of the suite (each tmp_path: the tests' Dagster instances, DuckDB files, MLflow stores,
    models; the child processes' too, through ``TMPDIR``) in memory when /dev/shm has room and neither ``TMPDIR``
    nor ``--basetemp`` says otherwise.

    Dagster's SQLite event log, MLflow's SQLite store, DuckDB and PostgreSQL flush every commit to disk (fsync), and
    a Dagster run commits hundreds of times: on a virtual disk shared with other jobs that is seconds a run, in memory
    nothing (docs/performance.md, "Test suite time"). No test depends on it: a process killed mid-write loses what
    it had not written either way, since what was written sits in the operating system's page cache on both."""
    if "TMPDIR" in os.environ or config.option.basetemp or not _has_room(RAM_TEMP, RAM_TEMP_MIN_FREE):
        return
    os.environ["TMPDIR"] = str(RAM_TEMP)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def _has_room(folder: Path, free_bytes: int) -> bool:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return os.access(folder, os.W_OK) and stats.f_bavail * stats.f_frsize >= free_bytes


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


ISOLATED_ENV = ("MMM_CONFIG", "MMM_DUCKDB_PATH", "MLFLOW_TRACKING_URI", "MMM_ALERT_WEBHOOK_URL")


@pytest.fixture(scope="session", autouse=True)
def _isolated_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Before any fixture, module-scoped ones included: a Dagster home of the session's own (never the developer's
    `.dagster_home`, which `make test` points DAGSTER_HOME at and a fresh clone does not have), no overrides."""
    global _session_temp
    home = tmp_path_factory.mktemp("session_dagster_home")
    shutil.copy(PROJECT_DIR / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        for name in ISOLATED_ENV:
            patch.delenv(name, raising=False)
        _session_temp = tmp_path_factory
        yield
        _session_temp = None


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own overrides, and each test has its own Dagster home: the project's
    dagster.yaml, with a copy of the session's empty instance once Dagster is imported (see `_empty_dagster_home`)."""
    for name in ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "dagster_home"
    if "dagster" in sys.modules and _session_temp is not None:
        shutil.copytree(_empty_dagster_home(), home)
    else:  # core tests, which import no Dagster: a home that has only the configuration, as Dagster starts from
        home.mkdir()
        shutil.copy(PROJECT_DIR / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))


@functools.cache
def _empty_dagster_home() -> Path:
    """A Dagster home with the project's dagster.yaml and the empty SQLite instance Dagster makes on first use
    (runs, run index and schedules, no run), made once per session.

    Dagster creates a new instance's tables and stamps their schema version on first use: 0.23-0.27 CPU seconds a
    home, against 0.07 for a copy of an empty one (docs/performance.md, "Test suite time"). Each test still starts
    from an instance with nothing in it."""
    from dagster import DagsterInstance

    home = _session_temp.mktemp("empty_dagster_home")
    shutil.copy(PROJECT_DIR / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))  # dagster.yaml's storage folder is $DAGSTER_HOME
        instance = DagsterInstance.get()
        try:
            instance.get_runs(limit=1)
        finally:
            instance.dispose()
    return home


@dataclass(frozen=True)
class SmallFit:
    """One fit of the SMALL scenario, shared by every test module that only reads it."""

    cfg: MMMConfig
    features: pd.DataFrame
    truth: GroundTruth
    result: "FitResult"
    messages: list[str]

    @property
    def mmm(self):
        return self.result.mmm


@pytest.fixture(scope="session")
def small_fit(tmp_path_factory: pytest.TempPathFactory) -> SmallFit:
    from mmm_assets.core.modelling.fitting import fit

    cfg = load_config(write_scenario(tmp_path_factory.mktemp("small_fit"), SMALL))
    frame, truth = generate(cfg.data.synthetic)
    features = validate_features(frame, cfg.channels, [], cfg.validation.min_weeks, "test")
    messages: list[str] = []
    return SmallFit(cfg, features, truth, fit(cfg, features, report=messages.append), messages)


#: The three markets of config/markets.yaml on the small scenario, planned as one budget.
THREE_MARKETS = merge(SMALL, {
    "scenario": "three_markets",
    "markets": yaml.safe_load((PROJECT_DIR / "config" / "markets.yaml").read_text())["markets"],
    "decisions": {"budget": {"scope": "all_markets"}},
})


@dataclass(frozen=True)
class MarketFits:
    """One small fit per market of THREE_MARKETS (north is the small fit itself: the same data)."""

    path: Path
    cfg: MMMConfig
    features: dict[str, pd.DataFrame]
    truths: dict[str, GroundTruth]
    models: dict[str, object]


@pytest.fixture(scope="session")
def three_market_fits(tmp_path_factory: pytest.TempPathFactory, small_fit: SmallFit) -> MarketFits:
    from mmm_assets.core.modelling.fitting import fit

    path = write_scenario(tmp_path_factory.mktemp("three_markets"), THREE_MARKETS)
    cfg = load_config(path)
    features, truths, models = {}, {}, {}
    for market in cfg.market_names:
        narrowed = cfg.for_market(market)
        if market == "north":
            features[market], truths[market], models[market] = small_fit.features, small_fit.truth, small_fit.mmm
            continue
        frame, truths[market] = generate(narrowed.data.synthetic)
        features[market] = validate_features(frame, narrowed.channels, [], narrowed.validation.min_weeks, "test")
        models[market] = fit(narrowed, features[market]).mmm
    return MarketFits(path, cfg, features, truths, models)
