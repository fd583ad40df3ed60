"""A real `dagster dev` over a temporary instance, and Debian's Chromium driven headless by Playwright.

The server is started the way `make dev` starts it (same command, the project's workspace.yaml, the project folder as
working directory, a DAGSTER_HOME holding a copy of the project's dagster.yaml), in its own process group, with its
output in a file. The browser is never downloaded: Playwright drives the system Chromium (``MMM_CHROMIUM``,
default /usr/bin/chromium) with a fresh profile and no background networking.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mmm_assets.core.config.paths import PROJECT_DIR
from mmm_assets_tests.system.servers import start_server

CHROMIUM = Path(os.environ.get("MMM_CHROMIUM", "/usr/bin/chromium"))
#: The network is closed: without the background-networking flags Chromium hangs on refused connections.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 1000}
#: Where screenshots are also written, under stable names, when set (`make screenshots`: docs/screenshots).
SCREENSHOTS_ENV = "MMM_SCREENSHOTS_DIR"
#: Seconds for the code location to load (PyMC is imported lazily, so it is normally ~10 s).
LOAD_TIMEOUT_S = 180
#: Seconds for the server to stop after SIGTERM before the whole process group is killed.
STOP_TIMEOUT_S = 20

WORKSPACE_QUERY = """
query UiTestWorkspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message stack }
  }
}
"""


class CodeLocationError(AssertionError):
    """The code location did not load: its error, or a timeout, with the tail of the server's log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DagsterDev:
    """One `dagster dev` process group and where its output goes."""

    url: str
    proc: subprocess.Popen
    log: Path
    _log_handle: object = field(repr=False, default=None)
    load_seconds: float | None = None

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 10.0) -> dict:
        """POST to the webserver's /graphql; raises on HTTP errors and on GraphQL errors."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def stop(self) -> None:
        """SIGTERM to `dagster dev` (it stops its webserver, daemon and code server), then SIGKILL to the group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of the group: code server, run workers
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self._log_handle is not None:
            self._log_handle.close()


#: The developer's own overrides never reach the server.
UNSET_ENV = ("MMM_CONFIG", "MMM_DUCKDB_PATH", "MLFLOW_TRACKING_URI", "MMM_ALERT_WEBHOOK_URL")


def start_dagster_dev(workspace: Path, home: Path, log: Path, env: dict[str, str] | None = None) -> DagsterDev:
    """`dagster dev -w WORKSPACE -h 127.0.0.1 -p PORT` from the project folder, as `make dev` runs it."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_DIR / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if k not in UNSET_ENV}
    full_env = {**inherited, "DAGSTER_HOME": str(home), **(env or {})}
    dagster = Path(sys.executable).parent / "dagster"  # the CLI of the environment running the tests
    if not dagster.exists():
        dagster = Path(shutil.which("dagster") or "dagster")
    handle = log.open("w")
    proc = start_server(  # its own process group, so teardown stops every child with it
        [str(dagster), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_DIR, env=full_env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    return DagsterDev(f"http://127.0.0.1:{port}", proc, log, handle)


def wait_for_code_location(server: DagsterDev, timeout: float = LOAD_TIMEOUT_S) -> list[str]:
    """Poll /graphql until every code location of the workspace has loaded; returns their names.

    Raises :class:`CodeLocationError` with the location's error (message and stack) when one fails to load, when
    the server exits, or when ``timeout`` passes, always with the tail of the server's log.
    """
    deadline = time.monotonic() + timeout
    last = "no answer from the webserver yet"
    while True:
        if server.proc.poll() is not None:
            raise CodeLocationError(
                f"dagster dev exited with code {server.proc.returncode} before the code location loaded\n"
                f"--- server log ({server.log}) ---\n{server.log_tail()}"
            )
        try:
            workspace = server.graphql(WORKSPACE_QUERY, timeout=5)["workspaceOrError"]
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as err:
            last = f"webserver not answering: {err}"
            workspace = None
        if workspace is not None:
            if workspace["__typename"] == "PythonError":
                raise CodeLocationError(
                    f"the workspace failed to load: {workspace['message']}\n{''.join(workspace['stack'])}\n"
                    f"--- server log ({server.log}) ---\n{server.log_tail()}"
                )
            entries = workspace["locationEntries"]
            for entry in entries:
                loaded = entry["locationOrLoadError"]
                if loaded is not None and loaded["__typename"] == "PythonError":
                    raise CodeLocationError(
                        f"code location {entry['name']!r} failed to load: {loaded['message']}\n"
                        f"{''.join(loaded['stack'])}\n--- server log ({server.log}) ---\n{server.log_tail()}"
                    )
            ready = [e["name"] for e in entries if e["loadStatus"] == "LOADED" and e["locationOrLoadError"]]
            if entries and len(ready) == len(entries):
                return ready
            last = ", ".join(f"{e['name']}: {e['loadStatus']}" for e in entries) or "no code location in workspace"
        if time.monotonic() > deadline:
            raise CodeLocationError(
                f"code location not loaded after {timeout:.0f} s ({last})\n"
                f"--- server log ({server.log}) ---\n{server.log_tail()}"
            )
        time.sleep(1)


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DagsterDev]]:
    """Start `dagster dev` servers; every one is stopped, with its whole process group, at teardown."""
    started: list[DagsterDev] = []

    def start(workspace: Path, env: dict[str, str] | None = None, name: str = "server") -> DagsterDev:
        folder = tmp_path_factory.mktemp(name)
        server = start_dagster_dev(workspace, folder / "dagster_home", folder / "dagster_dev.log", env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def chromium_or_skip() -> Path:
    """The Chromium binary; CI installs Debian's (see .ci/run), so there a missing one fails instead of skipping."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"no Chromium at {CHROMIUM}: `apt-get install chromium` (or set MMM_CHROMIUM)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """A headless Chromium (the system one, never downloaded) with a fresh profile."""
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium_profile")),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport=VIEWPORT,
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    try:
        yield page
    finally:
        page.close()


@dataclass
class Screenshots:
    """Saves each page into the test's folder and, when $MMM_SCREENSHOTS_DIR is set, there under a stable name."""

    folder: Path
    published: Path | None

    def take(self, page, name: str, publish: bool = False, **options) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}.png"
        options.setdefault("animations", "disabled")  # dialogs fade in: fast-forward, never a half-transparent one
        page.screenshot(path=str(path), **options)
        if publish and self.published is not None:
            self.published.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.published / path.name)
        return path


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Screenshots:
    target = os.environ.get(SCREENSHOTS_ENV)
    published = None
    if target:
        published = Path(target) if Path(target).is_absolute() else PROJECT_DIR / target
    return Screenshots(tmp_path_factory.mktemp("screenshots"), published)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """When a UI test fails, keep a screenshot of the page as it was and name the file in the report."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    page, shots = funcargs.get("page"), funcargs.get("screenshots")
    if report.when == "call" and report.failed and page is not None and shots is not None:
        try:
            path = shots.take(page, f"FAILED_{item.name}", full_page=True)
            report.sections.append(("UI screenshot at the failure", str(path)))
        except Exception as err:  # a closed or crashed page: the failure itself says more
            report.sections.append(("UI screenshot at the failure", f"not taken: {err}"))
    return report
