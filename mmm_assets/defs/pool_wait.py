"""Waiting for a pool slot: a sleep that is logged, bounded, answers Ctrl-C / SIGTERM, and frees dead runs' slots.

Why a patch (the project's only one of Dagster's internals): in Dagster 1.13.27 a step blocked by a pool limit is
retried in a busy loop (`InstanceConcurrencyContext.interval_to_next_pending_claim_check` returns ``min(0, ...)``,
never a positive time, so `ActiveExecution.sleep_til_ready` never sleeps: 50-72 % of a core measured), nothing is
logged at INFO, there is no timeout, and an interrupt captured during the run is only acted upon inside a step, so
Ctrl-C and SIGTERM are ignored while waiting. No public setting changes any of that. `install` wraps
`InstanceConcurrencyContext.claim`, the one call every executor makes for a pooled step; the wrapper keeps Dagster's
claim as it is and, when it is refused, sleeps (at most `POLL_S`), says whom it waits for, frees slots of runs whose
worker died (`recovery.release_dead_runs`), and gives up after the configured timeout. It refuses to install on
another Dagster version than the pinned one; mmm_assets_tests/defs/test_pool_wait.py fails when the wrapped method's
signature or the attributes it reads change.
"""

from __future__ import annotations

import inspect
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._utils.interrupts import pop_captured_interrupt

from mmm_assets.defs.recovery import release_dead_runs, slot_holders

#: The Dagster version whose `InstanceConcurrencyContext.claim` the wrapper was written against.
PINNED_DAGSTER = "1.13.27"
#: The wrapped method's parameters; a change means the wrapper must be read again.
CLAIM_PARAMETERS = ("self", "concurrency_key", "step_key", "step_priority")
#: The longest sleep between two claims: how soon an interrupt is acted upon while waiting.
POLL_S = 0.2
#: How often a waiting step looks for runs whose worker died (each look reads the run and event storage).
SWEEP_EVERY_S = 5.0
#: How often a waiting step says it is still waiting.
PROGRESS_EVERY_S = 60.0


class PoolWaitTimeoutError(RuntimeError):
    """A step waited longer than the configured timeout for a slot of its pool."""


@dataclass
class _Settings:
    timeout_s: float | None = None
    report: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))


@dataclass
class _Wait:
    started: float
    next_sweep: float
    next_progress: float


_settings = _Settings()
#: The waits of each run's concurrency context, per step; an entry goes with its context (a run's end).
_waits: weakref.WeakKeyDictionary[InstanceConcurrencyContext, dict[str, _Wait]] = weakref.WeakKeyDictionary()


def configure(timeout_s: float | None, report: Callable[[str], None] | None = None) -> None:
    """Bound the wait (None: wait as long as it takes, e.g. runs queued behind others in the UI) and route its lines."""
    _settings.timeout_s = timeout_s
    if report is not None:
        _settings.report = report


def _holders(context: InstanceConcurrencyContext, pool: str) -> str:
    """Who holds the pool's slots, for the log line."""
    held = [run_id for run_id, slots in slot_holders(context._instance).items()
            if any(slot.startswith(f"{pool}/") for slot in slots)]
    return f"held by run(s) {', '.join(held)}" if held else "no slot held yet"


def _interrupted(step_key: str, pool: str) -> None:
    if pop_captured_interrupt():
        raise DagsterExecutionInterruptedError(f"interrupted while step {step_key} waited for a slot of pool {pool}")


def _refused(context: InstanceConcurrencyContext, pool: str, step_key: str) -> None:
    """A claim was refused: log, sweep dead runs, time out, then sleep a little (instead of Dagster's busy loop)."""
    report, now, waits = _settings.report, time.monotonic(), _waits.setdefault(context, {})
    wait = waits.get(step_key)
    if wait is None:
        wait = waits[step_key] = _Wait(now, now + SWEEP_EVERY_S, now + PROGRESS_EVERY_S)
        release_dead_runs(context._instance, report)
        report(f"{step_key} waits for a slot of pool {pool} ({_holders(context, pool)}); Ctrl-C stops the wait")
    elif now >= wait.next_sweep:
        release_dead_runs(context._instance, report)
        wait.next_sweep = now + SWEEP_EVERY_S
    waited = now - wait.started
    if _settings.timeout_s is not None and waited > _settings.timeout_s:
        del waits[step_key]
        raise PoolWaitTimeoutError(
            f"step {step_key} waited {waited:.0f} s for a slot of pool {pool} ({_holders(context, pool)}), longer "
            f"than operations.pool_wait_timeout_s ({_settings.timeout_s:g} s); the holder is still running: wait for "
            "it, or stop it and refresh again"
        )
    if now >= wait.next_progress:
        report(f"{step_key} still waits for a slot of pool {pool} after {waited:.0f} s ({_holders(context, pool)})")
        wait.next_progress = now + PROGRESS_EVERY_S
    time.sleep(POLL_S)
    _interrupted(step_key, pool)


def install() -> None:
    """Wrap `InstanceConcurrencyContext.claim` (once per process); refuse on an unpinned Dagster version."""
    claim = InstanceConcurrencyContext.claim
    if getattr(claim, "_mmm_assets_wrapped", False):
        return
    if dagster.__version__ != PINNED_DAGSTER:
        raise RuntimeError(
            f"mmm_assets.defs.pool_wait wraps Dagster {PINNED_DAGSTER}'s InstanceConcurrencyContext.claim, found "
            f"Dagster {dagster.__version__}: check whether the busy wait is fixed, then update or drop the wrapper"
        )
    if tuple(inspect.signature(claim).parameters) != CLAIM_PARAMETERS:
        raise RuntimeError(f"InstanceConcurrencyContext.claim{inspect.signature(claim)} changed: read the wrapper again")

    def wrapped(self, concurrency_key: str, step_key: str, step_priority: int = 0) -> bool:
        _interrupted(step_key, concurrency_key)
        if claim(self, concurrency_key, step_key, step_priority):
            wait = _waits.get(self, {}).pop(step_key, None)
            if wait is not None:
                waited = time.monotonic() - wait.started
                _settings.report(f"{step_key} got a slot of pool {concurrency_key} after {waited:.0f} s")
            return True
        _refused(self, concurrency_key, step_key)
        return False

    wrapped._mmm_assets_wrapped = True  # type: ignore[attr-defined]
    wrapped.__wrapped__ = claim  # type: ignore[attr-defined]
    InstanceConcurrencyContext.claim = wrapped  # type: ignore[method-assign]
