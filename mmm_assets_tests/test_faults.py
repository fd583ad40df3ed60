"""Faults survived, on real components: killed writers, an unreachable MLflow, a locked DuckDB file, two refreshes
at once and a full disk. Each test shows the previous state intact afterwards. (A sampler that does not converge
is caught by the gates: test_graph.py::test_a_failing_refresh_is_blocked_and_keeps_the_last_good_state.)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RetryPolicy

from mmm_assets import cli
from mmm_assets.core import storage, tracking
from mmm_assets.core.config import DEFAULT_MARKET, MMMConfig, load_config
from mmm_assets.core.storage import read_table, replace_market
from mmm_assets.definitions import defs
from mmm_assets.defs.features import TABLE, mmm_features
from mmm_assets.defs.ingest import marketing_spend
from mmm_assets.defs.resources import PROJECT_DIR, ScenarioResource
from mmm_assets_tests.conftest import execute_market, materialize_market
from mmm_assets_tests.test_bad_inputs import errors

#: One year of the reference scenario, the default sampler (numpyro, its compiled sampler cached across processes)
#: and lenient gates: a whole refresh that passes in about 17 s (26 s compiling into an empty cache; with PyMC's own
#: sampler 27 s and 54 s).
TINY = {
    "scenario": "tiny",
    "data": {"synthetic": {"end_date": "2019-12-31"}},
    "sampler": {"chains": 2, "draws": 150, "tune": 300},
    "validation": {"holdout_weeks": 0, "min_weeks": 26, "thresholds": {
        "r2_min": 0.5, "mape_max_pct": 50, "rhat_max": 2, "ess_bulk_min": 1, "ess_tail_min": 1,
        "divergences_max": 1000, "lam_rel_error_max": 1, "alpha_abs_error_max": 1}},
    "decisions": {"budget": {"scenario_levels": [1.0]}, "response_curve_points": 5},
}
KILLS_TABLE = 6
KILLS_FILES = 3


def _python(code: str, *args: str) -> subprocess.Popen:
    """A child Python process running ``code``, its stdout as text lines."""
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, cwd=PROJECT_DIR)


def _kill_mid_work(child: subprocess.Popen, delay_s: float) -> list[str]:
    """Wait for the child's first line, SIGKILL it ``delay_s`` later; every line it printed."""
    lines = [child.stdout.readline().strip()]
    time.sleep(delay_s)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL, f"the child ended by itself: {lines}"
    return lines + child.stdout.read().split()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_errors(run_id: str) -> str:
    """Every error message of a run recorded in the instance, innermost causes, one per line."""
    entries = DagsterInstance.get().all_logs(run_id)
    return "\n".join(message for _, message in errors(e.dagster_event for e in entries if e.dagster_event))


def _last_run_id() -> str:
    return DagsterInstance.get().get_runs(limit=1)[0].run_id


# --- atomic writes, killed for real ----------------------------------------------------------------------------

REPLACE_FOREVER = """
import sys
import duckdb, numpy as np, pandas as pd
from mmm_assets.core.storage import replace_market
conn, rows = duckdb.connect(sys.argv[1]), int(sys.argv[2])
((version,),) = conn.execute("SELECT max(version) FROM big").fetchall()
while True:
    version += 1
    n = rows + version
    print(f"writing:{version}", flush=True)
    replace_market(conn, "big", pd.DataFrame({"version": np.full(n, version), "x": np.arange(n, dtype="float64")}), "m")
    print(f"committed:{version}", flush=True)
"""


def test_a_table_replace_killed_mid_write_leaves_the_old_or_the_new_table(tmp_path: Path) -> None:
    """SIGKILL a process replacing a market's 3 million rows in a loop, at random moments: never a partial table,
    and the other market's rows never touched."""
    path, rows = tmp_path / "big.duckdb", 3_000_000
    with duckdb.connect(str(path)) as conn:
        replace_market(conn, "big", pd.DataFrame({"version": np.zeros(rows, dtype="int64"), "x": np.arange(rows, dtype="float64")}), "m")
        replace_market(conn, "big", pd.DataFrame({"version": [-1], "x": [0.0]}), "other")
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    mid_write = 0
    for kill in range(KILLS_TABLE):
        lines = _kill_mid_work(_python(REPLACE_FOREVER, str(path), str(rows)), rng.uniform(0.05, 1.0))
        committed = [int(line.split(":")[1]) for line in lines if line.startswith("committed:")]
        started = int(lines[-1].split(":")[1])
        mid_write += lines[-1].startswith("writing:")
        with duckdb.connect(str(path)) as conn:
            count, low, high = conn.execute(
                "SELECT count(*), min(version), max(version) FROM big WHERE market = 'm'"
            ).fetchone()
            assert conn.execute("SELECT version FROM big WHERE market = 'other'").fetchall() == [(-1,)]
        context = f"seed {seed}, kill {kill}, printed {lines[-3:]}"
        assert low == high, context  # one version only: never a mix of the old and the new rows
        assert count == rows + high, context  # all of that version's rows
        assert max(committed, default=high) <= high <= started, context  # a committed version is never lost
    assert mid_write, f"seed {seed}: no kill landed during a write"


WRITE_FILES_FOREVER = """
import sys, time
from pathlib import Path
import pandas as pd
from mmm_assets.core.model import save_model
from mmm_assets.core.report import Section, write_report

models, reports, life = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
CHUNK, CHUNKS = b"m" * 2**20, 40
TABLE = pd.DataFrame({"week": range(100_000), "spend": 1.5})


class SlowModel:
    def save(self, fname):
        with open(fname, "wb") as out:
            for _ in range(CHUNKS):
                out.write(CHUNK)
                time.sleep(0.005)
            out.write(b"END")


for i in range(1, 10**6):
    print(f"writing:{i}", flush=True)
    save_model(SlowModel(), models / f"mmm_{life}_{i}.nc")
    write_report(reports / f"report_{life}_{i}", "t", "s", ["x"], [Section("s", tables={"table": TABLE})])
    print(f"committed:{i}", flush=True)
"""


def test_model_and_report_writes_killed_mid_write_leave_no_partial_file(tmp_path: Path) -> None:
    """Kill a process saving model files and reports in a loop: whatever has a final name is complete."""
    models, reports = tmp_path / "models", tmp_path / "reports"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    mid_write = 0
    for kill in range(KILLS_FILES):
        child = _python(WRITE_FILES_FOREVER, str(models), str(reports), str(kill))
        lines = _kill_mid_work(child, rng.uniform(0.1, 1.5))
        mid_write += lines[-1].startswith("writing:")
        context = f"seed {seed}, kill {kill}, printed {lines[-3:]}"
        for model in models.glob("mmm_*.nc"):
            assert model.stat().st_size == 40 * 2**20 + 3 and model.read_bytes().endswith(b"END"), context
        for report in reports.glob("report_*"):
            assert (report / "index.html").read_text().rstrip().endswith("</html>"), context
            assert len(pd.read_csv(report / "table.csv")) == 100_000, context
            assert len(pd.read_json(report / "table.json")) == 100_000, context
    assert mid_write, f"seed {seed}: no kill landed during a write"


# --- the registry's champion and the previous model file -----------------------------------------------------


def _seed_champion(cfg: MMMConfig) -> Path:
    """A previous model file in the models folder, registered as the champion in the local MLflow store."""
    previous = cfg.paths.models_dir / f"mmm_{cfg.scenario}_previous.nc"
    previous.parent.mkdir(parents=True)
    previous.write_bytes(os.urandom(4096))
    client, name = tracking.client_for(cfg), tracking.model_name(cfg.for_market(DEFAULT_MARKET))
    client.create_registered_model(name)
    version = client.create_model_version(name, source=previous.as_uri(), tags={"status": tracking.CHAMPION})
    client.set_registered_model_alias(name, tracking.CHAMPION, version.version)
    return previous


def _kept_state(cfg: MMMConfig) -> dict:
    """What a failed refresh must not change: the model files and the registry's versions and champion."""
    client, name = tracking.client_for(cfg), tracking.model_name(cfg.for_market(DEFAULT_MARKET))
    versions = client.search_model_versions(f"name='{name}'")
    return {
        # the registry's download cache aside (the fit reads the champion from it to warm-start)
        "models": {p.name: _sha(p) for p in cfg.paths.models_dir.iterdir() if p.name != ".registry"},
        "versions": sorted((v.version, tuple(sorted(v.tags.items()))) for v in versions),
        "champion": tracking.champion(client, cfg.for_market(DEFAULT_MARKET)).version,
    }


@pytest.fixture
def mlflow_http_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's HTTP settings and credentials restored after the test (a remote tracking URI sets them)."""
    for name in (*tracking.MLFLOW_HTTP_DEFAULTS, *tracking.CREDENTIAL_ENVS):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.fixture
def tiny(write_config) -> tuple[Path, MMMConfig, dict]:
    """The TINY scenario with a champion already registered: its path, config and the state to keep."""
    path = write_config(TINY)
    cfg = load_config(path)
    _seed_champion(cfg)
    return path, cfg, _kept_state(cfg)


def test_unreachable_mlflow_fails_fast_and_clearly_and_moves_nothing(tiny, mlflow_http_env, monkeypatch,
                                                                      capsys) -> None:
    path, cfg, before = tiny
    port = _closed_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://mmm:t0ken@127.0.0.1:{port}/mlflow?key=t0ken")
    started = time.monotonic()
    assert cli.main(["run", "--config", str(path)]) == 1
    elapsed = time.monotonic() - started

    message = _run_errors(_last_run_id())
    assert f"MLflow is unreachable at http://127.0.0.1:{port}/mlflow (Connection refused, 3 attempts)" in message
    assert "start the tracking server or correct $MLFLOW_TRACKING_URI" in message and "t0ken" not in message
    assert elapsed < 30, f"took {elapsed:.0f} s"
    assert not cfg.paths.duckdb.exists()  # the run stopped before its first step
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert _kept_state(cfg) == before


def test_mlflow_http_retries_are_bounded_unless_set(write_config, mlflow_http_env, monkeypatch) -> None:
    cfg = load_config(write_config())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    with pytest.raises(tracking.TrackingUnreachableError):
        tracking.client_for(cfg)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == tracking.MLFLOW_HTTP_DEFAULTS[
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"


# --- a DuckDB file locked by another process -----------------------------------------------------------------

HOLD_LOCK = """
import sys, time
import duckdb
conn = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


@contextlib.contextmanager
def _locked_by_child(path: Path, seconds: float) -> Iterator[subprocess.Popen]:
    """A child process holding a write connection to ``path`` for ``seconds`` (killed on exit)."""
    child = _python(HOLD_LOCK, str(path), str(seconds))
    assert child.stdout.readline().strip() == "locked"
    try:
        yield child
    finally:
        child.kill()
        child.wait(timeout=30)


def _ingest_with_lock_timeout(write_config, timeout_s: float):
    """A synthetic scenario whose DuckDB holds a feature table; a resource that waits ``timeout_s`` for the lock."""
    path = write_config({"operations": {"duckdb_lock_timeout_s": timeout_s}})
    resource = ScenarioResource(config_path=str(path))
    assert materialize_market([marketing_spend, mmm_features], resources={"scenario": resource}).success
    return load_config(path).paths.duckdb, lambda: materialize_market(
        [marketing_spend, mmm_features], resources={"scenario": resource}, raise_on_error=False
    )


def test_a_locked_database_is_waited_for_then_fails_clearly(write_config) -> None:
    database, ingest = _ingest_with_lock_timeout(write_config, 1.5)
    with duckdb.connect(str(database), read_only=True) as conn:
        before = read_table(conn, TABLE)
    with _locked_by_child(database, 120) as child:
        started = time.monotonic()
        result = ingest()
        elapsed = time.monotonic() - started
    assert not result.success
    ((cls_name, message),) = set(errors(result.all_events))
    assert cls_name == "DatabaseLockedError"
    assert f"DuckDB file {database} is locked by another process (pid {child.pid}, " in message
    assert "not released within 1.5 s; let that process finish or stop it" in message
    assert "operations.duckdb_lock_timeout_s" in message
    assert 1.5 <= elapsed < 15
    with duckdb.connect(str(database), read_only=True) as conn:
        pd.testing.assert_frame_equal(read_table(conn, TABLE), before)


def test_a_lock_released_within_the_timeout_is_waited_out(write_config) -> None:
    database, ingest = _ingest_with_lock_timeout(write_config, 60)
    with _locked_by_child(database, 2):
        started = time.monotonic()
        result = ingest()
        elapsed = time.monotonic() - started
    assert result.success and elapsed >= 1


def test_lock_errors_other_than_a_held_lock_are_not_retried(tmp_path: Path) -> None:
    folder = tmp_path / "a_folder.duckdb"
    folder.mkdir()
    started = time.monotonic()
    with pytest.raises(duckdb.IOException):
        storage.connect(folder, lock_timeout_s=30)
    assert time.monotonic() - started < 5


# --- two refreshes at once ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_refreshes_started_together_take_turns(write_config) -> None:
    path = write_config(TINY)
    cfg = load_config(path)
    command = [sys.executable, "-m", "mmm_assets", "run", "--config", str(path)]
    children = [subprocess.Popen(command, cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (out, err) in zip(children, outputs):
        assert child.returncode == 0, out + err[-3000:]
        assert "RESULT: success" in out

    waited = [(child, err) for child, (_, err) in zip(children, outputs) if "waiting for the refresh" in err]
    assert len(waited) == 1, "exactly one refresh waits for the other"
    other = next(child for child in children if child is not waited[0][0])
    assert f"waiting for the refresh already running (pid {other.pid}) to finish" in waited[0][1]

    records = sorted(DagsterInstance.get().get_run_records(), key=lambda r: r.start_time)
    assert [r.dagster_run.status for r in records] == [DagsterRunStatus.SUCCESS] * 2
    assert records[0].end_time <= records[1].start_time, "the runs overlapped"
    with duckdb.connect(str(cfg.paths.duckdb), read_only=True) as conn:
        history = read_table(conn, "validation_history")
        assert len(read_table(conn, TABLE)) == 52
    assert set(history["run_id"]) == {r.dagster_run.run_id for r in records}
    assert len(list(cfg.paths.models_dir.glob("*.nc"))) == 2 and len(list(cfg.paths.reports_dir.iterdir())) == 2
    client = tracking.client_for(cfg)
    assert len(client.search_model_versions(f"name='{tracking.model_name(cfg.for_market(DEFAULT_MARKET))}'")) == 2
    assert str(tracking.champion(client, cfg.for_market(DEFAULT_MARKET)).version) == "2"


# --- a full disk ---------------------------------------------------------------------------------------------------


def test_a_full_models_disk_stops_the_run_before_the_fit(tiny, monkeypatch, capsys) -> None:
    path, cfg, before = tiny
    real = storage.shutil.disk_usage

    def models_disk_full(folder: Path):
        usage = real(folder)
        return usage._replace(free=10 * 2**20) if Path(folder) == cfg.paths.models_dir else usage

    monkeypatch.setattr(storage.shutil, "disk_usage", models_disk_full)
    assert cli.main(["run", "--config", str(path)]) == 1
    message = _run_errors(_last_run_id())
    assert f"the disk of the models directory (paths.models_dir) {cfg.paths.models_dir} has 10 MB free" in message
    assert "under the 256 MB a run needs (operations.min_free_disk_mb); free some space" in message
    assert not cfg.paths.duckdb.exists()
    assert _kept_state(cfg) == before


class _FullDiskModel:
    """A fitted model whose netCDF write runs out of space half-way, as it would on a full models disk."""

    def save(self, fname: str) -> None:
        Path(fname).write_bytes(b"\x89HDF\r\n half a posterior")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), fname)


def test_disk_full_while_saving_the_model_keeps_the_previous_model_and_champion(tiny, monkeypatch) -> None:
    """The real refresh, save_model and registry; the fit is skipped and the model's write hits ENOSPC."""
    from mmm_assets.core import model

    path, cfg, before = tiny
    fitted = model.FitResult(_FullDiskModel(), "pymc", 0.0, model.Diagnostics(0, 1.0, 400.0, 400.0, "none"), 500, 500)
    monkeypatch.setattr(model, "fit", lambda *args, **kwargs: fitted)
    monkeypatch.setattr(RetryPolicy, "calculate_delay", lambda self, attempt_num: 0)  # retries, without the wait
    result = execute_market(
        defs.resolve_job_def("weekly_refresh"), {"resources": {"scenario": {"config": {"config_path": str(path)}}}},
        raise_on_error=False,
    )
    assert not result.success
    retries = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "mmm_posterior" and len(retries) == 2  # three attempts, each out of space
    ((cls_name, message),) = set(errors([failure]))
    assert cls_name == "OSError" and "No space left on device" in message and str(cfg.paths.models_dir) in message
    assert _kept_state(cfg) == before  # no new file (the temporary one is gone), no new version, same champion


def test_an_unreadable_champion_posterior_means_a_cold_fit_not_a_failed_one(tiny) -> None:
    from mmm_assets.defs.model import _champion_posterior

    _, cfg, _ = tiny
    market = cfg.for_market(DEFAULT_MARKET)
    messages: list[str] = []
    assert _champion_posterior(market, tracking.client_for(market), messages.append) is None
    (message,) = messages
    assert message.startswith("the champion's posterior ") and message.endswith(": the fit starts cold")
    assert "cannot be read (" in message
