"""The Dagster UI as a person uses it: a real `dagster dev` over a temporary instance and the SMALL scenario, driven
by headless Chromium. The weekly refresh is launched from the job page and the results are read on the pages.

`make screenshots` runs this module with MMM_SCREENSHOTS_DIR=docs/screenshots: the README's pictures come from here.
"""

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mmm_assets.core.config import DEFAULT_MARKET, PROFILE_THRESHOLDS
from mmm_assets.core.evaluation.metrics import GATES
from mmm_assets.core.records import PriorChecks
from mmm_assets.definitions import ASSETS
from mmm_assets_tests.conftest import SMALL, write_scenario
from mmm_assets_tests.system.ui.conftest import CodeLocationError, DagsterDev, wait_for_code_location

pytestmark = pytest.mark.ui

LOCATION = "mmm_assets"
JOB = "weekly_refresh"
GROUPS = {"ingest", "features", "model", "decisions"}
ASSET_NAMES = sorted(a.key.to_user_string() for a in ASSETS)
AUTOMATIONS = ["weekly_refresh_schedule", "market_partitions_sensor", "landing_file_sensor", "run_failure_alert_sensor",
               "nonblocking_check_alert_sensor", "dead_run_sensor", "plan_file_sensor", "all_markets_sensor"]
FEATURE_CHECKS = ["enough_weeks", "weekly_contiguous", "complete_non_negative", "spend_correlation", "spend_vif",
                  "weeks_per_parameter", "spend_variation", "zero_spend_weeks"]
#: The SMALL refresh takes ~30 s in the run; the queue, a cold PyTensor cache and a slow machine get the rest.
RUN_TIMEOUT_S = 300
MS = 1000

#: The daemon's first market_partitions_sensor tick comes within its 30 s interval of the server's start.
PARTITION_TIMEOUT_S = 120
PARTITIONS_QUERY = """
query UiTestMarkets {
  partitionSetOrError(repositorySelector: {repositoryName: "__repository__", repositoryLocationName: "mmm_assets"},
                      partitionSetName: "weekly_refresh_partition_set") {
    ... on PartitionSet { partitionsOrError { ... on Partitions { results { name } } } }
  }
}
"""
RUN_QUERY = """
query UiTestRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      status
      jobName
      stats { ... on RunStatsSnapshot { stepsFailed materializations } }
    }
    ... on PythonError { message }
  }
}
"""
RUN_ERRORS_QUERY = """
query UiTestRunErrors($runId: ID!) {
  logsForRun(runId: $runId, limit: 5000) {
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ExecutionStepFailureEvent { error { message causes { message } } }
        ... on RunFailureEvent { pipelineFailureError: error { message causes { message } } }
      }
    }
  }
}
"""


def _expect():
    from playwright.sync_api import expect

    return expect


# --- the server --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(dagster_dev, tmp_path_factory) -> DagsterDev:
    """`dagster dev` on the project's workspace, MMM_CONFIG = the SMALL scenario with every output in a tmp folder."""
    outputs = tmp_path_factory.mktemp("ui_outputs")
    scenario = write_scenario(outputs, SMALL)
    srv = dagster_dev(Path("workspace.yaml"), env={"MMM_CONFIG": str(scenario)}, name="ui_server")
    started = time.monotonic()
    assert wait_for_code_location(srv) == [LOCATION]
    srv.load_seconds = time.monotonic() - started
    srv.graphql("mutation { setNuxSeen }")  # the "join the community" pop-up, shown once per instance
    return srv


@dataclass(frozen=True)
class LaunchedRun:
    run_id: str
    seconds: float


def _run_errors(server: DagsterDev, run_id: str) -> str:
    """What went wrong in a run, from its event log: step failures, the run failure, ERROR messages."""
    events = server.graphql(RUN_ERRORS_QUERY, {"runId": run_id})["logsForRun"].get("events", [])
    lines = []
    for event in events:
        error = event.get("error") or event.get("pipelineFailureError")
        if error:
            chain = [error["message"], *(c["message"] for c in error.get("causes") or [])]
            lines.append(f"{event.get('stepKey') or 'run'}: " + "\n  caused by: ".join(m.strip() for m in chain))
        elif event.get("level") in ("ERROR", "CRITICAL"):
            lines.append(f"{event.get('stepKey') or 'run'}: {event['message'].strip()}")
    return "\n".join(lines) or "(no error event in the run's log)"


def wait_for_run(server: DagsterDev, run_id: str, timeout: float = RUN_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = server.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        if run["status"] == "SUCCESS":
            return run
        if run["status"] in ("FAILURE", "CANCELED"):
            pytest.fail(f"run {run_id} of {run['jobName']}: {run['status']}\n{_run_errors(server, run_id)}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"run {run_id} still {run['status']} after {timeout:.0f} s\n{_run_errors(server, run_id)}\n"
                f"--- server log ---\n{server.log_tail()}"
            )
        time.sleep(2)


def wait_for_market_partition(server: DagsterDev, timeout: float = PARTITION_TIMEOUT_S) -> list[str]:
    """The market partitions, once market_partitions_sensor (run by the daemon of `dagster dev`) has added them."""
    deadline = time.monotonic() + timeout
    while True:
        keys = server.graphql(PARTITIONS_QUERY)["partitionSetOrError"]["partitionsOrError"]["results"]
        if keys:
            return [k["name"] for k in keys]
        if time.monotonic() > deadline:
            pytest.fail(f"no market partition after {timeout:.0f} s\n--- server log ---\n{server.log_tail()}")
        time.sleep(2)


@pytest.fixture(scope="module")
def launched_run(server, browser, screenshots) -> LaunchedRun:
    """The job page's "Materialize all" button, clicked; all (one) market partitions picked in its dialog and
    launched; the toast names the run; the run then succeeds."""
    expect = _expect()
    assert wait_for_market_partition(server) == [DEFAULT_MARKET]
    page = browser.new_page()
    try:
        page.goto(f"{server.url}/locations/{LOCATION}/jobs/{JOB}")
        expect(page.get_by_text("Refresh everything: spend -> features")).to_be_visible()
        button = page.get_by_role("button", name=re.compile(r"Materialize all"))
        expect(button).to_be_enabled()
        started = time.monotonic()
        button.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_text("Partition selection")).to_be_visible()
        dialog.get_by_role("button", name="All", exact=True).click()
        launch = dialog.get_by_role("button", name="Launch 1 run")
        expect(launch).to_be_enabled()
        screenshots.take(page, "job_partition_dialog")
        launch.click()
        toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
        expect(toast).to_be_visible(timeout=60 * MS)
        screenshots.take(page, "job_launched")
        link = page.locator("a[href*='/runs/']", has_text="View").first
        run_id = link.get_attribute("href").rstrip("/").rsplit("/", 1)[-1]
        assert toast.inner_text().split()[-1] == run_id[:8]
        run = wait_for_run(server, run_id)
        seconds = time.monotonic() - started
        assert run["jobName"] == JOB
        return LaunchedRun(run_id, seconds)
    finally:
        page.close()


# --- helpers on pages ----------------------------------------------------------------------------------------------


def metadata_value(page, key: str):
    """The value cell of metadata entry ``key`` in an asset's metadata table (not a row of a nested table)."""
    row = page.locator(f"xpath=//tr[not(ancestor::td)][td[1][normalize-space()='{key}']]")
    _expect()(row).to_have_count(1)
    return row.locator("xpath=./td[last()]")


def number(page, key: str) -> float:
    text = metadata_value(page, key).inner_text().strip()
    try:
        return float(text.replace(",", ""))
    except ValueError:
        pytest.fail(f"metadata {key!r} shows {text!r}, not a number")


def table_rows(page, key: str, header: list[str]) -> list[list[str]]:
    """A markdown table entry rendered as an HTML <table>: its header holds ``header``; returns the body rows."""
    table = metadata_value(page, key).locator("table")
    _expect()(table).to_have_count(1)
    heads = [h.strip() for h in table.locator("th").all_inner_texts()]
    assert set(header) <= set(heads), f"{key}: header {heads}"
    return [[c.strip() for c in row.locator("td").all_inner_texts()] for row in table.locator("tbody tr").all()]


def open_plot(page, key: str) -> dict:
    """Open a plot entry (markdown with a data: URI image; over 1,000 characters, so behind "[Show Markdown]").

    Returns the <img>'s natural size once it has loaded; the dialog stays open.
    """
    expect = _expect()
    metadata_value(page, key).get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_text(key, exact=True)).to_be_visible()
    image = dialog.locator("img")
    expect(image).to_have_count(1)
    expect(image).to_be_visible()
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=15 * MS)
    return image.evaluate("img => ({width: img.naturalWidth, height: img.naturalHeight, alt: img.alt})")


def close_dialog(page) -> None:
    page.get_by_role("dialog").get_by_role("button", name="Close").click()
    _expect()(page.get_by_role("dialog")).to_have_count(0)


def open_asset(page, server: DagsterDev, asset: str, view: str | None = None) -> None:
    expect = _expect()
    page.goto(f"{server.url}/assets/{asset}" + (f"?view={view}" if view else ""))
    expect(page.get_by_role("heading", name=asset).or_(page.get_by_text(asset, exact=True).first)).to_be_visible()


# --- the tests -----------------------------------------------------------------------------------------------------


def test_weekly_refresh_launched_from_the_job_page_succeeds(server, launched_run, page, screenshots):
    """Launched with the job page's button: the run of weekly_refresh succeeds, every asset materialised."""
    expect = _expect()
    run = server.graphql(RUN_QUERY, {"runId": launched_run.run_id})["runOrError"]
    assert (run["jobName"], run["status"]) == (JOB, "SUCCESS")
    # every asset but the optional cross-validation, which SMALL leaves switched off, and the roll-up and budget
    # across markets (their own job, plan_all_markets)
    outside = {"mmm_cross_validation", "markets_rollup", "all_markets_budget"}
    assert run["stats"] == {"stepsFailed": 0, "materializations": len(set(ASSET_NAMES) - outside)}
    page.goto(f"{server.url}/runs/{launched_run.run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Loading run logs"))).to_have_count(0, timeout=30 * MS)
    screenshots.take(page, "run")
    print(f"code location loaded in {server.load_seconds:.1f} s; launch -> SUCCESS in {launched_run.seconds:.1f} s")


def test_model_asset_pages_show_numbers_tables_and_loaded_plots(server, launched_run, page, screenshots):
    """mmm_posterior and mmm_validation: diagnostics as numbers, gates and recovery as tables, plots that load."""
    expect = _expect()
    open_asset(page, server, "mmm_posterior")
    expect(page.get_by_text("The fitted PyMC-Marketing MMM")).to_be_visible()
    assert 0.9 < number(page, "max_rhat") <= 1.05  # SMALL's gate
    assert number(page, "fit_wall_seconds") > 0
    assert number(page, "min_ess_bulk") >= 100 and number(page, "divergences") == 0
    assert metadata_value(page, "sampler").inner_text().strip() in {"nutpie", "pymc", "numpyro"}
    assert metadata_value(page, "model_file").inner_text().strip().endswith(".nc")
    assert metadata_value(page, "mlflow_run").inner_text().strip().startswith("http"), "MLflow link is not a URL"
    screenshots.take(page, "posterior")

    open_asset(page, server, "mmm_validation")
    expect(page.get_by_text("How far the model can be trusted")).to_be_visible()
    assert number(page, "in_sample_r2") > 0.9 and number(page, "holdout_r2") > 0.5
    gates = table_rows(page, "gates", ["gate", "value", "direction", "threshold", "passed"])
    assert sorted(r[0] for r in gates) == sorted(g.name for g in GATES if g.threshold in PROFILE_THRESHOLDS["synthetic"])
    assert {r[-1] for r in gates} == {"True"}
    recovery = table_rows(page, "recovery", ["channel", "parameter", "true", "estimate"])
    assert len(recovery) == 12  # 3 channels x (saturation lambda, adstock alpha, response curve, mean carry-over lag)
    assert metadata_value(page, "failed_gates").inner_text().strip() == "none"
    for plot in ("recovery_plot", "fit_plot"):
        size = open_plot(page, plot)
        assert size["width"] > 300 and size["height"] > 200, (plot, size)
        if plot == "fit_plot":
            screenshots.take(page, "model_asset", publish=True)
        close_dialog(page)


def test_checks_tab_shows_every_blocking_gate_passed(server, launched_run, page, screenshots):
    """mmm_validation's checks tab: the blocking gates, the prior predictive's and the channel-measurement check
    (WARN; every channel measured on this scenario's data), each Succeeded; mmm_features: its 8 checks."""
    expect = _expect()
    for asset, names, shot in (("mmm_features", FEATURE_CHECKS, None),
                               ("mmm_validation", [*(g.name for g in GATES), PriorChecks.CHECK,
                                                   PriorChecks.MEASURED_CHECK], "validation_checks")):
        open_asset(page, server, asset, view="checks")
        expect(page.get_by_text(f"Checks ({len(names)})", exact=True)).to_be_visible()
        for name in names:
            item = page.locator(f"xpath=//*[normalize-space(text())='{name}']/ancestor::*[.//*[text()='Succeeded']][1]")
            expect(item.first).to_be_visible()
        expect(page.get_by_text("Succeeded", exact=True)).to_have_count(len(names))
        expect(page.get_by_text("Failed", exact=True)).to_have_count(0)
        expect(page.get_by_text("This is a", exact=False).first).to_be_visible()
        expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
        if shot:
            screenshots.take(page, shot, publish=True)


def test_budget_page_shows_the_allocation_numbers_table_and_plot(server, launched_run, page, screenshots):
    """optimized_budget: total and uplift as numbers, the allocation as a table, the current vs optimised plot."""
    expect = _expect()
    open_asset(page, server, "optimized_budget")
    expect(page.get_by_text("Next period's budget across channels")).to_be_visible()
    total = number(page, "total_budget")
    assert total > 0
    assert number(page, "uplift_pct") >= 0
    assert metadata_value(page, "fallback_used").inner_text().strip() in {"false", "true"}
    rows = table_rows(page, "allocation", ["channel", "current_spend", "optimized_spend", "change_pct"])
    assert sorted(r[0] for r in rows) == ["adwords", "facebook", "linkedin"]
    page.get_by_text("Metadata", exact=True).first.evaluate("e => e.scrollIntoView({block: 'start'})")
    screenshots.take(page, "budget", publish=True)
    size = open_plot(page, "plot")
    assert size["width"] > 300, size
    screenshots.take(page, "budget_plot")
    close_dialog(page)


def test_automation_page_shows_the_schedule_and_sensors_running(server, page, screenshots):
    """Automation: the weekly schedule and the seven sensors, each switched on; the schedule's page says Running."""
    expect = _expect()
    page.goto(f"{server.url}/automation")
    for name in AUTOMATIONS:
        row = page.locator("[class*='ListItem_listItem__']", has=page.get_by_text(name, exact=True))
        expect(row).to_have_count(1)
        switch = row.locator("label[class*='formatSwitch'] input[type=checkbox]")
        expect(switch).to_be_enabled()  # disabled while the instance state is loading
        expect(switch).to_be_checked()
    expect(page.get_by_text("At 06:00 AM UTC, only on Monday")).to_be_visible()
    screenshots.take(page, "automation", publish=True)

    page.goto(f"{server.url}/locations/{LOCATION}/schedules/weekly_refresh_schedule")
    expect(page.get_by_text("Running", exact=True).first).to_be_visible()
    expect(page.get_by_text("Next tick")).to_be_visible()
    expect(page.get_by_text(f"Refreshes the whole graph (job {JOB})")).to_be_visible()
    screenshots.take(page, "schedule")


def test_asset_graph_shows_every_asset_in_its_group(server, page, screenshots):
    """The global asset graph: the four groups, expanded, and every asset (in the graph and the side tree)."""
    expect = _expect()
    page.goto(f"{server.url}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for group in GROUPS:
        expect(page.locator(f"[data-tooltip='{group}']")).to_be_visible()  # the group boxes of the graph
    page.get_by_role("button", name="settings", exact=True).click()
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.keyboard.press("Escape")
    expect(page.locator("[class*='AssetNode_assetNodeContainer']")).to_have_count(len(ASSET_NAMES))
    for group in sorted(GROUPS):  # unfold each group in the side tree
        item = page.locator("[class*='AssetSidebarNode_itemContainer']", has=page.locator(f"[title='{group}']"))
        item.locator("[aria-label='arrow_drop_down']").click()
    for name in ASSET_NAMES:
        expect(page.locator(f"[title='{name}']")).to_be_visible()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.mouse.move(0, 0)
    screenshots.take(page, "asset_graph", publish=True)


def test_a_code_location_that_cannot_load_fails_the_wait_with_its_error(dagster_dev, tmp_path):
    """A workspace whose module raises at import: the wait fails at once, carrying the server's error message."""
    (tmp_path / "broken_defs.py").write_text(
        "raise RuntimeError('mmm ui test: this code location cannot load (on purpose)')\n"
    )
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_file:\n      relative_path: broken_defs.py\n      location_name: broken_location\n"
    )
    server = dagster_dev(workspace, name="broken_server")
    started = time.monotonic()
    with pytest.raises(CodeLocationError) as failed:
        wait_for_code_location(server, timeout=120)
    message = str(failed.value)
    assert "code location 'broken_location' failed to load" in message
    assert "this code location cannot load (on purpose)" in message
    assert "--- server log" in message
    assert time.monotonic() - started < 120, "the error was found only by the timeout"
    server.stop()  # whatever SIGINT the tests inherited (CI's runner ignores it), `dagster dev` ends on its SIGTERM
    assert server.proc.returncode == 0, f"dagster dev was killed ({server.proc.returncode}):\n{server.log_tail()}"
