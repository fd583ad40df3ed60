"""Faults survived, on real components: killed writers, an unreachable MLflow, a locked DuckDB file, two refreshes
at once and a full disk. Each test shows the previous state intact afterwards. (A sampler that does not converge
is caught by the gates: test_graph.py::test_a_failing_refresh_is_blocked_and_keeps_the_last_good_state.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RetryPolicy

from mmm_assets import cli
from mmm_assets.core.config import DEFAULT_MARKET, MMMConfig, load_config
from mmm_assets.core.config.paths import PROJECT_DIR
from mmm_assets.core.stores import duckdb_store as storage
from mmm_assets.core.stores import tracking
from mmm_assets.core.stores.duckdb_store import read_table, replace_market
from mmm_assets.definitions import defs
from mmm_assets.defs.features import TABLE, mmm_features
from mmm_assets.defs.ingest import marketing_spend
from mmm_assets.defs.resources import ScenarioResource
from mmm_assets_tests.conftest import merge
from mmm_assets_tests.system.runs import execute_market, materialize_market
from mmm_assets_tests.system.test_bad_inputs import errors

#: One year of the reference scenario, the default sampler (numpyro, its compiled sampler cached across processes)
#: and lenient gates: a whole refresh that passes in about 17 s (26 s compiling into an empty cache; with PyMC's own
#: sampler 27 s and 54 s). No goal plans, as in SMALL: their searches are a few seconds of every refresh, and the
#: tests of TINY refreshes are about the runs, not the plans (test_graph.py's whole graph plans the default goals;
#: test_scenarios.py puts them back, since it compares every table's rows).
TINY = {
    "scenario": "tiny",
    "data": {"synthetic": {"end_date": "2019-12-31"}},
    "sampler": {"chains": 2, "draws": 150, "tune": 300},
    "validation": {"holdout_weeks": 0, "min_weeks": 26, "thresholds": {
        "r2_min": 0.5, "mape_max_pct": 50, "rhat_max": 2, "ess_bulk_min": 1, "ess_tail_min": 1,
        "divergences_max": 1000, "lam_rel_error_max": 1, "alpha_abs_error_max": 1,
        "curve_rel_error_max": 1, "mean_lag_abs_error_max": 12}},
    "decisions": {"budget": {"scenario_levels": [1.0]}, "response_curve_points": 5, "planner": {"goals": []}},
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
from mmm_assets.core.stores.duckdb_store import replace_market
conn, rows = duckdb.connect(sys.argv[1]), int(sys.argv[2])
((version,),) = conn.execute("SELECT max(version) FROM big").fetchall()
while True:
    version += 1
    n = rows + version
    print(f"writing:{version}", flush=True)
    replace_market(conn, "big", pd.DataFrame({"version": np.full(n, version), "x": np.arange(n, dtype="float64")}), "m", scenario="s")
    print(f"committed:{version}", flush=True)
"""


def test_a_table_replace_killed_mid_write_leaves_the_old_or_the_new_table(tmp_path: Path) -> None:
    """SIGKILL a process replacing a market's 3 million rows in a loop, at random moments: never a partial table,
    and the other market's rows never touched."""
    path, rows = tmp_path / "big.duckdb", 3_000_000
    with duckdb.connect(str(path)) as conn:
        replace_market(conn, "big", pd.DataFrame({"version": np.zeros(rows, dtype="int64"), "x": np.arange(rows, dtype="float64")}), "m", scenario="s")
        replace_market(conn, "big", pd.DataFrame({"version": [-1], "x": [0.0]}), "other", scenario="s")
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
import os, sys, time
from pathlib import Path
import pandas as pd
from mmm_assets.core.modelling import persistence as persistence_core
from mmm_assets.core.presentation.report import Section, write_report

models, reports, life = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
CHUNK, CHUNKS = 2**20, 40
TABLE = pd.DataFrame({"week": range(100_000), "spend": 1.5})
# the netCDF, as the save builds it in memory
persistence_core.netcdf_bytes = lambda mmm: b"m" * (CHUNK * CHUNKS) + b"END"
disk_write = os.write


def slow_disk(fd, data):
    # a slow disk: at most a chunk per call, 5 ms each (only the model save writes through os.write)
    time.sleep(0.005)
    return disk_write(fd, data[:CHUNK])


os.write = slow_disk
for i in range(1, 10**6):
    print(f"writing:{i}", flush=True)
    persistence_core.save_model(None, models / f"mmm_{life}_{i}.nc")
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
    assert cli.main(["run", "--config", str(path)]) == 3  # infrastructure
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert "EXIT 3 (infrastructure)" in out and f"MLflow is unreachable at http://127.0.0.1:{port}/mlflow" in out

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
    assert cli.main(["run", "--config", str(path)]) == 3  # infrastructure
    assert "EXIT 3 (infrastructure)" in capsys.readouterr().out
    message = _run_errors(_last_run_id())
    assert f"the disk of the models directory (paths.models_dir) {cfg.paths.models_dir} has 10 MB free" in message
    assert "under the 256 MB a run needs (operations.min_free_disk_mb); free some space" in message
    assert not cfg.paths.duckdb.exists()
    assert _kept_state(cfg) == before


#: Size of the small real disk (a tmpfs) the disk-full tests mount: room for a TINY model file and the registry.
SMALL_DISK = "8m"
#: operations.min_free_disk_mb on the small disk: the margin a run keeps beside its files.
MARGIN_MB = 1
#: What a full disk leaves free in these tests: less than any model file, so a save cannot fit.
LEFT_BYTES = 64 * 1024
#: The child's file-size limit (RLIMIT_FSIZE) in the write-fault test: below any model file (the SMALL fit's is 3.7 MB).
FILE_LIMIT_BYTES = 64 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A real small disk: a tmpfs of SMALL_DISK mounted under ``tmp_path`` (unmounted afterwards) when this process
    may mount one (root); None when it may not, and the tests fall back to another real fault or say why not."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK}", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    try:
        yield folder if mounted else None
    finally:
        if mounted and subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def _fill(disk: Path, leave_bytes: int) -> None:
    """Another writer takes the disk's space: a filler file at the disk's root grows until ``leave_bytes`` are free."""
    grow = shutil.disk_usage(disk).free - leave_bytes
    with open(disk / "filler", "ab") as filler:
        filler.write(b"\0" * max(grow, 0))


def _unrelated_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, hidden ones included, except the filler."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "filler")


WRITE_FAULTS = """
import gc, json, resource, shutil, signal, sys
from pathlib import Path
from mmm_assets.core.modelling import persistence as persistence_core
from mmm_assets.core.stores.duckdb_store import DiskSpaceError

saved, folders, small_disk, limit, left = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
mmm = persistence_core.load_model(saved)


def attempt(fault, folder):
    try:
        persistence_core.save_model(mmm, folder / "mmm_fault.nc")
        print(json.dumps([fault, "saved", ""]), flush=True)
    except DiskSpaceError as err:
        print(json.dumps([fault, type(err).__name__, str(err)]), flush=True)


# EFBIG: a file-size limit below the model's size; SIGXFSZ ignored, so the write fails instead of killing
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
attempt("EFBIG", folders / "efbig")
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
if small_disk:
    # ENOSPC: the free-space check passes, then another writer fills the disk before the write
    disk, checked = Path(small_disk), persistence_core.ensure_free_space

    def check_then_the_disk_fills(*args, **kwargs):
        checked(*args, **kwargs)
        with open(disk / "filler", "wb") as filler:
            filler.write(b"\\0" * (shutil.disk_usage(disk).free - left))

    persistence_core.ensure_free_space = check_then_the_disk_fills
    attempt("ENOSPC", disk / "models")
    persistence_core.ensure_free_space = checked
gc.collect()  # the library's failed save crashed here, freeing HDF5's half-closed file
attempt("none", folders / "roomy")
"""


def test_a_disk_that_fills_while_saving_the_model_fails_cleanly_without_a_crash(small_fit, small_disk,
                                                                                 tmp_path) -> None:
    """Real write faults in a child process that saves a real fitted model: EFBIG (a file-size limit, always) and
    ENOSPC (a tmpfs filled between the free-space check and the write, when a tmpfs can be mounted). The process
    survives (the library's own save segfaulted after ENOSPC), the error names the disk, no file is left behind, and
    the next save on a disk with room succeeds."""
    from mmm_assets.core.modelling.persistence import load_model, save_model

    saved = save_model(small_fit.mmm, tmp_path / "fitted" / "mmm_small.nc")
    child = subprocess.run(
        [sys.executable, "-c", WRITE_FAULTS, str(saved), str(tmp_path), str(small_disk or ""),
         str(FILE_LIMIT_BYTES), str(LEFT_BYTES)],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300,
    )
    assert child.returncode == 0, f"exit {child.returncode}: {child.stderr[-3000:]}"  # no signal, no crash
    outcomes = {fault: (cls_name, message) for fault, cls_name, message in map(json.loads, child.stdout.splitlines())}
    faults = {"EFBIG": (tmp_path / "efbig", "[Errno 27] File too large")}
    if small_disk:
        faults["ENOSPC"] = (small_disk / "models", "[Errno 28] No space left on device")
    else:
        warnings.warn("no tmpfs could be mounted here (root is needed): ENOSPC was not tried, EFBIG was", stacklevel=1)
    assert set(outcomes) == {*faults, "none"}
    for fault, (folder, errno_text) in faults.items():
        cls_name, message = outcomes[fault]
        assert cls_name == "DiskSpaceError", f"{fault}: {cls_name} {message}"
        assert f"the disk of the models directory (paths.models_dir) {folder} had no room" in message
        assert errno_text in message and "MB free now" in message and "operations.min_free_disk_mb" in message
        assert _unrelated_files(folder) == [], fault  # no temporary, no final-named partial model file
    assert outcomes["none"][0] == "saved"
    after = load_model(tmp_path / "roomy" / "mmm_fault.nc")
    assert after.idata.posterior.identical(small_fit.mmm.idata.posterior)


def _run_refresh(path: Path):
    """The weekly refresh of the scenario at ``path``, in this process, its failure returned rather than raised."""
    return execute_market(
        defs.resolve_job_def("weekly_refresh"), {"resources": {"scenario": {"config": {"config_path": str(path)}}}},
        raise_on_error=False,
    )


def _fails_with_disk_space_error(result) -> str:
    """The message of the refresh's only failure: a DiskSpaceError in mmm_posterior, not retried."""
    assert not result.success
    assert not [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    ((cls_name, message),) = set(errors([failure]))
    assert failure.step_key == "mmm_posterior" and cls_name == "DiskSpaceError", (cls_name, message)
    return message


def _models_disk_full(monkeypatch: pytest.MonkeyPatch, disk: Path | None, models_dir: Path, leave_bytes: int) -> None:
    """Leave ``leave_bytes`` free on the models disk: filled for real on the small disk, else (no tmpfs here) its
    free space as the checks see it."""
    if disk is not None:
        _fill(disk, leave_bytes)
        return
    real = storage.shutil.disk_usage

    def full(folder):
        usage = real(folder)
        return usage._replace(free=leave_bytes) if Path(folder) == models_dir else usage

    monkeypatch.setattr(storage.shutil, "disk_usage", full)


def test_a_disk_that_fills_during_the_fit_stops_the_save_then_a_refresh_succeeds(write_config, small_disk, small_fit,
                                                                                  tmp_path, monkeypatch) -> None:
    """The models disk fills up while the posterior is fitted: the save refuses before writing, with the disk, its
    free space and the setting; the step is not retried; nothing changes. Once there is room, an ordinary refresh
    succeeds; and when the disk cannot hold another model like the last one, the next refresh stops before its fit."""
    from mmm_assets.core.modelling import fitting as fitting_core

    models_dir = (small_disk or tmp_path) / "models"
    path = write_config(merge(TINY, {"operations": {"min_free_disk_mb": MARGIN_MB},
                                     "paths": {"models_dir": str(models_dir)}}))
    cfg = load_config(path)
    _seed_champion(cfg)
    before = _kept_state(cfg)
    margin = MARGIN_MB * storage.MB
    monkeypatch.setattr(RetryPolicy, "calculate_delay", lambda self, attempt_num: 0)  # a retry would not wait

    with monkeypatch.context() as patch:
        def fit_while_the_disk_fills(*args, **kwargs):
            _models_disk_full(patch, small_disk, models_dir, margin + LEFT_BYTES)
            return small_fit.result  # a real fitted model (of another scenario: it is never saved)

        patch.setattr(fitting_core, "fit", fit_while_the_disk_fills)
        message = _fails_with_disk_space_error(_run_refresh(path))
    assert f"the disk of the models directory (paths.models_dir) {models_dir} has 1.1 MB free, under the " in message
    assert f"MB file and keep {MARGIN_MB} MB free (operations.min_free_disk_mb); free some space" in message
    assert _kept_state(cfg) == before
    assert [p.name for p in _unrelated_files(models_dir) if p.suffix in (".tmp", ".partial")] == []

    if small_disk:
        (small_disk / "filler").unlink()
    assert _run_refresh(path).success
    (saved,) = models_dir.glob(f"mmm_{cfg.scenario}_{DEFAULT_MARKET}_*.nc")
    assert str(tracking.champion(tracking.client_for(cfg), cfg.for_market(DEFAULT_MARKET)).version) == "2"

    with monkeypatch.context() as patch:
        _models_disk_full(patch, small_disk, models_dir, margin + saved.stat().st_size // 2)
        patch.setattr(
            fitting_core, "fit", lambda *args, **kwargs: pytest.fail("fitted although the model cannot be saved")
        )
        message = _fails_with_disk_space_error(_run_refresh(path))
    assert f"needed to write a {storage.shown_mb(saved.stat().st_size / storage.MB)} MB file" in message


def test_a_failed_champion_download_leaves_no_partial_copy(tiny) -> None:
    """A download of the champion that fails part-way (here its artifacts hold a dangling link) leaves no
    ``.partial`` copy in the registry cache, and removes one left by a process killed mid-download; the next
    download of a good champion works."""
    _, cfg, _ = tiny
    market = cfg.for_market(DEFAULT_MARKET)
    client, name = tracking.client_for(market), tracking.model_name(market)
    broken = cfg.paths.models_dir.parent / "broken_artifacts"
    broken.mkdir()
    (broken / "posterior.nc").write_bytes(os.urandom(2**20))
    (broken / "zz_missing.nc").symlink_to(broken / "gone.nc")
    version = client.create_model_version(name, source=broken.as_uri())
    client.set_registered_model_alias(name, tracking.CHAMPION, version.version)
    registry = cfg.paths.models_dir / tracking.REGISTRY_CACHE
    registry.mkdir()
    killed = registry / f"{name}-v1{tracking.PARTIAL}"  # a download whose process was killed
    killed.mkdir()
    (killed / "posterior.nc").write_bytes(b"half")

    with pytest.raises(FileNotFoundError, match="zz_missing.nc"):
        tracking.champion_model_file(client, market)
    assert list(registry.glob(f"*{tracking.PARTIAL}")) == []

    client.set_registered_model_alias(name, tracking.CHAMPION, "1")
    got, posterior = tracking.champion_model_file(client, market)
    assert str(got.version) == "1" and posterior.read_bytes() == (cfg.paths.models_dir / "mmm_tiny_previous.nc").read_bytes()
    assert list(registry.glob(f"*{tracking.PARTIAL}")) == []


def test_an_unreadable_champion_posterior_means_a_cold_fit_not_a_failed_one(tiny) -> None:
    from mmm_assets.defs.model import _champion_posterior

    _, cfg, _ = tiny
    market = cfg.for_market(DEFAULT_MARKET)
    messages: list[str] = []
    assert _champion_posterior(market, tracking.client_for(market), messages.append) is None
    (message,) = messages
    assert message.startswith("the champion's posterior ") and message.endswith(": the fit starts cold")
    assert "cannot be read (" in message
