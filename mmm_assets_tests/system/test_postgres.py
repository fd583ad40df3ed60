"""The deployment profile for real, less Kubernetes: a PostgreSQL server started here, deploy/dagster.yaml's storage,
run queue and pools pointed at it through the same environment variables a cluster sets, a backfill over the market
partitions run by a real dagster-daemon (runs as processes instead of pods), and the runs, materialisations and
check results read back from PostgreSQL (through Dagster and with plain SQL) and from the deployment's MLflow server.

The server is initdb + pg_ctl in a temporary folder: TCP on 127.0.0.1 and a free port only, its unix socket in that
folder, password (SCRAM) authentication for 127.0.0.1 and nothing else. PostgreSQL refuses to run as root, so as
root the server runs as the `postgres` (else `nobody`) user through `runuser`. Without PostgreSQL binaries the test
is skipped, unless MMM_REQUIRE_POSTGRES=1 (CI sets it), where that is a failure.
"""

import glob
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mmm_assets.core.config import load_config
from mmm_assets.core.config.paths import PROJECT_DIR
from mmm_assets.core.stores import tracking
from mmm_assets_tests.conftest import SMALL, merge, write_scenario
from mmm_assets_tests.system.servers import start_server, stop_server

pytestmark = pytest.mark.slow

DEPLOY_INSTANCE = PROJECT_DIR / "deploy" / "dagster.yaml"
MLFLOW_MANIFEST = PROJECT_DIR / "deploy" / "k8s" / "mlflow.yaml"
MLFLOW_DOCKERFILE = PROJECT_DIR / "deploy" / "mlflow" / "Dockerfile"
#: One server, two databases: Dagster's instance and MLflow's backend store.
DATABASES = ("dagster", "mlflow")
#: Seconds the MLflow server may take to create its tables and answer /health, and to stop when asked.
MLFLOW_START_TIMEOUT_S = 180
MLFLOW_STOP_GRACE_S = 3
#: The scenario the backfill runs, shrunk to STORAGE_RUN's weeks and sampler: the multi-market one, one run per
#: market partition.
BASE_SCENARIO = "config/markets.yaml"
#: SMALL, lighter still: this test is about where results are stored, not about the statistics of a fit, so no
#: holdout refit, and bulk/tail ESS gates that 2 x 250 draws pass in every market (the gates still run and are stored).
STORAGE_RUN = merge(SMALL, {"validation": {"holdout_weeks": 0, "thresholds": {"ess_bulk_min": 50, "ess_tail_min": 50}}})
#: Where PostgreSQL's server binaries are when they are not on the PATH (Debian / Ubuntu packages).
PG_BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")
NOT_INSTALLED = "PostgreSQL not installed (apt install postgresql)"
REQUIRE_ENV = "MMM_REQUIRE_POSTGRES"
#: The pool of the fit steps (mmm_posterior, mmm_validation) and the limit the backfill test pins it to with
#: `dagster instance concurrency set`: below the scenario's markets, so runs must take turns.
FIT_POOL = "mmm_fit"
FIT_POOL_LIMIT = 2
#: Seconds the daemon may take to run the whole backfill (three small markets, two at a time, on 2 loaded cores).
BACKFILL_TIMEOUT_S = 900
#: Seconds the daemon may take to stop (its code server with it) before SIGKILL.
DAEMON_STOP_GRACE_S = 30


def find_pg_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: from the PATH, else the newest of PG_BIN_GLOBS."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    candidates = [Path(p) for pattern in PG_BIN_GLOBS for p in glob.glob(pattern)]
    usable = [p for p in candidates if (p / "initdb").exists() and (p / "pg_ctl").exists()]

    def version(p: Path) -> tuple:
        return tuple(int(x) if x.isdigit() else 0 for x in p.parent.name.split("."))

    return max(usable, key=version) if usable else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    database: str

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads its storage settings from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.database,
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
        }

    def connect(self, database: str | None = None, password: str | None = None):
        import psycopg2

        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, dbname=database or self.database,
            password=self.password if password is None else password, connect_timeout=10,
        )


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own, with DATABASES; stopped and deleted at teardown."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{NOT_INSTALLED}; {REQUIRE_ENV}=1 requires it (initdb not on the PATH nor in "
                        f"{', '.join(PG_BIN_GLOBS)})", pytrace=False)
        pytest.skip(NOT_INSTALLED)
    as_root = os.geteuid() == 0
    # root's tools live in the sbin folders, which a minimal PATH (CI's, cron's) may leave out
    runuser = shutil.which("runuser", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if as_root and runuser is None:
        pytest.fail("running as root, PostgreSQL must run as another user, and runuser (util-linux) is missing")
    owner = _server_user() if as_root else pwd.getpwuid(os.geteuid()).pw_name

    def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        full = [runuser, "-u", owner, "--", *cmd] if as_root else list(cmd)
        done = subprocess.run(full, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    # Not under pytest's tmp folders: those are private to the user running pytest, and the server's user must
    # own its data folder. A short path also keeps the unix socket path under its 107-character limit.
    base = Path(tempfile.mkdtemp(prefix="mmm-pg-"))
    data, log, pwfile = base / "data", base / "server.log", base / "pwfile"
    password = secrets.token_urlsafe(24)
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if as_root:
        entry = pwd.getpwnam(owner)
        for path in (base, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = free_port()
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "mmm", f"--pwfile={pwfile}", "-E", "UTF8",
            "--locale=C", "--auth=scram-sha-256")
        # Only TCP from 127.0.0.1 with the password; no unix-socket logins, nothing from elsewhere.
        (data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 scram-sha-256\n")
        options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} "
                   "-c fsync=off -c max_connections=60")  # fsync off: a throw-away database
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        server = PostgresServer("127.0.0.1", port, "mmm", password, "dagster")
        conn = server.connect("postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                for database in DATABASES:
                    cur.execute(f"CREATE DATABASE {database}")
        finally:
            conn.close()
        yield server
    except Exception:
        if log.exists():
            print(f"PostgreSQL log ({log}):\n{log.read_text()}", file=sys.stderr)
        raise
    finally:
        if (data / "postmaster.pid").exists():
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


def _server_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pytest.fail("running as root and there is neither a `postgres` nor a `nobody` user to run PostgreSQL as")


def mlflow_server_command(host: str, port: int) -> tuple[list[str], list[str]]:
    """The MLflow server as deploy/k8s/mlflow.yaml runs it, here: the image's ENTRYPOINT (deploy/mlflow/Dockerfile)
    with the manifest's args, bound to ``host``:``port`` with one worker; and the variables the manifest takes from
    Secret mlflow-secrets, which the caller must set."""
    entrypoint = next(
        json.loads(line.removeprefix("ENTRYPOINT"))
        for line in MLFLOW_DOCKERFILE.read_text().splitlines() if line.startswith("ENTRYPOINT")
    )
    deployment = next(d for d in yaml.safe_load_all(MLFLOW_MANIFEST.read_text()) if d and d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = list(container["args"])
    for flag, value in {"--host": host, "--port": str(port), "--workers": "1"}.items():
        args[args.index(flag) + 1] = value
    from_secret = [e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    # The manifest's plain `value` variables (the allowed Host headers: the in-cluster names) are left out; the
    # server's default (localhost, any port) is what a client on 127.0.0.1 needs.
    return [str(Path(sys.executable).parent / entrypoint[0]), *entrypoint[1:], *args], from_secret


@pytest.fixture
def mlflow_server(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The deployment's MLflow server on 127.0.0.1: backend store in PostgreSQL database `mlflow`, artifacts proxied
    to a local folder (S3 in the cluster). Yields its URI and the artifacts folder; stopped at teardown."""
    port = free_port()
    command, from_secret = mlflow_server_command("127.0.0.1", port)
    artifacts = tmp_path / "mlflow-artifacts"
    secret_values = {
        "MLFLOW_BACKEND_STORE_URI": (
            f"postgresql+psycopg2://{postgres_server.user}:{postgres_server.password}"
            f"@{postgres_server.host}:{postgres_server.port}/mlflow"
        ),
        "MLFLOW_ARTIFACTS_DESTINATION": artifacts.as_uri(),
    }
    assert sorted(from_secret) == sorted(secret_values), f"{MLFLOW_MANIFEST} takes {from_secret} from its Secret"
    log = tmp_path / "mlflow-server.log"
    with log.open("w") as out:
        server = start_server(command, env={**os.environ, **secret_values}, stdout=out, stderr=subprocess.STDOUT,
                              cwd=tmp_path)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + MLFLOW_START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"the MLflow server exited ({server.returncode}):\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the MLflow server did not answer in {MLFLOW_START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield uri, artifacts
    finally:
        # its job-queue consumers take ~15 s to wind down; after that the data is thrown away
        stop_server(server, MLFLOW_STOP_GRACE_S)


def deploy_instance_for_here() -> dict:
    """deploy/dagster.yaml as it is, less the Kubernetes run launcher (no cluster here: runs launch as processes)."""
    instance = yaml.safe_load(DEPLOY_INSTANCE.read_text())
    assert instance["run_launcher"]["class"] == "K8sRunLauncher"
    del instance["run_launcher"]
    return instance


def write_small_scenario(folder: Path) -> Path:
    """STORAGE_RUN's weeks, sampler and gates over BASE_SCENARIO, every output under ``folder``."""
    path = write_scenario(folder, STORAGE_RUN)
    paths = yaml.safe_load(path.read_text())["paths"]
    small = {key: value for key, value in STORAGE_RUN.items() if key != "scenario"}  # the base keeps its markets
    path.write_text(yaml.safe_dump({"extends": str(PROJECT_DIR / BASE_SCENARIO), **small, "paths": paths}))
    return path


def test_password_is_required(postgres_server: PostgresServer) -> None:
    """The server really checks the password deploy/dagster.yaml reads from DAGSTER_PG_PASSWORD."""
    import psycopg2

    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        postgres_server.connect(password="not-the-password")



def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of [start, end] intervals that hold at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:  # at equal times an end (-1) sorts first: a run that ends as another starts is no overlap
        running += step
        peak = max(peak, running)
    return peak


def run_cli(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """One of the venv's console scripts (dagster, dagster-daemon) from the project folder, as an operator runs it."""
    done = subprocess.run([str(Path(sys.executable).parent / args[0]), *args[1:]], cwd=PROJECT_DIR, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def test_backfill_over_market_partitions_takes_turns_in_the_pool(
    postgres_server: PostgresServer, mlflow_server: tuple[str, Path], tmp_path: Path, monkeypatch
) -> None:
    """A backfill over the market partitions, as on the cluster: deploy/dagster.yaml's PostgreSQL storage and run
    queue, the fit pool pinned with the command docs/deploy.md gives, the runs submitted by `dagster job backfill` and
    launched by a real `dagster-daemon` (as processes here, pods there). Every partition's run is queued, then started
    by the daemon with never more runs in progress than the pool allows, and what they did is in PostgreSQL (through
    Dagster and plain SQL) and on the deployment's MLflow server."""
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage
    from mlflow import MlflowClient

    mlflow_uri, mlflow_artifacts = mlflow_server
    home = Path(os.environ["DAGSTER_HOME"])  # the test's own (conftest)
    (home / "dagster.yaml").write_text(yaml.safe_dump(deploy_instance_for_here(), sort_keys=False))
    for name, value in postgres_server.env().items():
        monkeypatch.setenv(name, value)
    scenario = write_small_scenario(tmp_path)
    cfg = load_config(scenario)
    markets = cfg.market_names
    assert markets and len(markets) > FIT_POOL_LIMIT, f"{scenario}: more markets than pool slots are needed"
    env = {
        **os.environ,
        "PYTENSOR_FLAGS": f"base_compiledir={PROJECT_DIR / '.cache' / 'pytensor'}",  # as the Makefile sets it
        "MMM_CONFIG": str(scenario),  # what mmm-env's MMM_CONFIG is on the cluster
        cfg.operations.mlflow_tracking_uri_env: mlflow_uri,
    }

    run_cli(["dagster", "instance", "concurrency", "set", FIT_POOL, str(FIT_POOL_LIMIT)], env, 120)
    instance = DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        instance.add_dynamic_partitions("market", markets)  # what market_partitions_sensor does in the daemon
        submitted = run_cli(["dagster", "job", "backfill", "-w", "workspace.yaml", "-j", "weekly_refresh",
                             "--partitions", ",".join(markets), "--noprompt"], env, 300)
        backfill_id = re.search(r"Launched backfill job `(\w+)`", submitted.stdout).group(1)
        backfill = RunsFilter(tags={"dagster/backfill": backfill_id})
        queued = instance.get_runs(backfill)
        assert sorted(r.tags["dagster/partition"] for r in queued) == sorted(markets)
        assert {r.status for r in queued} == {DagsterRunStatus.QUEUED}, "no daemon yet: every run must wait in the queue"

        log = tmp_path / "daemon.log"
        with log.open("w") as out:
            daemon = start_server([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                                  cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
        in_progress_seen = 0
        try:
            deadline = time.monotonic() + BACKFILL_TIMEOUT_S
            while True:
                runs = instance.get_runs(backfill)
                in_progress_seen = max(in_progress_seen, sum(
                    r.status in (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED) for r in runs))
                if all(r.is_finished for r in runs):
                    break
                assert daemon.poll() is None, f"dagster-daemon exited ({daemon.returncode}):\n{log.read_text()[-4000:]}"
                assert time.monotonic() < deadline, (
                    f"backfill not done in {BACKFILL_TIMEOUT_S} s: {[(r.tags['dagster/partition'], r.status.value) for r in runs]}"
                    f"\n{log.read_text()[-4000:]}")
                time.sleep(1)
        finally:
            stop_server(daemon, DAEMON_STOP_GRACE_S)  # the daemon and its code server

        records = instance.get_run_records(backfill)
        runs = {r.dagster_run.run_id: r.dagster_run for r in records}
        overlap = max_overlap([(r.start_time, r.end_time) for r in records])
        assert overlap <= FIT_POOL_LIMIT and in_progress_seen <= FIT_POOL_LIMIT, (
            f"{overlap} runs overlapped ({in_progress_seen} seen in progress at once); the pool allows {FIT_POOL_LIMIT}")
        assert overlap == FIT_POOL_LIMIT, f"the queue never used the pool's {FIT_POOL_LIMIT} slots at once ({overlap})"
        statuses = {}
        for run_id, run in runs.items():
            kinds = [e.dagster_event.event_type for e in instance.all_logs(run_id) if e.dagster_event]
            queued_first = DagsterEventType.RUN_ENQUEUED in kinds and DagsterEventType.RUN_STARTING in kinds and (
                kinds.index(DagsterEventType.RUN_ENQUEUED) < kinds.index(DagsterEventType.RUN_STARTING))
            assert queued_first, f"run {run_id} was not queued before the daemon started it: {sorted(set(kinds))}"
            materialised = {
                e.dagster_event.asset_key.to_user_string()
                for e in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
            }
            assert "mmm_posterior" in materialised, f"run {run_id}: the fit's output is not stored ({run.status})"
            evaluations = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
            assert evaluations, f"run {run_id}: no check results stored"
            # a run fails exactly when one of its blocking gates failed (STORAGE_RUN's gates pass on most markets)
            gates = [e.dagster_event.event_specific_data for e in evaluations]
            gates_failed = any(not g.passed and g.blocking and g.severity.value == "ERROR" for g in gates)
            assert run.status == (DagsterRunStatus.FAILURE if gates_failed else DagsterRunStatus.SUCCESS), run_id
            statuses[run_id] = (run.status.value, len(materialised))
        assert any(status == "SUCCESS" for status, _ in statuses.values()), f"no market's refresh succeeded: {statuses}"
    finally:
        instance.dispose()

    # The same, with plain SQL against the server: Dagster's own tables in database `dagster`.
    conn = postgres_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT run_id, status FROM runs")
            stored = dict(cur.fetchall())
            assert {k: stored[k] for k in runs} == {k: s for k, (s, _) in statuses.items()}
            cur.execute(
                "SELECT run_id, count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
                "GROUP BY run_id"
            )
            assert {k: n for k, n in cur.fetchall() if k in runs} == {k: n for k, (_, n) in statuses.items()}
    finally:
        conn.close()

    # MLflow: one MLflow run per Dagster run, each passing market's champion, artifacts in the artifact store.
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(cfg.operations.mlflow_experiment)
    assert experiment is not None, f"no MLflow experiment {cfg.operations.mlflow_experiment!r} on the server"
    mlflow_runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags.get("dagster_run_id") for r in mlflow_runs) == sorted(runs)
    passing = [run.tags["dagster/partition"] for run_id, run in runs.items() if statuses[run_id][0] == "SUCCESS"]
    champions = [
        client.get_model_version_by_alias(tracking.model_name(cfg.for_market(market)), tracking.CHAMPION)
        for market in passing
    ]
    assert {c.run_id for c in champions} <= {r.info.run_id for r in mlflow_runs}
    for mlflow_run in mlflow_runs:
        assert client.list_artifacts(mlflow_run.info.run_id), f"MLflow run {mlflow_run.info.run_id} has no artifacts"
    assert any(p.suffix == ".nc" for p in mlflow_artifacts.rglob("*")), f"no posterior netCDF in {mlflow_artifacts}"
    conn = postgres_server.connect("mlflow")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT name FROM registered_model_aliases WHERE alias = %s", (tracking.CHAMPION,))
            assert sorted(name for (name,) in cur.fetchall()) == sorted(c.name for c in champions)
    finally:
        conn.close()
