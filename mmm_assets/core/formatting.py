"""Numbers as people read them, shared by the advice (decisions), the report (presentation) and the Dagster metadata:
a core-level module below every layer, as the advice's sentences are written in ``decisions``.

Every amount is shown by its magnitude with a few significant digits, never rounded to an integer: spend kept in
thousands reads "1.52" (not "2"), a ROAS "0.873", a total "12,400", a large one "1.2M". A table or a sentence can
mix such units and each number still says what it is.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

#: Significant digits of a number in a sentence (advice, summary, plot labels) ...
DIGITS = 3
#: ... and in a table cell (report, metadata), where diagnostics need one more: an R-hat of 1.004 against a gate of
#: 1.01 or an R² of 0.9996 must not read "1".
TABLE_DIGITS = 4
#: Suffixes from this magnitude up (below it, thousands separators: 12,400).
COMPACT = ((1e12, "T"), (1e9, "B"), (1e6, "M"))


def significant(value: float, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits, halves away from zero as people round (13,050 -> 13,100,
    0.125 -> 0.13; Python's ``round`` would give 13,000 and 0.12), on the number as written (its shortest repr).
    A float, for metadata; 0, NaN and inf unchanged."""
    if not math.isfinite(value) or value == 0:
        return value
    step = Decimal(1).scaleb(math.floor(math.log10(abs(value))) - digits + 1)
    return float(Decimal(repr(float(value))).quantize(step, rounding=ROUND_HALF_UP))


def number(value: float | None, digits: int = DIGITS) -> str:
    """``value`` with ``digits`` significant digits by its magnitude: 0.873, 1.52, 152, 12,400, 1.2M, 3.4B.

    Trailing zeros are dropped (1.20M reads 1.2M, 150.0 reads 150); values below 0.001 or from 1e15 in absolute size
    use scientific notation (1.2e-05); empty for None and NaN; "inf" / "-inf" for infinities.
    """
    if value is None or value != value:
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    rounded = significant(float(value), digits)
    if rounded == 0:
        return "0"
    size = abs(rounded)
    if size >= 1e15 or size < 1e-3:
        return f"{rounded:.{digits}g}"
    for limit, suffix in COMPACT:
        if size >= limit:
            return f"{rounded / limit:.{digits}g}{suffix}"
    if size >= 1000:
        return f"{rounded:,.0f}"
    text = f"{rounded:.{max(digits - 1 - math.floor(math.log10(size)), 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def cell(value: float | None) -> str:
    """A table cell: :func:`number` with ``TABLE_DIGITS`` significant digits (1.004, 0.9996, 12,440, 1.234M)."""
    return number(value, TABLE_DIGITS)


def signed(value: float, digits: int = DIGITS) -> str:
    """:func:`number` with its sign always shown: +1.52, -12,400, +0."""
    text = number(value, digits)
    return text if text.startswith("-") or not text else f"+{text}"
