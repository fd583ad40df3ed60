"""A refresh killed with SIGKILL at any step never blocks the next one; a refresh waiting for another run's fit
answers SIGTERM at once. Real `python -m mmm_assets run` processes on one Dagster instance, as `make run` starts them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from mmm_assets.core.config.paths import PROJECT_DIR
from mmm_assets.defs import recovery
from mmm_assets.defs.model import FIT_POOL
from mmm_assets.defs.outcome import Exit
from mmm_assets_tests.system.test_faults import TINY

#: Where each refresh of the chain is killed: a line its log prints in that step. The fit and the validation hold
#: the fit pool's only slot; the decision step runs after the champion was promoted.
KILL_AT = {
    "mmm_posterior (sampling, holding the fit pool's slot)": " - mmm_posterior - fitting ",
    "mmm_validation (gates evaluated, slot still held)": " - mmm_validation - all gates passed",
    "budget_recommendations (decisions being written)": " - budget_recommendations - ",
}
#: The refresh after the crashes: TINY takes ~17 s on warm caches; the bound leaves room for a loaded machine.
RECOVERED_WITHIN_S = 150


def _refresh(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mmm_assets", "run", "--config", str(config)], cwd=PROJECT_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _until(child: subprocess.Popen, marker: str, timeout_s: float = 150) -> list[str]:
    """The child's log lines up to the first containing ``marker`` (fails if it ends or takes longer)."""
    seen, deadline = [], time.monotonic() + timeout_s
    for line in child.stderr:
        seen.append(line)
        if marker in line:
            return seen
        assert time.monotonic() < deadline, f"no {marker!r} within {timeout_s} s:\n{''.join(seen[-20:])}"
    raise AssertionError(f"the refresh ended before {marker!r} (exit {child.wait()}):\n{''.join(seen[-30:])}")


def _stand_in_holder(instance: DagsterInstance, worker: subprocess.Popen) -> DagsterRun:
    """A STARTED run of ``worker`` holding the fit pool's only slot, as another market's refresh would."""
    tags = {recovery.WORKER_HOST_TAG: recovery.worker_tags()[recovery.WORKER_HOST_TAG],
            recovery.WORKER_PID_TAG: str(worker.pid), recovery.WORKER_START_TAG: recovery.process_start(worker.pid)}
    run = DagsterRun(job_name="weekly_refresh", status=DagsterRunStatus.STARTED, tags=tags)
    instance.add_run(run)
    instance.event_log_storage.initialize_concurrency_limit_to_default(FIT_POOL)
    assert instance.event_log_storage.claim_concurrency_slot(FIT_POOL, run.run_id, "mmm_posterior").is_claimed
    return run


@pytest.mark.slow
def test_a_refresh_killed_at_any_step_never_blocks_the_next(write_config) -> None:
    config = write_config(TINY)
    instance = DagsterInstance.get()
    killed = []
    for where, marker in KILL_AT.items():
        child = _refresh(config)
        _until(child, marker)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL, where
        (run,) = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]))
        killed.append(run.run_id)  # left STARTED, as a dead process leaves it

    # a refresh waiting for a live run's slot (at its first step in the fit pool) stops at once on SIGTERM, and says why
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        holder = _stand_in_holder(instance, worker)
        waiting = _refresh(config)
        _until(waiting, f"model_comparison waits for a slot of pool {FIT_POOL} (held by run(s) {holder.run_id})")
        sent = time.monotonic()
        waiting.send_signal(signal.SIGTERM)
        out, _ = waiting.communicate(timeout=60)
        assert waiting.returncode == Exit.INTERRUPTED, out
        assert time.monotonic() - sent < 15, "SIGTERM was not acted upon while waiting"
        assert "EXIT 130 (interrupted)" in out and "RESULT: FAILED" in out
    finally:
        worker.kill()
        worker.wait()

    started = time.monotonic()
    final = _refresh(config)
    out, err = final.communicate(timeout=RECOVERED_WITHIN_S + 60)
    took = time.monotonic() - started
    assert final.returncode == Exit.SUCCESS, out + err[-3000:]
    assert took < RECOVERED_WITHIN_S
    assert "RESULT: success" in out and "EXIT 0 (success)" in out
    released = [line for line in err.splitlines() if line.startswith("released run ")]
    assert any(holder.run_id in line for line in released), err[-3000:]
    for run_id in killed:  # marked failed by the refresh after each crash, so none is left STARTED
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
    assert not instance.get_runs(filters=RunsFilter(statuses=recovery.ACTIVE))
    assert not instance.event_log_storage.get_concurrency_info(FIT_POOL).claimed_slots
