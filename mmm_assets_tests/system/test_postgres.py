"""The deployment profile's instance storage, for real: a PostgreSQL server started here, deploy/dagster.yaml's
storage pointed at it through the same environment variables a cluster sets, the project's CLI run against it, and
the runs, materialisations and check results read back from PostgreSQL (through Dagster and with plain SQL).

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
import signal
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

pytestmark = pytest.mark.slow

DEPLOY_INSTANCE = PROJECT_DIR / "deploy" / "dagster.yaml"
MLFLOW_MANIFEST = PROJECT_DIR / "deploy" / "k8s" / "mlflow.yaml"
MLFLOW_DOCKERFILE = PROJECT_DIR / "deploy" / "mlflow" / "Dockerfile"
#: One server, two databases: Dagster's instance and MLflow's backend store.
DATABASES = ("dagster", "mlflow")
#: Seconds the MLflow server may take to create its tables and answer /health, and to stop when asked.
MLFLOW_START_TIMEOUT_S = 180
MLFLOW_STOP_GRACE_S = 3
#: The scenario the end-to-end run uses (relative to the project), shrunk to STORAGE_RUN's weeks and sampler: the
#: multi-market one, where the CLI starts one Dagster run per market partition. None: the default scenario (one
#: market); the assertions cover both.
BASE_SCENARIO: str | None = "config/markets.yaml"
#: SMALL, lighter still: this test is about where results are stored, not about the statistics of a fit, so no
#: holdout refit, and bulk/tail ESS gates that 2 x 250 draws pass in every market (the gates still run and are stored).
STORAGE_RUN = merge(SMALL, {"validation": {"holdout_weeks": 0, "thresholds": {"ess_bulk_min": 50, "ess_tail_min": 50}}})
#: Where PostgreSQL's server binaries are when they are not on the PATH (Debian / Ubuntu packages).
PG_BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")
NOT_INSTALLED = "PostgreSQL not installed (apt install postgresql)"
REQUIRE_ENV = "MMM_REQUIRE_POSTGRES"
#: The first line of each run's summary the CLI prints; the run id is the group.
SUMMARY_HEAD = re.compile(r"^scenario .* - run ([0-9a-f-]{36}) - \d+ s$", re.M)
#: Seconds the whole CLI run may take (three small markets: well under this on 2 loaded cores).
CLI_TIMEOUT_S = 900


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
        server = subprocess.Popen(command, env={**os.environ, **secret_values}, stdout=out, stderr=subprocess.STDOUT,
                                  cwd=tmp_path, start_new_session=True)
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
        os.killpg(server.pid, signal.SIGTERM)  # its own session: the server and its workers, nothing else
        try:
            server.wait(timeout=MLFLOW_STOP_GRACE_S)
        except subprocess.TimeoutExpired:  # its job-queue consumers take ~15 s to wind down; the data is thrown away
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def deploy_instance_for_here() -> dict:
    """deploy/dagster.yaml as it is, less the Kubernetes run launcher (no cluster here: runs launch as processes)."""
    instance = yaml.safe_load(DEPLOY_INSTANCE.read_text())
    assert instance["run_launcher"]["class"] == "K8sRunLauncher"
    del instance["run_launcher"]
    return instance


def write_small_scenario(folder: Path) -> Path:
    """STORAGE_RUN's weeks, sampler and gates over BASE_SCENARIO (or the default), every output under ``folder``."""
    path = write_scenario(folder, STORAGE_RUN)
    if BASE_SCENARIO is None:
        return path
    paths = yaml.safe_load(path.read_text())["paths"]
    small = {key: value for key, value in STORAGE_RUN.items() if key != "scenario"}  # the base keeps its markets
    path.write_text(yaml.safe_dump({"extends": str(PROJECT_DIR / BASE_SCENARIO), **small, "paths": paths}))
    return path


def test_password_is_required(postgres_server: PostgresServer) -> None:
    """The server really checks the password deploy/dagster.yaml reads from DAGSTER_PG_PASSWORD."""
    import psycopg2

    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        postgres_server.connect(password="not-the-password")


def cli_summaries(stdout: str) -> dict[str, dict]:
    """Per Dagster run id, what the CLI's summary says the run did: success, assets materialised, checks passed."""
    heads = list(SUMMARY_HEAD.finditer(stdout))
    summaries = {}
    for head, following in zip(heads, [*heads[1:], None], strict=True):
        block = stdout[head.end():following.start() if following else len(stdout)]
        materialised = re.search(r"^materialised: (.*)$", block, re.M).group(1)
        checks = re.search(r"^checks: (\d+)/(\d+) passed$", block, re.M)
        summaries[head.group(1)] = {
            "success": re.search(r"^RESULT: (\w+)$", block, re.M).group(1) == "success",
            "materialised": set() if materialised == "nothing" else set(materialised.split(", ")),
            "checks": (int(checks.group(1)), int(checks.group(2))) if checks else (0, 0),
        }
    return summaries


def test_cli_run_is_stored_in_postgres(
    postgres_server: PostgresServer, mlflow_server: tuple[str, Path], tmp_path: Path, monkeypatch
) -> None:
    """`python -m mmm_assets run` on the deployment profile: what each market's run did, as the CLI reports it, is
    what Dagster's instance and MLflow hold in PostgreSQL."""
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
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
    assert markets, f"{scenario}: the end-to-end test needs the scenario's markets listed"

    env = {
        **os.environ,
        "PYTENSOR_FLAGS": f"base_compiledir={PROJECT_DIR / '.cache' / 'pytensor'}",  # as the Makefile sets it
        cfg.operations.mlflow_tracking_uri_env: mlflow_uri,
    }
    done = subprocess.run(
        [sys.executable, "-m", "mmm_assets", "run", "--config", str(scenario)],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    output = f"exit {done.returncode}:\n{done.stdout[-8000:]}\n{done.stderr[-3000:]}"
    reported = cli_summaries(done.stdout)
    assert len(reported) == len(markets), f"expected a summary per market {markets}; {output}"
    # 0 when every market passed its gates, 1 when one failed them; either way the runs are stored.
    assert done.returncode == (0 if all(r["success"] for r in reported.values()) else 1), output
    assert any(r["success"] for r in reported.values()), f"no market's refresh succeeded: {output}"

    # Everything went to PostgreSQL: no SQLite run/event/schedule storage appeared under DAGSTER_HOME.
    assert not sorted(home.rglob("*.db")), f"SQLite files under {home}: {sorted(home.rglob('*.db'))}"

    instance = DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        runs = {run.run_id: run for run in instance.get_runs()}
        assert sorted(runs) == sorted(reported), "the runs stored in PostgreSQL are not the ones the CLI ran"
        partitions = sorted(run.tags.get("dagster/partition") or "" for run in runs.values())
        assert partitions == sorted(markets) or (len(markets) == 1 and partitions == [""]), partitions
        for run_id, run in runs.items():
            summary = reported[run_id]
            assert run.status == (DagsterRunStatus.SUCCESS if summary["success"] else DagsterRunStatus.FAILURE)
            materialised = {
                e.dagster_event.asset_key.to_user_string()
                for e in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
            }
            assert materialised == summary["materialised"], f"run {run_id}: {materialised ^ summary['materialised']}"
            assert "mmm_posterior" in materialised, f"run {run_id}: the fit's output is not stored"
            evaluations = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
            passed = sum(e.dagster_event.event_specific_data.passed for e in evaluations)
            assert (passed, len(evaluations)) == summary["checks"], f"run {run_id}: check results differ"
            assert evaluations, f"run {run_id}: no check results stored"
        # The instance's market partitions, registered by the CLI, are in PostgreSQL too.
        assert sorted(instance.get_dynamic_partitions("market")) == sorted(markets)
    finally:
        instance.dispose()

    # The same, with plain SQL against the server: Dagster's own tables in database `dagster`.
    conn = postgres_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT run_id, status FROM runs")
            assert dict(cur.fetchall()) == {run_id: run.status.value for run_id, run in runs.items()}
            cur.execute(
                "SELECT run_id, count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
                "GROUP BY run_id"
            )
            assert dict(cur.fetchall()) == {run_id: len(reported[run_id]["materialised"]) for run_id in runs}
    finally:
        conn.close()

    # MLflow: one MLflow run per Dagster run, each passing market's champion, artifacts in the artifact store.
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(cfg.operations.mlflow_experiment)
    assert experiment is not None, f"no MLflow experiment {cfg.operations.mlflow_experiment!r} on the server"
    mlflow_runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags.get("dagster_run_id") for r in mlflow_runs) == sorted(runs)
    passing = [run.tags.get("dagster/partition") or markets[0] for run_id, run in runs.items()
               if reported[run_id]["success"]]
    champions = [  # the registry keeps a model per market; a market whose gates passed has its champion
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
            cur.execute("SELECT count(*) FROM runs")
            assert cur.fetchone()[0] == len(mlflow_runs)
            cur.execute("SELECT name FROM registered_model_aliases WHERE alias = %s", (tracking.CHAMPION,))
            assert sorted(name for (name,) in cur.fetchall()) == sorted(c.name for c in champions)
    finally:
        conn.close()
