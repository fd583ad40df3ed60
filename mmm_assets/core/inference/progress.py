"""The sampler's progress in the run log: NUTS progress routed into a reporter, throttled, for each backend.

For nutpie, PyMC's ``NutpieProgressBarManager`` is replaced for the duration of a fit by a subclass that forwards
the same updates (see :func:`sampler_progress`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

Reporter = Callable[[str], None]

#: Seconds between two progress lines in the run log.
PROGRESS_EVERY_S = 5.0

def silent(_: str) -> None:
    """A reporter that drops its messages."""

class _Throttled:
    """Formats and forwards progress at most every PROGRESS_EVERY_S seconds (and always at the end)."""

    def __init__(self, report: Reporter, total: int) -> None:
        self.report, self.total = report, total
        self.start = self.last = time.monotonic()

    def __call__(self, done: int, divergences: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and done < self.total:
            return
        self.last = now
        pct = 100.0 * done / self.total if self.total else 100.0
        self.report(
            f"sampling: {done}/{self.total} draws incl. tuning ({pct:.0f} %), "
            f"divergences so far {divergences}, {now - self.start:.0f} s"
        )

@contextlib.contextmanager
def sampler_progress(sampler: str, report: Reporter, total: int) -> Iterator[dict]:
    """Routes the sampler's own progress into ``report``; yields extra keyword arguments for ``fit``."""
    throttled = _Throttled(report, total)
    if sampler == "nutpie":
        # PyMC owns nutpie's progress_callback; a subclass of its progress manager forwards the same updates.
        import pymc.sampling.mcmc as mcmc

        base = mcmc.NutpieProgressBarManager

        class Forwarding(base):  # type: ignore[misc, valid-type]
            def update(self, chain_progresses) -> None:
                throttled(
                    sum(cp.finished_draws for cp in chain_progresses),
                    sum(len(cp.divergent_draws) for cp in chain_progresses),
                )
                super().update(chain_progresses)

        mcmc.NutpieProgressBarManager = Forwarding
        try:
            yield {}
        finally:
            mcmc.NutpieProgressBarManager = base
    elif sampler == "pymc":
        counts = {"draws": 0, "divergences": 0}

        def callback(trace, draw) -> None:
            counts["draws"] += 1
            counts["divergences"] += int(bool(draw.stats[0].get("diverging", False)))
            throttled(counts["draws"], counts["divergences"])

        yield {"callback": callback}
    else:  # numpyro reports nothing while its chains run in parallel: say how long it has been sampling
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(PROGRESS_EVERY_S):
                report(f"sampling with {sampler}: {time.monotonic() - throttled.start:.0f} s")

        thread = threading.Thread(target=heartbeat, daemon=True)
        thread.start()
        try:
            yield {}
        finally:
            done.set()
            thread.join()
