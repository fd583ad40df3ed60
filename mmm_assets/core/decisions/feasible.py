"""Feasible allocations of a total budget: the split nearest a given one within the channels' bounds, and what an
optimiser's answer breaks (the total, or a bound beyond BOUND_SLACK)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

#: Numeric slack allowed on a bound, relative to the total budget.
BOUND_SLACK = 1e-6


def project(spend: np.ndarray, lower: np.ndarray, upper: np.ndarray, total: float) -> np.ndarray:
    """The closest allocation to ``spend`` (Euclidean) that sums to ``total`` within the bounds."""

    def excess(shift: float) -> float:
        return float(np.clip(spend + shift, lower, upper).sum() - total)

    shift = brentq(excess, float((lower - spend).min()), float((upper - spend).max()))
    return np.clip(spend + shift, lower, upper)


def violation(
    spend: np.ndarray, lower: np.ndarray, upper: np.ndarray, total: float, tolerance: float, channels: list[str]
) -> str | None:
    """What an answer breaks (the total or a bound), or None when it holds."""
    gap = abs(spend.sum() - total)
    if gap > tolerance * total:
        return f"spends {spend.sum():,.2f} instead of {total:,.2f} ({100 * gap / total:.3g} % off)"
    slack = BOUND_SLACK * total
    outside = [c for c, s, lo, hi in zip(channels, spend, lower, upper) if not lo - slack <= s <= hi + slack]
    return f"breaks the bounds of {', '.join(outside)}" if outside else None
