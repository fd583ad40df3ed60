"""How the budget optimiser's calls are made: the attempts tried in turn, and the tolerance SLSQP stops at.

SLSQP stops when the objective moves by less than its ``ftol``, an absolute amount. The library's default, 1e-9 on
the objective divided by its steepest gradient entry when that exceeds one, is below the rounding of an expected
response in the millions: on a market whose marginal returns were all below one (no rescaling) SLSQP ran its 1,000
iterations (70 s) to the split that a tolerance relative to the objective reaches in 0.14 s. So an SLSQP attempt
stops at ``SLSQP_RTOL`` times the objective's size at its start, unless it sets a tolerance of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: SLSQP's stopping tolerance relative to the objective at the start (see the module's docstring); None: the
#: library's own (benchmarks/slsqp_tolerance.py compares them).
SLSQP_RTOL: float | None = 1e-12


@dataclass(frozen=True)
class Attempt:
    """One call of the library's optimiser: a label and the ``minimize_kwargs`` it passes to scipy."""

    name: str
    minimize_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def kwargs(self, size: float) -> dict[str, Any]:
        """The ``minimize_kwargs`` of a call whose objective is ``size`` in absolute value at the start: with
        ``ftol`` SLSQP_RTOL x ``size`` for SLSQP (the library's default method) when the attempt sets none."""
        options = dict(self.minimize_kwargs.get("options", {}))
        own = "ftol" in options or self.minimize_kwargs.get("tol") is not None
        slsqp = str(self.minimize_kwargs.get("method", "SLSQP")).upper() == "SLSQP"
        if not slsqp or own or not size or SLSQP_RTOL is None:
            return dict(self.minimize_kwargs)
        return {**self.minimize_kwargs, "options": {**options, "ftol": SLSQP_RTOL * size}}


#: SLSQP, then a derivative-free solver for the totals where it fails.
DEFAULT_ATTEMPTS: tuple[Attempt, ...] = (Attempt("SLSQP"), Attempt("COBYQA", {"method": "COBYQA"}))
