"""The deployment profile in deploy/, checked here as far as it can be without a cluster.

deploy/dagster.yaml is validated against Dagster's own instance schema and each class it names is built from it;
the Helm values are held to the same settings and to the module workspace.yaml loads; the code location image's
command is run here and answers over gRPC; the MLflow server's manifest keeps its credentials in a Secret.
(mmm_assets_tests/system/test_postgres.py runs the same instance and MLflow server against a real PostgreSQL server.)
"""

import importlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from mmm_assets.core.config.paths import PROJECT_DIR
from mmm_assets_tests.system.servers import start_server, stop_server

DEPLOY = PROJECT_DIR / "deploy"
INSTANCE = DEPLOY / "dagster.yaml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
MLFLOW_DOCKERFILE = DEPLOY / "mlflow" / "Dockerfile"
MLFLOW_MANIFEST = DEPLOY / "k8s" / "mlflow.yaml"
ENV_MANIFEST = DEPLOY / "k8s" / "mmm-env.yaml"
#: The environment deploy/dagster.yaml reads its PostgreSQL settings from, with stand-in values.
PG_ENV = {
    "DAGSTER_PG_HOST": "pg.example.internal",
    "DAGSTER_PG_PORT": "6543",
    "DAGSTER_PG_DB": "dagster_db",
    "DAGSTER_PG_USERNAME": "dagster_user",
    "DAGSTER_PG_PASSWORD": "s3cr3t/with@odd:chars",
}
#: The pool the fit steps declare (mmm_assets/defs/model.py) and the profile bounds.
FIT_POOL = "mmm_fit"
#: Seconds the code location's gRPC server may take to import the stack and answer.
GRPC_START_TIMEOUT_S = 180
#: Seconds the gRPC server may take to stop before SIGKILL.
GRPC_STOP_GRACE_S = 30


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def pyproject() -> dict:
    return tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())


def pinned(requirement: str) -> tuple[str, str]:
    """('mlflow', '3.17.2') from 'mlflow==3.17.2'; anything but an exact pin fails."""
    name, sep, version = requirement.partition("==")
    assert sep and version, f"{requirement!r} is not an exact pin"
    return name.strip().lower(), version.strip()


def workspace_location() -> dict:
    (entry,) = load_yaml(PROJECT_DIR / "workspace.yaml")["load_from"]
    return entry["python_module"]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            logical.append(current)
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for op, args in instructions:
        if op == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pg_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    return PG_ENV


@pytest.fixture
def instance_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "deploy_home"
    folder.mkdir()
    (folder / "dagster.yaml").write_text(INSTANCE.read_text())
    return folder


# --- deploy/dagster.yaml -------------------------------------------------------------------------------------------


def test_instance_config_passes_dagsters_schema(pg_env, instance_dir: Path) -> None:
    from dagster._core.instance.config import dagster_instance_config

    config, custom_class = dagster_instance_config(str(instance_dir))
    assert custom_class is None
    assert set(config["storage"]) == {"postgres"}
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"


def test_instance_schema_check_can_fail(pg_env, tmp_path: Path) -> None:
    """The validator really rejects a wrong profile (a misspelt key; limits in two places)."""
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._core.instance.config import dagster_instance_config

    raw = load_yaml(INSTANCE)
    misspelt = {**raw, "concurrency": {**raw["concurrency"], "pool": raw["concurrency"]["pools"]}}
    del misspelt["concurrency"]["pools"]
    twice = {**raw, "run_coordinator": {**raw["run_coordinator"], "config": {"max_concurrent_runs": 2}}}
    for broken in (misspelt, twice):
        folder = tmp_path / f"broken_{id(broken)}"
        folder.mkdir()
        (folder / "dagster.yaml").write_text(yaml.safe_dump(broken))
        with pytest.raises(DagsterInvalidConfigError):
            dagster_instance_config(str(folder))


def test_credentials_are_read_from_the_environment(pg_env, instance_dir: Path) -> None:
    """Every PostgreSQL setting is an `env:` entry, and the URL dagster-postgres builds is made of those values."""
    from dagster._config import process_config, resolve_to_config_type
    from dagster_postgres import DagsterPostgresStorage
    from dagster_postgres.utils import pg_url_from_config
    from sqlalchemy.engine import make_url

    postgres_db = load_yaml(INSTANCE)["storage"]["postgres"]["postgres_db"]
    literal = {key: value for key, value in postgres_db.items() if key != "scheme" and not isinstance(value, dict)}
    assert not literal, f"{INSTANCE}: literal PostgreSQL settings {literal}; read them from env vars"
    assert {value["env"] for key, value in postgres_db.items() if key != "scheme"} == set(PG_ENV)

    section = load_yaml(INSTANCE)["storage"]["postgres"]
    result = process_config(resolve_to_config_type(DagsterPostgresStorage.config_type()), section)
    assert result.success, result.errors
    url = make_url(pg_url_from_config(result.value))  # as SQLAlchemy reads it when dagster-postgres connects
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+psycopg2", PG_ENV["DAGSTER_PG_USERNAME"], PG_ENV["DAGSTER_PG_PASSWORD"],
        PG_ENV["DAGSTER_PG_HOST"], int(PG_ENV["DAGSTER_PG_PORT"]), PG_ENV["DAGSTER_PG_DB"],
    )


def test_missing_password_variable_is_an_error(pg_env, monkeypatch) -> None:
    from dagster._config import process_config, resolve_to_config_type
    from dagster_postgres import DagsterPostgresStorage

    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    section = load_yaml(INSTANCE)["storage"]["postgres"]
    result = process_config(resolve_to_config_type(DagsterPostgresStorage.config_type()), section)
    assert not result.success
    assert "DAGSTER_PG_PASSWORD" in str(result.errors)


def test_every_class_the_profile_names_imports_and_accepts_its_config(pg_env, instance_dir, monkeypatch) -> None:
    """Storage, run coordinator and the K8sRunLauncher are built from the profile, as the instance builds them.

    The launcher's only contact with a cluster (loading the in-cluster kube config) is replaced; everything else,
    the import, the config schema and the constructor's own checks, runs as in a pod.
    """
    import dagster_k8s.launcher
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.launcher import RunLauncher
    from dagster._core.run_coordinator import RunCoordinator
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    monkeypatch.setattr(dagster_k8s.launcher, "load_kubernetes_config", lambda **_: None)
    ref = InstanceRef.from_dir(str(instance_dir))
    expected = {
        "run_storage_data": PostgresRunStorage,
        "event_storage_data": PostgresEventLogStorage,
        "schedule_storage_data": PostgresScheduleStorage,
        "run_coordinator_data": RunCoordinator,
        "run_launcher_data": RunLauncher,
    }
    for field, base in expected.items():
        data = getattr(ref, field)
        klass = getattr(importlib.import_module(data.module_name), data.class_name)
        assert issubclass(klass, base), f"{data.module_name}.{data.class_name} is not a {base.__name__}"
        if base is RunLauncher:
            launcher = data.rehydrate(as_type=K8sRunLauncher)
            assert launcher.instance_config_map == load_yaml(INSTANCE)["run_launcher"]["config"]["instance_config_map"]
        elif base is RunCoordinator:
            data.rehydrate(as_type=RunCoordinator)
        else:  # storages connect on construction: check their config against their own schema instead
            from dagster._config import process_config, resolve_to_config_type

            result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
            assert result.success, result.errors


def test_a_misspelt_class_fails_the_import_check(pg_env, tmp_path: Path) -> None:
    from dagster._core.instance.ref import InstanceRef

    raw = load_yaml(INSTANCE)
    raw["run_launcher"] = {**raw["run_launcher"], "class": "K8sRunLaucher"}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(raw))
    data = InstanceRef.from_dir(str(tmp_path)).run_launcher_data
    with pytest.raises(Exception, match="K8sRunLaucher"):
        data.rehydrate()


def test_queue_and_pool_limits_load_as_dagster_reads_them(pg_env, instance_dir: Path, tmp_path: Path) -> None:
    """The profile's run queue and pools, read by a real instance (SQLite here in place of PostgreSQL)."""
    from dagster import DagsterInstance
    from dagster._core.instance.config import PoolGranularity

    raw = load_yaml(INSTANCE)
    del raw["run_launcher"]
    raw["storage"] = {"sqlite": {"base_dir": str(tmp_path / "sqlite_home")}}
    home = tmp_path / "limits_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(raw))
    instance = DagsterInstance.from_config(str(home))
    try:
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.pool_granularity == PoolGranularity.RUN
        assert concurrency.pool_config.default_pool_limit == raw["concurrency"]["pools"]["default_limit"] >= 1
        queue = concurrency.run_queue_config
        assert queue.max_concurrent_runs == raw["concurrency"]["runs"]["max_concurrent_runs"]
        assert [limit["key"] for limit in queue.tag_concurrency_limits] == ["dagster/partition"]
    finally:
        instance.dispose()


def test_the_fit_steps_declare_the_pool_the_profile_bounds() -> None:
    from mmm_assets.definitions import defs

    pools = {
        key.to_user_string(): spec_pool
        for assets_def in defs.resolve_asset_graph().assets_defs
        for key in assets_def.keys
        if (spec_pool := getattr(assets_def.op, "pool", None))
    }
    assert FIT_POOL in pools.values(), f"no asset declares pool {FIT_POOL!r}: {pools}"
    assert "mmm_posterior" in pools and pools["mmm_posterior"] == FIT_POOL


# --- Helm values ---------------------------------------------------------------------------------------------------


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _snake_keys(value):
    if isinstance(value, dict):
        return {_camel_to_snake(k): _snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


def test_helm_values_run_each_run_in_a_k8s_pod_from_the_code_location_image() -> None:
    import dagster_k8s

    values = load_yaml(HELM_VALUES)
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert hasattr(dagster_k8s, launcher["type"]), f"dagster_k8s has no {launcher['type']}"
    profile = load_yaml(INSTANCE)["run_launcher"]
    assert profile["class"] == launcher["type"]
    k8s, cfg = launcher["config"]["k8sRunLauncher"], profile["config"]
    assert k8s["jobNamespace"] == cfg["job_namespace"]
    assert [e["name"] for e in k8s["envConfigMaps"]] == cfg["env_config_maps"]
    assert [e["name"] for e in k8s["envSecrets"]] == cfg["env_secrets"]
    assert k8s["resources"] == cfg["run_k8s_config"]["container_config"]["resources"]
    assert _snake_keys(k8s["runK8sConfig"]["jobSpecConfig"]) == cfg["run_k8s_config"]["job_spec_config"]
    assert k8s["failPodOnRunFailure"] is cfg["fail_pod_on_run_failure"] is True


def test_helm_values_use_an_external_postgres_without_a_literal_password() -> None:
    values = load_yaml(HELM_VALUES)
    postgres, storage = values["postgresql"], load_yaml(INSTANCE)["storage"]["postgres"]["postgres_db"]
    assert postgres["enabled"] is False and postgres["postgresqlHost"]
    assert postgres["postgresqlPassword"] == "", "the password belongs in the Secret, not in the values"
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"] == load_yaml(INSTANCE)["run_launcher"]["config"][
        "postgres_password_secret"
    ]
    assert postgres["postgresqlScheme"] == storage["scheme"] == "postgresql+psycopg2"


def test_helm_values_queue_and_pools_match_the_profile(pg_env, tmp_path: Path) -> None:
    """The chart's `concurrency` values, in dagster.yaml's terms, equal the profile's and pass Dagster's schema."""
    from dagster._core.instance.config import dagster_instance_config

    values = load_yaml(HELM_VALUES)
    profile = load_yaml(INSTANCE)
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    as_instance = {
        "pools": _snake_keys(concurrency["pools"]),
        "runs": {
            "max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"],
            "tag_concurrency_limits": concurrency["runs"]["tagConcurrencyLimits"],  # rendered as written
        },
    }
    assert as_instance == profile["concurrency"]
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"
    # The chart renders run_coordinator.config only when a setting here is non-empty, and then an unset
    # maxConcurrentRuns as -1, which Dagster refuses next to `concurrency` (dagster-io/dagster#33225).
    set_here = {k: v for k, v in coordinator["config"]["queuedRunCoordinator"].items() if v not in (None, False, [], "")}
    assert not set_here, f"queuedRunCoordinator settings {set_here} would clash with the concurrency block"
    monitoring, retries = values["dagsterDaemon"]["runMonitoring"], values["dagsterDaemon"]["runRetries"]
    assert _snake_keys(monitoring) == profile["run_monitoring"]
    assert _snake_keys(retries) == profile["run_retries"]
    # What the chart renders for these parts is a valid instance for Dagster.
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
        "concurrency": as_instance,
        "run_monitoring": _snake_keys(monitoring),
        "run_retries": _snake_keys(retries),
    }))
    dagster_instance_config(str(tmp_path))
    assert values["telemetry"]["enabled"] is profile["telemetry"]["enabled"] is False


def test_helm_code_location_loads_what_workspace_yaml_loads() -> None:
    values = load_yaml(HELM_VALUES)
    users = values["dagster-user-deployments"]
    assert users["enabled"] is True
    (deployment,) = users["deployments"]
    assert deployment["image"]["repository"] and str(deployment["image"]["tag"])
    assert deployment["image"]["tag"] != "latest", "an immutable tag per build, so every run uses the same code"
    args = deployment["dagsterApiGrpcArgs"]
    location = workspace_location()
    assert args == ["-m", location["module_name"], "-a", location["attribute"]]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    profile = load_yaml(INSTANCE)["run_launcher"]["config"]
    assert [e["name"] for e in deployment["envConfigMaps"]] == profile["env_config_maps"]
    assert [e["name"] for e in deployment["envSecrets"]] == profile["env_secrets"]
    # The port the chart serves the location on is the one the image's own command uses.
    cmd = json.loads(dict(dockerfile_instructions(DOCKERFILE))["CMD"])
    assert cmd[cmd.index("-p") + 1] == str(deployment["port"])


# --- the code location image ---------------------------------------------------------------------------------------


def test_dockerfile_builds_the_module_workspace_yaml_loads() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    ops = dict(instructions)  # the last of each instruction
    base = ops["FROM"]
    assert base == "python:3.12-slim"
    version = tuple(int(p) for p in re.match(r"python:(\d+)\.(\d+)", base).groups())
    minimum = re.fullmatch(r">=\s*(\d+)\.(\d+)", pyproject()["project"]["requires-python"].strip())
    assert minimum and version >= tuple(int(p) for p in minimum.groups()), "the image's Python is too old"
    runs = " && ".join(args for op, args in instructions if op == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), "the image installs the project itself (pip install .)"
    assert "g++" in runs, "PyTensor needs a C++ compiler in the image"
    location = workspace_location()
    cmd = json.loads(ops["CMD"])
    assert cmd[:3] == ["dagster", "api", "grpc"]
    assert cmd[cmd.index("-m") + 1] == location["module_name"]
    assert cmd[cmd.index("-a") + 1] == location["attribute"]
    assert cmd[cmd.index("-h") + 1] == "0.0.0.0"
    # Everything copied exists in the project, and the scenario the image names is one of the copied files.
    workdir = Path(ops["WORKDIR"])
    copied = {}
    for op, args in instructions:
        if op == "COPY":
            *sources, target = shlex.split(args)
            for source in sources:
                assert (PROJECT_DIR / source).exists(), f"COPY {source}: not in the project"
                copied[(workdir / target).resolve()] = PROJECT_DIR / source
    config = Path(dockerfile_env(instructions)["MMM_CONFIG"])
    assert config.is_relative_to(workdir / "config") and (workdir / "config").resolve() in copied
    assert (PROJECT_DIR / config.relative_to(workdir)).is_file(), f"MMM_CONFIG={config}: not in the project"
    ignored = set(DOCKERIGNORE.read_text().split())
    assert {".venv", ".git", ".dagster_home", "data", "mlruns"} <= ignored


def test_code_location_command_serves_the_definitions(tmp_path: Path) -> None:
    """The image's command, run here (the project folder standing in for /opt/mmm_assets), answers over gRPC with
    the code location's repository, its job and the market partitions."""
    from dagster._grpc.client import DagsterGrpcClient

    instructions = dockerfile_instructions(DOCKERFILE)
    ops, image_env = dict(instructions), dockerfile_env(instructions)
    workdir = ops["WORKDIR"]
    port = free_port()
    cmd = json.loads(ops["CMD"])
    cmd[cmd.index("-h") + 1], cmd[cmd.index("-p") + 1] = "127.0.0.1", str(port)
    cmd[0] = str(Path(sys.executable).parent / cmd[0])
    env = {
        **os.environ,
        **{k: v.replace(workdir, str(PROJECT_DIR)) for k, v in image_env.items() if k != "DAGSTER_HOME"},
        "PYTENSOR_FLAGS": f"base_compiledir={PROJECT_DIR / '.cache' / 'pytensor'}",  # keep the shared warm cache
    }
    log = tmp_path / "grpc.log"
    with log.open("w") as out:
        server = start_server(cmd, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    try:
        deadline = time.monotonic() + GRPC_START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"`{' '.join(cmd)}` exited ({server.returncode}):\n{log.read_text()[-4000:]}")
            try:
                client.ping("ready")
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail(f"no gRPC answer in {GRPC_START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
                time.sleep(1)
        from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteRepositoryOrigin
        from dagster._serdes import deserialize_value

        listing = deserialize_value(client.list_repositories())
        (symbol,) = listing.repository_symbols
        assert symbol.attribute == workspace_location()["attribute"]
        origin = GrpcServerCodeLocationOrigin(host="127.0.0.1", port=port, location_name="mmm_assets")
        snapshot = client.external_repository(RemoteRepositoryOrigin(origin, symbol.repository_name))
        assert '"weekly_refresh"' in snapshot, "the code location does not serve job weekly_refresh"
        assert '"market"' in snapshot, "the code location does not serve the market partitions"
    finally:
        stop_server(server, GRPC_STOP_GRACE_S)


# --- MLflow server ---------------------------------------------------------------------------------------------------


def _mlflow_manifest() -> tuple[dict, dict]:
    docs = [d for d in yaml.safe_load_all(MLFLOW_MANIFEST.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) == {"Deployment", "Service"}
    return by_kind["Deployment"], by_kind["Service"]


def test_mlflow_server_image_matches_the_client_and_its_stores() -> None:
    deps = dict(pinned(r) for r in pyproject()["project"]["dependencies"])
    runs = " ".join(args for op, args in dockerfile_instructions(MLFLOW_DOCKERFILE) if op == "RUN")
    server_pins = dict(pinned(r) for r in re.findall(r"\b[a-z0-9_.-]+==[0-9][^\s]*", runs))
    assert server_pins["mlflow"] == deps["mlflow"], "the server runs the MLflow release the project's client uses"
    assert {"psycopg2-binary", "boto3"} <= set(server_pins), "PostgreSQL backend store and S3 artifacts need them"
    deployment, _ = _mlflow_manifest()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(":" + deps["mlflow"])


def test_mlflow_manifest_reads_its_stores_from_a_secret_and_stays_in_the_cluster() -> None:
    deployment, service = _mlflow_manifest()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION"):
        assert "secretKeyRef" in env[name].get("valueFrom", {}), f"{name} must come from a Secret"
        assert "value" not in env[name]
    assert not [a for a in container["args"] if "://" in a], "no store URI (with its credentials) in the args"
    assert "--serve-artifacts" in container["args"], "run pods reach the artifact store through the server"
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert service["spec"]["type"] == "ClusterIP"
    # The tracking URI every pod gets (mmm-env) names this Service, and the server answers that Host header.
    env_map = load_yaml(ENV_MANIFEST)
    uri = env_map["data"]["MLFLOW_TRACKING_URI"]
    host_port = re.match(r"http://([^/]+)$", uri).group(1)
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert host_port == f"{name}.{namespace}.svc.cluster.local:{service['spec']['ports'][0]['port']}"
    assert host_port in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    helm_namespace = load_yaml(HELM_VALUES)["runLauncher"]["config"]["k8sRunLauncher"]["jobNamespace"]
    assert namespace == deployment["metadata"]["namespace"] == env_map["metadata"]["namespace"] == helm_namespace


def test_no_credentials_are_written_in_the_deploy_folder() -> None:
    """No URL with a user:password, no non-empty password value, in any deploy file outside comments."""
    url_with_password = re.compile(r"://[^/\s:@<]+:[^@\s<]+@")
    password_value = re.compile(r"(?i)password[\"']?\s*[:=]\s*(?!\"\"|''|~|$)\S")  # a key ending in password
    offenders = []
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if url_with_password.search(code) or password_value.search(code):
                offenders.append(f"{path.relative_to(PROJECT_DIR)}:{number}: {line.strip()}")
    assert not offenders, "credentials written in deploy/:\n" + "\n".join(offenders)
