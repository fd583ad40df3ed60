"""Security: SQL from quoted identifiers and bound values only, nothing unpickled, secrets only from the environment
and never in logs, metadata, MLflow or alerts, and the UI on 127.0.0.1 by default.

That a landing file's column names never reach SQL (quotes, spaces, SQL keywords, unicode all work once mapped) is
test_bad_inputs.py::test_source_names_with_quotes_spaces_sql_and_unicode_are_only_mapped; that unsafe canonical
names are refused is its catalogue (unsafe-canonical-name, canonical-name-with-space, reserved-canonical-name).
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import DagsterEventType, DagsterInstance, RetryPolicy, serialize_value

from mmm_assets import cli
from mmm_assets.core.config import DEFAULT_MARKET, ConfigError, load_config
from mmm_assets.core.config.paths import PROJECT_DIR
from mmm_assets.core.stores import tracking
from mmm_assets.core.stores.duckdb_store import read_table, replace_market, table_exists
from mmm_assets.defs.alerts import run_failure_alert_sensor
from mmm_assets_tests.conftest import SMALL
from mmm_assets_tests.core.stores.test_alerts import SECRET, Webhook
from mmm_assets_tests.defs.conftest import evaluate_sensor
from mmm_assets_tests.system.test_faults import mlflow_http_env  # noqa: F401  (a fixture used below)

SOURCES = sorted((PROJECT_DIR / "mmm_assets").rglob("*.py"))
#: Upper-case SQL words: text holding one of them is treated as SQL.
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|DESCRIBE|FROM|WHERE|INTO|TABLE)\b")
#: The functions that validate and quote an identifier; nothing else may be formatted into SQL text.
QUOTERS = {"quote_ident", "_table", "_sql_type"}
#: Deserialisers that run code, unsafe YAML loaders, and the eval / exec builtins (not methods such as x.eval()).
UNPICKLING = re.compile(
    r"\b(pickle|cloudpickle|joblib|dill|shelve|marshal)\b|read_pickle|allow_pickle\s*=\s*True|torch\.load"
    r"|yaml\.(unsafe_load|full_load)|Loader=yaml\.(Loader|FullLoader|UnsafeLoader)|(?<![.\w])(eval|exec)\("
)


def _is_quoted(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in QUOTERS


def _formatted_into_sql(tree: ast.AST) -> Iterator[ast.expr]:
    """Every expression formatted into SQL-looking text: f-string fields, ``str.format`` and ``%`` arguments."""
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(str(part.value) for part in node.values if isinstance(part, ast.Constant))
            if SQL_WORDS.search(text):
                yield from (part.value for part in node.values if isinstance(part, ast.FormattedValue))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            template = node.func.value
            if (isinstance(template, ast.Constant) and SQL_WORDS.search(str(template.value))) or any(
                _is_quoted(keyword.value) for keyword in node.keywords
            ):
                yield from [*node.args, *(keyword.value for keyword in node.keywords)]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant):
            if SQL_WORDS.search(str(node.left.value)):
                yield node.right


def test_sql_text_is_formatted_from_quoted_identifiers_only() -> None:
    """Identifiers go through quote_ident / _table; values never are formatted into SQL (they are bound)."""
    spliced = [(path, expr) for path in SOURCES for expr in _formatted_into_sql(ast.parse(path.read_text()))]
    offenders = [f"{path.relative_to(PROJECT_DIR)}:{expr.lineno}: {ast.unparse(expr)}"
                 for path, expr in spliced if not _is_quoted(expr)]
    assert not offenders, "values formatted into SQL text:\n" + "\n".join(offenders)
    assert len(spliced) >= 5  # the scan does see the SQL the package builds


def test_values_travel_as_data_not_sql(tmp_path: Path) -> None:
    hostile = "x'); DROP TABLE t; --"
    with duckdb.connect(str(tmp_path / "t.duckdb")) as conn:
        replace_market(conn, "t", pd.DataFrame({"note": [hostile], "value": [1.0]}), "north", scenario=hostile)
        assert not table_exists(conn, "t' OR '1'='1")  # a bound parameter, not SQL
        assert read_table(conn, "t")[["scenario", "note"]].values.tolist() == [[hostile, hostile]]


def test_nothing_is_unpickled_or_evaluated() -> None:
    """No pickle / cloudpickle / joblib loading, unsafe YAML or eval in the package: user files are parsed as data.

    (Dagster's own FilesystemIOManager pickles asset outputs under $DAGSTER_HOME/storage: the instance's folder,
    written by the pipeline itself, never a path a user supplies.)
    """
    hits = [f"{path.relative_to(PROJECT_DIR)}:{number}: {line.strip()}"
            for path in SOURCES for number, line in enumerate(path.read_text().splitlines(), 1)
            if UNPICKLING.search(line)]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (f"http://mmm:{SECRET}@127.0.0.1:5000/mlflow?token={SECRET}#x", "http://127.0.0.1:5000/mlflow"),
        (f"https://{SECRET}@tracking.example.com", "https://tracking.example.com"),
        ("http://[::1]:5000/", "http://[::1]:5000/"),
        ("sqlite:////srv/mlruns/mlflow.db", "sqlite:////srv/mlruns/mlflow.db"),
        ("databricks", "databricks"),
    ],
)
def test_tracking_uris_are_shown_without_credentials(uri: str, shown: str) -> None:
    assert tracking.display_uri(uri) == shown


@pytest.mark.parametrize(
    "operations",
    [
        {"alert_webhook_url": f"https://hooks.example.com/services/{SECRET}"},
        {"alert_webhook_env": f"https://hooks.example.com/services/{SECRET}"},
        {"mlflow_tracking_uri": f"http://mmm:{SECRET}@mlflow.example.com"},
    ],
    ids=["webhook-url-key", "url-as-variable-name", "tracking-uri-key"],
)
def test_secrets_cannot_live_in_the_scenario_file(write_config, operations: dict) -> None:
    """Only the names of the variables holding secrets are configurable; the error does not echo the value."""
    with pytest.raises(ConfigError) as raised:
        load_config(write_config({"operations": operations}))
    assert "operations." in str(raised.value) and SECRET not in str(raised.value)


def test_the_ui_and_mlflow_listen_on_localhost_by_default() -> None:
    makefile = (PROJECT_DIR / "Makefile").read_text()
    assert re.search(r"^HOST \?= 127\.0\.0\.1$", makefile, flags=re.MULTILINE)
    recipes = dict(re.findall(r"^(dev|mlflow):.*\n\t(.+)$", makefile, flags=re.MULTILINE))
    assert "-h $(HOST)" in recipes["dev"] and "--host $(HOST)" in recipes["mlflow"]


def _texts(instance: DagsterInstance, run_id: str) -> Iterator[str]:
    """Everything Dagster recorded of a run: the run (config, tags), its event log, its materialisation metadata."""
    yield serialize_value(instance.get_run_by_id(run_id))
    yield from (serialize_value(entry) for entry in instance.all_logs(run_id))
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        yield from (f"{key}={value.value}" for key, value in entry.asset_materialization.metadata.items())


@contextlib.contextmanager
def _failing_tracking_server() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering every request with 500, as a broken tracking server; its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500)
            self.end_headers()

        do_POST = do_GET  # noqa: N815 -- http.server's handler name

        def log_message(self, *args) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
@pytest.mark.usefixtures("mlflow_http_env")
def test_planted_secrets_appear_nowhere(write_config, tmp_path: Path, monkeypatch, capfd, caplog) -> None:
    """A refresh with a secret webhook URL; a refresh failing on a tracking server that answers 500 to a URI with
    credentials (MLflow's own error, which quotes the URI, is the one reported); the alert about it."""
    path = write_config(SMALL)
    cfg = load_config(path)
    monkeypatch.setenv("MMM_CONFIG", str(path))
    instance = DagsterInstance.get()
    with Webhook() as hook, _failing_tracking_server() as port:
        monkeypatch.setenv("MMM_ALERT_WEBHOOK_URL", hook.url)
        assert cli.main(["run", "--config", str(path)]) == 0
        good = instance.get_runs(limit=1)[0].run_id

        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://mmm:{SECRET}@127.0.0.1:{port}/")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        # mmm_posterior's retry policy still runs its two retries (each quoting the URI again), without the 15 s and
        # 30 s waits between them
        monkeypatch.setattr(RetryPolicy, "calculate_delay", lambda self, attempt_num: 0)
        assert cli.main(["run", "--config", str(path)]) == 3  # infrastructure
        failed = instance.get_runs(limit=1)[0].run_id
        evaluate_sensor(run_failure_alert_sensor, failed, DagsterEventType.RUN_FAILURE)
        monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert len(hook.bodies) == 1  # the secret webhook URL was used

    materialised = instance.all_logs(good, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    assert len(materialised) >= 12
    assert len(instance.all_logs(failed, of_type=DagsterEventType.STEP_UP_FOR_RETRY)) == 2  # each attempt is read
    for run_id in (good, failed):
        assert not [text for text in _texts(instance, run_id) if SECRET in text]

    client = tracking.client_for(cfg)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.operations.mlflow_experiment).experiment_id])
    recorded = {**run.data.params, **run.data.tags}
    assert recorded and not {k: v for k, v in recorded.items() if SECRET in v}
    for version in client.search_model_versions(f"name='{tracking.model_name(cfg.for_market(DEFAULT_MARKET))}'"):
        assert SECRET not in json.dumps(version.tags) + version.source

    (alert,) = [json.loads(line) for line in cfg.paths.alerts_log.read_text().splitlines()]
    assert f"API request to http://127.0.0.1:{port}/api/2.0/mlflow/" in alert["message"]
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err + caplog.text
    leaked = [str(p) for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaked, leaked
