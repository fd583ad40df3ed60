"""Runs whose process died release their pool slots, and a step waiting for a slot sleeps, logs, times out and
answers interrupts (mmm_assets/defs/recovery.py, mmm_assets/defs/pool_wait.py). In-process, on real instances and
real processes standing in for other runs; the whole refresh after kill -9 is in test_faults.py."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import dagster
import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._utils.interrupts import capture_interrupts

import mmm_assets.definitions  # noqa: F401  (installs the wrapper, as every process that loads the definitions does)
from mmm_assets.defs import pool_wait, recovery
from mmm_assets.defs.model import FIT_POOL

STEP = "mmm_posterior"


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    """The test's own instance (conftest gives each test a DAGSTER_HOME with the project's dagster.yaml)."""
    with DagsterInstance.get() as it:
        it.event_log_storage.initialize_concurrency_limit_to_default(FIT_POOL)
        yield it


@pytest.fixture
def child() -> Iterator[subprocess.Popen]:
    """A live process standing in for another run's worker."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def lines() -> Iterator[list[str]]:
    said: list[str] = []
    pool_wait.configure(None, said.append)
    yield said
    pool_wait.configure(None, lambda line: print(line, file=sys.stderr))


def _run(instance: DagsterInstance, tags: dict[str, str], status=DagsterRunStatus.STARTED) -> DagsterRun:
    run = DagsterRun(job_name="weekly_refresh", status=status, tags=tags)
    instance.add_run(run)
    return run


def _holding(instance: DagsterInstance, tags: dict[str, str]) -> DagsterRun:
    """A STARTED run with ``tags`` that holds the fit pool's only slot."""
    run = _run(instance, tags)
    assert instance.event_log_storage.claim_concurrency_slot(FIT_POOL, run.run_id, STEP).is_claimed
    return run


def _tags_of(process: subprocess.Popen) -> dict[str, str]:
    return {
        recovery.WORKER_HOST_TAG: recovery.worker_tags()[recovery.WORKER_HOST_TAG],
        recovery.WORKER_PID_TAG: str(process.pid),
        recovery.WORKER_START_TAG: recovery.process_start(process.pid),
    }


def _holders(instance: DagsterInstance) -> set[str]:
    return {slot.run_id for slot in instance.event_log_storage.get_concurrency_info(FIT_POOL).claimed_slots}


# --- recovery ------------------------------------------------------------------------------------------------------


def test_a_run_whose_worker_died_is_marked_failed_and_its_slot_freed(instance, child) -> None:
    tags = _tags_of(child)
    holder = _holding(instance, tags)
    alive = _run(instance, recovery.worker_tags())  # this process: alive
    said: list[str] = []
    assert recovery.release_dead_runs(instance, said.append) == []  # the holder's process still runs
    assert _holders(instance) == {holder.run_id}

    child.kill()
    child.wait()
    (released,) = recovery.release_dead_runs(instance, said.append)
    assert released.run_id == holder.run_id and released.slots == 1
    assert said == [f"released run {holder.run_id}: its worker (pid {child.pid}) is gone, killed or crashed while "
                    f"the run was STARTED; freed 1 pool slot(s)"]
    assert instance.get_run_by_id(holder.run_id).status == DagsterRunStatus.FAILURE
    assert "Marked failed by mmm_assets" in instance.all_logs(holder.run_id)[-1].message
    assert _holders(instance) == set()
    assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED


def test_a_reused_pid_or_another_machine_is_not_taken_for_the_worker(instance, child) -> None:
    """A pid whose process started at another time is a new process (the worker is gone); another host's pid is
    never judged here."""
    reused = _holding(instance, {**_tags_of(child), recovery.WORKER_START_TAG: "1"})
    (released,) = recovery.release_dead_runs(instance, lambda line: None)
    assert released.run_id == reused.run_id

    elsewhere = _holding(instance, {**_tags_of(child), recovery.WORKER_HOST_TAG: "another-host",
                                    recovery.WORKER_PID_TAG: "999999999"})
    assert recovery.release_dead_runs(instance, lambda line: None) == []
    assert _holders(instance) == {elsewhere.run_id}


def test_slots_of_runs_that_ended_are_freed(instance) -> None:
    said: list[str] = []
    ended = _holding(instance, {})
    instance.report_run_failed(ended, message="ended elsewhere")
    assert [r.run_id for r in recovery.release_dead_runs(instance, said.append)] == [ended.run_id]
    assert said[-1].endswith("the run ended (FAILURE) without freeing its slots; freed 1 pool slot(s)")
    assert _holders(instance) == set()



def test_an_untagged_run_is_judged_by_the_pid_dagster_logged_on_a_single_machine(instance, child) -> None:
    """Runs launched by `make dev` carry no tags of ours: the in-process executor's "Executing steps in process
    (pid: N)" names their worker."""
    from dagster import DagsterEvent, DagsterEventType
    from dagster._core.events import EngineEventData
    from dagster._core.events.log import EventLogEntry

    run = _holding(instance, {})
    event = DagsterEvent(DagsterEventType.ENGINE_EVENT.value, job_name=run.job_name,
                         event_specific_data=EngineEventData.in_process(child.pid), message="Executing steps")
    instance.store_event(EventLogEntry(error_info=None, level="DEBUG", user_message="", run_id=run.run_id,
                                       timestamp=time.time(), dagster_event=event))
    assert recovery.release_dead_runs(instance, lambda line: None) == []
    child.kill()
    child.wait()
    assert [r.run_id for r in recovery.release_dead_runs(instance, lambda line: None)] == [run.run_id]


# --- waiting for a slot --------------------------------------------------------------------------------------------


def _context(instance: DagsterInstance) -> InstanceConcurrencyContext:
    return InstanceConcurrencyContext(instance, _run(instance, recovery.worker_tags()))


def _claim_until(context: InstanceConcurrencyContext, seconds: float) -> bool:
    """Claim the fit pool's slot as Dagster's executor loop does, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if context.claim(FIT_POOL, STEP):
            return True
    return False


def test_the_wrapper_is_installed_on_the_pinned_dagster_and_its_target_is_unchanged() -> None:
    """Fails loudly when an upgrade changes what the wrapper relies on: the version, the wrapped method's signature,
    and the attribute it reads; and shows the busy wait it exists for is still in Dagster."""
    assert dagster.__version__ == pool_wait.PINNED_DAGSTER
    assert getattr(InstanceConcurrencyContext.claim, "_mmm_assets_wrapped", False), "definitions.py installs it"
    original = InstanceConcurrencyContext.claim.__wrapped__
    assert tuple(inspect.signature(original).parameters) == pool_wait.CLAIM_PARAMETERS
    assert "self._instance = instance" in inspect.getsource(InstanceConcurrencyContext.__init__)
    # Dagster's own interval until the next claim is never positive: its executor loop never sleeps
    assert "min([0, *[" in inspect.getsource(InstanceConcurrencyContext.interval_to_next_pending_claim_check)


def test_a_waiting_step_sleeps_says_whom_it_waits_for_and_times_out(instance, child, lines) -> None:
    holder = _holding(instance, _tags_of(child))
    pool_wait.configure(3.0, lines.append)
    context = _context(instance)
    cpu, started = time.process_time(), time.monotonic()
    with pytest.raises(pool_wait.PoolWaitTimeoutError, match=rf"waited \d+ s for a slot of pool {FIT_POOL} \(held by "
                       rf"run\(s\) {holder.run_id}\).*operations.pool_wait_timeout_s \(3 s\)"):
        _claim_until(context, 30)
    waited, busy = time.monotonic() - started, time.process_time() - cpu
    assert 3 <= waited < 3 + 2 * pool_wait.POLL_S + 1
    assert busy < 0.25 * waited, f"{busy:.2f} s of CPU in {waited:.1f} s of waiting: a busy loop"
    assert lines[0] == f"{STEP} waits for a slot of pool {FIT_POOL} (held by run(s) {holder.run_id}); Ctrl-C stops the wait"


def test_a_waiting_step_frees_a_holder_that_dies_and_takes_the_slot(instance, child, lines) -> None:
    holder = _holding(instance, _tags_of(child))
    context = _context(instance)
    assert not _claim_until(context, 1.5)
    child.kill()
    child.wait()
    started = time.monotonic()
    assert _claim_until(context, pool_wait.SWEEP_EVERY_S + 20)
    assert time.monotonic() - started < pool_wait.SWEEP_EVERY_S + 20
    assert any(line.startswith(f"released run {holder.run_id}") for line in lines)
    assert lines[-1].startswith(f"{STEP} got a slot of pool {FIT_POOL} after ")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_stops_the_wait_at_once(instance, child, lines, signum) -> None:
    """Inside a run Dagster captures SIGINT (and SIGTERM, mapped to it) until a step runs; the wait acts on it."""
    _holding(instance, _tags_of(child))
    context = _context(instance)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with capture_interrupts():
            assert not context.claim(FIT_POOL, STEP)
            os.kill(os.getpid(), signum)
            started = time.monotonic()
            with pytest.raises(DagsterExecutionInterruptedError, match=f"while step {STEP} waited"):
                _claim_until(context, 10)
            assert time.monotonic() - started <= pool_wait.POLL_S + 0.5
    finally:
        signal.signal(signal.SIGTERM, previous)
