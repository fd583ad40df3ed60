"""What a finished run means to the person who started it: the cause in a few lines, and an exit code per kind.

A script that runs `python -m mmm_assets run` needs to tell a rejected input (fix the file) from a blocked model
(look at the gates) from broken machinery (disk, MLflow, a lock: retry or call someone). The cause is the innermost
error of the first failed step, classified by its class; the full trace stays in the Dagster event log.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from dagster import DagsterEvent, DagsterEventType


class Exit(IntEnum):
    """The exit codes of `python -m mmm_assets run` (the README's Reliability section lists them), in order of
    seriousness: several markets' runs exit with the highest of theirs."""

    SUCCESS = 0
    GATES_FAILED = 1
    INPUT_REJECTED = 2
    INFRASTRUCTURE = 3
    UNEXPECTED = 4
    INTERRUPTED = 130


def most_serious(codes: Iterable[Exit]) -> Exit:
    """The exit code of several markets' runs: the most serious of theirs (SUCCESS when there are none)."""
    return max(codes, default=Exit.SUCCESS)


def from_returncode(returncode: int) -> Exit:
    """A market child's return code as an `Exit`; a child killed by a signal other than an interrupt failed for
    reasons outside its own code (the out-of-memory killer, kill -9)."""
    if returncode < 0:
        return Exit.INTERRUPTED if -returncode in (signal.SIGINT, signal.SIGTERM) else Exit.INFRASTRUCTURE
    return Exit(returncode) if returncode in iter(Exit) else Exit.UNEXPECTED


#: What each exit code asks of the person who reads it.
ADVICE = {
    Exit.SUCCESS: "refreshed",
    Exit.GATES_FAILED: "the model failed a blocking quality gate; the previous champion and decisions are kept",
    Exit.INPUT_REJECTED: "the input or scenario was rejected; fix it and run again (nothing was written)",
    Exit.INFRASTRUCTURE: "the machinery failed (disk, MLflow, a lock, a wait); fix it or retry, the inputs were fine",
    Exit.UNEXPECTED: "an unexpected error (a bug?); the full trace is in the Dagster run's event log",
    Exit.INTERRUPTED: "interrupted (Ctrl-C or SIGTERM); the run is marked failed and nothing was replaced",
}

_INPUT = {"InputError", "ConfigError"}
_GATES = {"DagsterAssetCheckFailedError"}
_INTERRUPT = {"DagsterExecutionInterruptedError", "KeyboardInterrupt"}
_INFRASTRUCTURE = {
    "DiskSpaceError", "TrackingUnreachableError", "DatabaseLockedError", "PoolWaitTimeoutError", "MlflowException",
    "RestException", "OSError", "PermissionError", "TimeoutError", "ConnectionError", "IOException", "MemoryError",
}
#: The most lines of one error message shown (an input error lists one problem per line).
MAX_CAUSE_LINES = 12


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its exit code and the cause, as lines for a person."""

    code: Exit
    cause: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The exit code's head line and the cause, indented."""
        head = f"EXIT {int(self.code)} ({self.code.name.lower().replace('_', ' ')}): {ADVICE[self.code]}"
        return [head, *(f"  {line}" for line in self.cause)]


def _chain(error) -> list:
    """An error and its causes, outermost first."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause or error.context
    return chain


def _kind(names: Sequence[str]) -> Exit:
    for kinds, code in ((_INTERRUPT, Exit.INTERRUPTED), (_INPUT, Exit.INPUT_REJECTED), (_GATES, Exit.GATES_FAILED),
                        (_INFRASTRUCTURE, Exit.INFRASTRUCTURE)):
        if kinds & set(names):
            return code
    return Exit.UNEXPECTED


def _first_failure(events: Iterable[DagsterEvent]) -> tuple[str | None, object] | None:
    """(step key, error) of the first step that failed, else of the run's own failure; None when nothing failed."""
    run_failure = None
    for event in events:
        error = getattr(event.event_specific_data, "error", None)
        if error is None:
            continue
        if event.event_type == DagsterEventType.STEP_FAILURE:
            return event.step_key, error
        if event.event_type == DagsterEventType.RUN_FAILURE and run_failure is None:
            run_failure = (None, error)
    return run_failure


def _message(error) -> list[str]:
    """The error's own message as lines (without the "module.Class: " Dagster puts before it)."""
    text = error.message.strip()
    prefix = f"{error.cls_name}: "
    if prefix in text.split("\n", 1)[0]:
        text = text.split(prefix, 1)[1]
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_CAUSE_LINES:
        lines = [*lines[:MAX_CAUSE_LINES], f"... and {len(lines) - MAX_CAUSE_LINES} more line(s)"]
    return lines


def _failed_gates(evaluations) -> list[str]:
    failed = []
    for e in sorted(evaluations, key=lambda e: e.check_name):
        if e.passed:
            continue
        value, threshold = e.metadata.get("value"), e.metadata.get("threshold")
        shown = f" {value.value:.4g} (threshold {threshold.value:.4g})" if value and threshold else ""
        failed.append(f"{e.asset_key.to_user_string()}:{e.check_name}{shown}")
    return failed


def outcome(result) -> Outcome:
    """The outcome of an executed run (`ExecuteInProcessResult`)."""
    if result.success:
        return Outcome(Exit.SUCCESS)
    found = _first_failure(result.all_events)
    if found is None:
        return Outcome(Exit.UNEXPECTED, ("the run failed without an error (see the Dagster event log)",))
    step, error = found
    chain = _chain(error)
    code = _kind([e.cls_name for e in chain])
    if code == Exit.GATES_FAILED:
        evaluations = result.get_asset_check_evaluations()
        gates = _failed_gates(evaluations)
        if not gates:
            return Outcome(code, tuple(_message(chain[-1])))
        helps = {e.metadata["what_would_help"].value for e in evaluations
                 if not e.passed and "what_would_help" in e.metadata}
        return Outcome(code, (f"failed gate(s): {', '.join(gates)}", *sorted(helps)))
    where = f"step {step}: " if step else ""
    innermost = chain[-1]
    first, *rest = _message(innermost) or [innermost.cls_name]
    return Outcome(code, (f"{where}{innermost.cls_name}: {first}", *rest))
