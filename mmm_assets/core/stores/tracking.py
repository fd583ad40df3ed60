"""MLflow lineage and the model registry with gated promotion.

Every fit is an MLflow run (started by dagster-mlflow, one per Dagster run) carrying the Dagster run id, the asset,
the code version and the data version as tags; the model and sampler settings as params; the fit's diagnostics and
every validation metric as metrics; the scenario YAML as an artifact; the feature table as the run's input dataset.
Each fit logs an MLflow model (MLflow's "models from code": ``mlflow_model.py`` with the posterior netCDF as its
artifact, loadable by ``mlflow.pyfunc.load_model`` without this package and without unpickling) and registers it as
a new version. The alias ``champion`` moves to a version only when all of its blocking gates passed; otherwise the
version is tagged as a rejected challenger with the failing gates, and the champion stays where it was.

The tracking URI is a secret when it embeds credentials: it is read from the environment, its ``user:password``
goes to MLflow through MLflow's own variables, and it is only ever shown with its credentials removed. A remote
tracking server is checked before every client is handed out: a few quick connection attempts, then
:class:`TrackingUnreachableError` naming the server (without credentials) and what to do, instead of MLflow's own
retries, which take minutes and quote the full URI in their errors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from importlib.metadata import version as installed_version
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.utils.time import get_current_time_millis

from mmm_assets.core.config import DATE_COLUMN, MMMConfig
from mmm_assets.core.records import Champion
from mmm_assets.core.stores.duckdb_store import MODELS_ROLE, exclusive, no_room_is_disk_space_error

CHAMPION = "champion"
#: Connection attempts to a remote tracking server, the wait for each, and the pause before the next (doubling).
REACH_ATTEMPTS = 3
REACH_TIMEOUT_S = 3.0
REACH_BACKOFF_S = 0.5
#: MLflow's own HTTP retries (defaults: 7 retries, 120 s timeout) once a server answered; the environment wins.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: MLflow's variables for HTTP basic auth: a ``user:password@`` in the tracking URI is moved into them.
CREDENTIAL_ENVS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
#: Local MLflow store layout under ``paths.mlflow_dir``.
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "artifacts"
#: The logged model's name in its run, its code (read by MLflow, not imported here: importing it sets MLflow's
#: model-from-code global), the name under which its code finds the posterior, and what serving it needs (pinned to
#: the versions that fitted it).
MODEL_ARTIFACT = "model"
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
POSTERIOR_ARTIFACT = "posterior"  # = mlflow_model.POSTERIOR
MODEL_REQUIREMENTS = ("mlflow", "pandas", "pymc-marketing")
#: The folder, under the models directory, where champions' posteriors are downloaded once and kept.
REGISTRY_CACHE = ".registry"
#: Suffix of a download in progress (renamed to the version's folder once complete).
PARTIAL = ".partial"


def tracking_uri(cfg: MMMConfig) -> str:
    """The tracking URI from the configured environment variable, or the embedded SQLite store of the project.

    A ``user:password@`` in it is handed to MLflow through its own variables (:data:`CREDENTIAL_ENVS`) and left out
    of the URI returned: MLflow quotes the URI in its error messages, which end up in the run's log.
    """
    uri = os.environ.get(cfg.operations.mlflow_tracking_uri_env)
    if not uri:
        return f"sqlite:///{cfg.paths.mlflow_dir / DB_FILE}"
    parts = urlsplit(uri)
    if not (parts.username and parts.password):
        return uri
    os.environ.update(zip(CREDENTIAL_ENVS, (unquote(parts.username), unquote(parts.password))))
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def is_embedded(cfg: MMMConfig) -> bool:
    """Whether the scenario uses the local store under paths.mlflow_dir (no tracking server in the environment)."""
    return not os.environ.get(cfg.operations.mlflow_tracking_uri_env)


def display_uri(uri: str) -> str:
    """``uri`` without user name, password, query string or fragment, safe to log and show."""
    parts = urlsplit(uri)
    has_authority = uri.partition(":")[2].startswith("//") if parts.scheme else uri.startswith("//")
    authority = "//" + parts.netloc.rpartition("@")[2] if has_authority else ""
    return (f"{parts.scheme}:" if parts.scheme else "") + authority + parts.path


class TrackingUnreachableError(RuntimeError):
    """The configured MLflow tracking server does not accept connections. The message never holds credentials."""


def ensure_reachable(cfg: MMMConfig) -> None:
    """Raise :class:`TrackingUnreachableError` unless a remote http(s) tracking server accepts a TCP connection."""
    uri = tracking_uri(cfg)
    parts = urlsplit(uri)
    if is_embedded(cfg) or parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return
    address = (parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme])
    for attempt in range(1, REACH_ATTEMPTS + 1):
        try:
            socket.create_connection(address, timeout=REACH_TIMEOUT_S).close()
            return
        except OSError as err:
            problem = err.strerror or type(err).__name__
        if attempt < REACH_ATTEMPTS:
            time.sleep(REACH_BACKOFF_S * 2 ** (attempt - 1))
    env = cfg.operations.mlflow_tracking_uri_env
    raise TrackingUnreachableError(
        f"MLflow is unreachable at {display_uri(uri)} ({problem}, {REACH_ATTEMPTS} attempts): start the tracking "
        f"server or correct ${env}; unset ${env} to use the local store in {cfg.paths.mlflow_dir}"
    )


def client_for(cfg: MMMConfig) -> MlflowClient:
    """A client of the scenario's tracking store; a remote server must be reachable (see :func:`ensure_reachable`)."""
    if is_embedded(cfg):
        cfg.paths.mlflow_dir.mkdir(parents=True, exist_ok=True)
    else:
        for name, value in MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        ensure_reachable(cfg)
    return MlflowClient(tracking_uri(cfg))


def ensure_experiment(client: MlflowClient, cfg: MMMConfig) -> str:
    """The experiment's id; created on first use (artifacts under ``paths.mlflow_dir`` for the embedded store)."""
    name = cfg.operations.mlflow_experiment
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = (cfg.paths.mlflow_dir / ARTIFACTS_DIR).as_uri() if is_embedded(cfg) else None
    return client.create_experiment(name, artifact_location=location)


def code_version(folder: Path) -> str:
    """The git commit of ``folder`` (with ``-dirty`` when it has uncommitted changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def _flatten(prefix: str, values: Mapping[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(name, value))
        else:
            out[name] = str(value)
    return out


def fit_params(cfg: MMMConfig) -> dict[str, str]:
    """Model and sampler settings as flat MLflow params."""
    return {
        **_flatten("model", cfg.model.model_dump()),
        **_flatten("sampler", cfg.sampler.model_dump()),
        "channels": ",".join(cfg.channels),
        "controls": ",".join(cfg.controls),
        "data.source": cfg.data.source,
    }


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], prefix: str = "") -> None:
    """Log ``metrics`` (NaN left out) to the run in one batch, each name prefixed with ``prefix``."""
    now = get_current_time_millis()
    client.log_batch(
        run_id, metrics=[Metric(f"{prefix}{k}", float(v), now, 0) for k, v in metrics.items() if v == v]
    )


def log_fit(
    client: MlflowClient,
    run_id: str,
    cfg: MMMConfig,
    *,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    config_file: Path,
    features: pd.DataFrame,
    data_version: str,
    records: Mapping[str, dict] | None = None,
) -> None:
    """Tags, params, metrics, the scenario file, ``records`` as JSON artifacts (``<name>.json``), and the feature
    table as the input dataset (the posterior is logged once, as the registered model's artifact:
    :func:`register_version`)."""
    client.log_batch(
        run_id,
        params=[Param(k, v) for k, v in fit_params(cfg).items()],
        tags=[RunTag(k, str(v)) for k, v in {**tags, "data_version": data_version}.items()],
    )
    log_metrics(client, run_id, metrics)
    client.log_artifact(run_id, str(config_file), artifact_path="config")
    for name, record in (records or {}).items():
        client.log_dict(run_id, record, f"{name}.json")
    dataset = mlflow.data.from_pandas(features, name="mmm_features", digest=data_version)
    client.log_inputs(
        run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])]
    )


def model_name(cfg: MMMConfig) -> str:
    """The registered model of the configuration's scenario and market, ``<registered_model>.<scenario>.<market>``:
    one per scenario and market, each with its own champion (scenarios are namespaces, so two scenarios naming a
    market alike never move each other's champion). Scenario names hold no '/' or ':' (which MLflow refuses) and
    market names no '.', so the market is always the name's last part."""
    if cfg.market is None:
        raise ValueError("the registry keeps a model per market: narrow the configuration with for_market first")
    return f"{cfg.operations.registered_model}.{cfg.scenario}.{cfg.market}"


def register_version(
    client: MlflowClient, cfg: MMMConfig, run_id: str, tags: Mapping[str, str], model_file: Path
) -> str:
    """Log ``model_file`` as the run's MLflow model and register it as a new version of the market's model; returns
    the version number. The version's source is the logged model (``models:/m-...``), whose one ``.nc`` artifact is
    the posterior :func:`champion_model_file` reads back."""
    name = model_name(cfg)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="PyMC-Marketing MMM fitted by mmm_assets: predicts the KPI of weekly spend "
            "(mlflow.pyfunc; the netCDF posterior is its artifact)"
        )
    with _tracking_uri(tracking_uri(cfg)), warnings.catch_warnings():
        # an input example would be predicted at logging time (seconds); the signature says what the model takes
        warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
        info = Model.log(
            artifact_path=None, name=MODEL_ARTIFACT, flavor=mlflow.pyfunc, run_id=run_id,
            python_model=str(MODEL_CODE), artifacts={POSTERIOR_ARTIFACT: str(model_file)},
            pip_requirements=[f"{p}=={installed_version(p)}" for p in MODEL_REQUIREMENTS], signature=_signature(cfg),
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
    return version


def _signature(cfg: MMMConfig) -> ModelSignature:
    """What the model takes (the week and the fit's spend and control columns) and gives (the week, the KPI's
    posterior mean and 94 % interval); MLflow checks a frame against it before predicting."""
    columns = [*cfg.channels, *cfg.controls]
    outputs = ["predicted_mean", "predicted_low", "predicted_high"]
    return ModelSignature(
        inputs=Schema([ColSpec("datetime", DATE_COLUMN), *(ColSpec("double", c) for c in columns)]),
        outputs=Schema([ColSpec("datetime", DATE_COLUMN), *(ColSpec("double", c) for c in outputs)]),
    )


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (which logs models) pointed at ``uri`` for the block; the previous URI restored after."""
    previous = mlflow.get_tracking_uri()
    if previous == uri:
        yield
        return
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def promote_or_reject(client: MlflowClient, cfg: MMMConfig, version: str, failed: list[str]) -> str:
    """Move ``champion`` to ``version`` when no gate failed; otherwise tag it a rejected challenger. Returns which."""
    name = model_name(cfg)
    if failed:
        client.set_model_version_tag(name, version, "status", "rejected_challenger")
        client.set_model_version_tag(name, version, "failed_checks", ",".join(failed))
        return "rejected_challenger"
    client.set_model_version_tag(name, version, "status", CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, version)
    return CHAMPION


def crown(client: MlflowClient, cfg: MMMConfig, version: str, failed: list[str]) -> Champion:
    """Promote ``version`` to ``champion`` (it passed every gate) and return the champion with its posterior file.

    Refuses a version with failed gates: the blocking checks already keep such a run from getting here, and a
    selection that leaves them out must not promote it either."""
    if failed:
        raise ValueError(f"model {model_name(cfg)} v{version} failed its gates ({', '.join(failed)}): not promoted")
    promote_or_reject(client, cfg, version, [])
    crowned, path = champion_model_file(client, cfg)
    return Champion(
        path=str(path), model_name=crowned.name, version=str(crowned.version),
        data_version=crowned.tags.get("data_version", ""), mlflow_run_id=crowned.run_id or "", source=crowned.source,
    )


#: What the registry answers when the model or its champion alias does not exist yet (MLflow's error codes).
NOT_REGISTERED = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def champion(client: MlflowClient, cfg: MMMConfig) -> ModelVersion | None:
    """The version the registry's ``champion`` alias points at; None before the first promotion. Any other error
    (a tracking server answering 500, say) is raised: taken for "no champion", it made the refresh fit cold and fail
    only afterwards, when the fit is logged, and the step's retries fitted it twice more."""
    try:
        return client.get_model_version_by_alias(model_name(cfg), CHAMPION)
    except MlflowException as err:
        if err.error_code in NOT_REGISTERED:
            return None
        raise


def champion_model_file(client: MlflowClient, cfg: MMMConfig) -> tuple[ModelVersion, Path]:
    """The champion version and its posterior netCDF, downloaded once into the models folder's registry cache."""
    version = champion(client, cfg)
    if version is None:
        raise LookupError(
            f"the registry has no {CHAMPION!r} version of model {model_name(cfg)!r} yet: "
            "a refresh whose gates all pass promotes one"
        )
    registry = cfg.paths.models_dir / REGISTRY_CACHE
    cache = registry / f"{version.name}-v{version.version}"
    if not cache.exists():
        registry.mkdir(parents=True, exist_ok=True)
        # one download of this model's versions at a time, so a .partial found under the lock is a dead one's
        with (no_room_is_disk_space_error(MODELS_ROLE, registry, cfg.operations.min_free_disk_mb),
              exclusive(registry / f"{version.name}.lock", on_wait=lambda pid: None)):
            if not cache.exists():
                _download(version, cache, tracking_uri(cfg))
    files = sorted(cache.rglob("*.nc"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one netCDF posterior in {cache}, found {len(files)}")
    return version, files[0]


def _download(version: ModelVersion, cache: Path, uri: str) -> None:
    """Download ``version``'s artifacts to ``cache`` all or nothing: into ``<cache>.partial``, renamed when complete.

    A partial download takes disk space nothing ever reads (a full models disk stayed full because of one), so it
    is removed when the download fails, and partial downloads of this model left by a killed process are removed
    before a new one starts. The caller holds the model's download lock.
    """
    for stale in cache.parent.glob(f"{version.name}-v*{PARTIAL}"):
        _remove(stale)
    staging = cache.with_name(cache.name + PARTIAL)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(staging), tracking_uri=uri)
        os.replace(staging, cache)
    except BaseException:
        _remove(staging)
        raise


def _remove(path: Path) -> None:
    """Delete ``path``, a folder or a file, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def run_url(cfg: MMMConfig, experiment_id: str, run_id: str) -> str:
    """Where a person opens the run: the tracking server, or `make mlflow` for the embedded store."""
    base = cfg.operations.mlflow_ui_url if is_embedded(cfg) else display_uri(tracking_uri(cfg))
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
