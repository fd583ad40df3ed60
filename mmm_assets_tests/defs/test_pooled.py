"""A pooled scenario's shared files (defs/pooled.py), here the holdout forecasts: a builder killed in the middle or a
disk that fills while the file is written leaves nothing under the file's name, and the next run builds it."""

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from mmm_assets.core.config import MARKET_COLUMN
from mmm_assets.core.modelling import persistence, pooling
from mmm_assets.core.stores.duckdb_store import DiskSpaceError
from mmm_assets.defs import pooled

WEEKS = 4
#: A process that takes the holdout's build lock, as the run that builds it does, and is killed while it builds.
BUILDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mmm_assets.defs.pooled import _build_once

    def build(target):
        print("building", flush=True)
        time.sleep(600)

    _build_once(Path(sys.argv[1]), print, build)
""")


def _cfg(models_dir: Path) -> SimpleNamespace:
    return SimpleNamespace(scenario="s", paths=SimpleNamespace(models_dir=models_dir),
                           operations=SimpleNamespace(min_free_disk_mb=0.0))


def _forecasts(cfg, frames, weeks, report):
    """Stands in for the pooled holdout refit: each market's forecast of its last ``weeks`` weeks."""
    frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=weeks, freq="W-MON"), "forecast": 1.0})
    return {"north": frame, "south": frame}, None


@pytest.fixture
def no_refit(monkeypatch):
    """The holdout file's build without its refit and without a DuckDB file of features."""
    monkeypatch.setattr(pooled, "_market_frames", lambda scenario, cfg: {})
    monkeypatch.setattr(pooling, "pooled_version", lambda cfg, frames: "v1")
    monkeypatch.setattr(pooling, "holdout_forecast_pooled", _forecasts)


def _files(folder: Path) -> list[str]:
    """What the folder holds besides the build locks."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_a_disk_that_fills_while_the_holdout_forecasts_are_written_leaves_no_file(tmp_path, no_refit, monkeypatch):
    cfg = _cfg(tmp_path)

    def half_then_full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(persistence, "_write_all", half_then_full)
        with pytest.raises(DiskSpaceError, match="had no room for a file being written"):
            pooled.pooled_holdout_file(None, cfg, WEEKS, print)
    assert _files(tmp_path / "pooled") == []  # neither the file nor its half-written temporary
    path = pooled.pooled_holdout_file(None, cfg, WEEKS, print)  # the next run writes it whole
    assert _files(tmp_path / "pooled") == [path.name]
    assert sorted(pd.read_parquet(path)[MARKET_COLUMN].unique()) == ["north", "south"]


def test_a_builder_killed_in_the_middle_never_blocks_the_next_run(tmp_path, no_refit):
    cfg = _cfg(tmp_path)
    path = tmp_path / "pooled" / f"pooled_s_v1_holdout{WEEKS}.parquet"
    child = subprocess.Popen([sys.executable, "-c", BUILDER, str(path)], stdout=subprocess.PIPE, text=True)
    said: list[str] = []
    try:
        assert child.stdout.readline().strip() == "building"
        # a run that finds the build under way leaves it to the builder and goes on (pooled_holdout)
        assert pooled.pooled_holdout_file(None, cfg, WEEKS, said.append, wait=False) == path
        assert said == [f"leaving it to pid {child.pid} building {path}"] and not path.exists()
    finally:
        child.kill()  # SIGKILL: no handler, no clean-up
        child.wait()
    said.clear()
    # mmm_validation's wait: the lock went with the killed process, so this run builds the file at once
    assert pooled.pooled_holdout_file(None, cfg, WEEKS, said.append) == path and said == []
    assert _files(tmp_path / "pooled") == [path.name] and len(pd.read_parquet(path)) == 2 * WEEKS
