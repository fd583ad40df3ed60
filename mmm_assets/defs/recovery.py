"""Runs whose worker died are marked failed and their pool slots freed, so one crash never blocks later refreshes.

A run killed with SIGKILL, by the out-of-memory killer, a reboot or a power loss cannot tell the instance it ended:
it stays STARTED and keeps the slot it holds in the `mmm_fit` pool (limit 1), and every later fit waits for it for
ever. Dagster's run monitoring finds dead workers only for launchers that can check a worker's health (Kubernetes,
not the local launcher of `make dev`, nor `execute_in_process` of `python -m mmm_assets run`), so this module does it
for runs of this machine: a run's worker is the process named by its tags (set by the CLI, with the process's start
time so a reused pid is not mistaken for it) or, on the embedded single-machine instance, by the pid Dagster's
in-process executor records when it starts executing steps. A run whose worker process is gone is reported failed
(`DagsterInstance.report_run_failed`) and its slots freed (`free_concurrency_slots_for_run`, what the UI's "free
slots" button calls); slots still held by runs that ended are freed too. Each release is one log line.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

#: Tags the CLI puts on its runs: which process on which machine executes them.
WORKER_HOST_TAG = "mmm_assets/worker_host"
WORKER_PID_TAG = "mmm_assets/worker_pid"
#: The worker's start time in clock ticks since boot (/proc/<pid>/stat, field 22): a pid reused by another process
#: after the worker died has another start time.
WORKER_START_TAG = "mmm_assets/worker_start"

#: Statuses of a run that may still have a worker executing it.
ACTIVE = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


@dataclass(frozen=True)
class Released:
    """A run whose slots were freed: why, and how many."""

    run_id: str
    reason: str
    slots: int

    def line(self) -> str:
        """The log line that says what was released and why."""
        return f"released run {self.run_id}: {self.reason}; freed {self.slots} pool slot(s)"


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot); None when unknown (no such process, no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # after "pid (comm)": field 22 of the whole line is index 19 here


def worker_tags() -> dict[str, str]:
    """The tags that name this process as a run's worker."""
    tags = {WORKER_HOST_TAG: socket.gethostname(), WORKER_PID_TAG: str(os.getpid())}
    started = process_start(os.getpid())
    if started is not None:
        tags[WORKER_START_TAG] = started
    return tags


def is_alive(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` exists (and, when ``started`` is given, is the one that started then)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    if started is None:
        return True
    now = process_start(pid)
    return now is None or now == started


def _single_machine(instance: DagsterInstance) -> bool:
    """Whether the instance keeps its runs in local SQLite files, so every run of it ran on this machine."""
    from dagster._core.storage.runs import SqliteRunStorage

    return isinstance(instance.run_storage, SqliteRunStorage)


def _logged_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The pid Dagster's in-process executor recorded for the run ("Executing steps in process (pid: N)")."""
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        metadata = getattr(event.event_specific_data, "metadata", None) or {}
        if "pid" in metadata:
            return int(metadata["pid"].value)
    return None


def dead_worker(instance: DagsterInstance, run: DagsterRun) -> str | None:
    """Why the run's worker is known to be gone (e.g. "worker pid 123 is gone"), or None (alive, or not known here)."""
    tags = run.tags
    if WORKER_PID_TAG in tags:
        if tags.get(WORKER_HOST_TAG) != socket.gethostname():
            return None  # another machine's process: its own host (or Dagster's run monitoring) decides
        pid, started = int(tags[WORKER_PID_TAG]), tags.get(WORKER_START_TAG)
    elif _single_machine(instance):
        pid, started = _logged_pid(instance, run.run_id), None
        if pid is None:
            return None  # not executing steps yet: the launcher's start timeout covers it
    else:
        return None
    if is_alive(pid, started):
        return None
    return f"its worker (pid {pid}) is gone, killed or crashed while the run was {run.status.value}"


def slot_holders(instance: DagsterInstance) -> dict[str, list[str]]:
    """Every run holding or waiting for a pool slot: run id -> "pool/step" of each slot it holds or waits for."""
    storage = instance.event_log_storage
    holders: dict[str, list[str]] = {run_id: [] for run_id in storage.get_concurrency_run_ids()}
    for pool in storage.get_concurrency_keys():
        for slot in storage.get_concurrency_info(pool).claimed_slots:
            holders.setdefault(slot.run_id, []).append(f"{pool}/{slot.step_key}")
    return holders


def release_dead_runs(instance: DagsterInstance, report: Callable[[str], None]) -> list[Released]:
    """Mark runs whose worker is gone as failed and free every pool slot held by a run that is not running."""
    holders = slot_holders(instance)
    released = []
    for run in instance.get_runs(filters=RunsFilter(statuses=ACTIVE)):
        reason = dead_worker(instance, run)
        if reason is None:
            continue
        instance.report_run_failed(run, message=f"Marked failed by mmm_assets: {reason}.")
        released.append(Released(run.run_id, reason, _free(instance, run.run_id, holders)))
    done = {entry.run_id for entry in released}
    waiting = [run_id for run_id in holders if run_id not in done]
    if waiting:
        runs = {r.dagster_run.run_id: r.dagster_run for r in instance.get_run_records(RunsFilter(run_ids=waiting))}
        for run_id in sorted(waiting):
            run = runs.get(run_id)  # a deleted run's slots went with its events
            if run is not None and run.is_finished:
                reason = f"the run ended ({run.status.value}) without freeing its slots"
                released.append(Released(run_id, reason, _free(instance, run_id, holders)))
    for entry in released:
        report(entry.line())
    return released


def _free(instance: DagsterInstance, run_id: str, holders: dict[str, list[str]]) -> int:
    """Free every concurrency slot (claimed or pending) of ``run_id``; how many it held."""
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return len(holders.get(run_id, []))
