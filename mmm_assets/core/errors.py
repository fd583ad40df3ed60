"""The error raised for unusable input data, and the helpers that format its messages."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

#: How many offending lines / dates a message lists before "and K more".
MAX_EXAMPLES = 5


class InputError(ValueError):
    """Bad input data. The message names the file, the column and the row(s)/date(s), and what to do about it."""


def examples(items: Sequence[str], limit: int = MAX_EXAMPLES) -> str:
    """The first ``limit`` items, comma-separated, with an "and K more" tail for the rest."""
    shown = ", ".join(items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def day(stamp: pd.Timestamp) -> str:
    """A date as messages show it: YYYY-MM-DD."""
    return stamp.strftime("%Y-%m-%d")


def raise_if_problems(source: str, problems: Sequence[str]) -> None:
    """Raise one :class:`InputError` listing every problem found in ``source``; do nothing when there are none."""
    if problems:
        bullets = "\n".join(f"  - {problem}" for problem in problems)
        raise InputError(f"{source}: {len(problems)} problem(s) found:\n{bullets}")
