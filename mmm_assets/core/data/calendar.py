"""The calendar's event columns: 0/1 indicators of the weeks around each event date, added to the weekly table
before it is validated, so they are stored with the features (roles: :mod:`mmm_assets.core.modelling.roles`).

Imports no PyMC: the feature step and the synthetic generator call it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from mmm_assets.core.config import DATE_COLUMN, EVENT_PREFIX, CalendarEvent, MMMConfig

WEEK = pd.Timedelta(days=7)


def event_indicators(dates: pd.Series | pd.DatetimeIndex, calendar: Mapping[str, CalendarEvent]) -> pd.DataFrame:
    """One 0/1 column ``event_<name>`` per event: 1 in the week holding an event date (week ``w`` holds the days
    ``w .. w + 6``), and in ``weeks_before`` / ``weeks_after`` weeks around it. Dates outside the weeks are ignored.
    Rows follow ``dates``; its weeks need not be sorted.
    """
    index = pd.DatetimeIndex(pd.to_datetime(dates))
    weeks = index.unique().sort_values()
    out = pd.DataFrame(index=range(len(index)))
    for name, event in calendar.items():
        flagged = np.zeros(len(weeks))
        for day in pd.DatetimeIndex(pd.to_datetime(event.dates)):
            at = int(weeks.searchsorted(day, side="right")) - 1
            if at < 0 or day >= weeks[at] + WEEK:
                continue
            flagged[max(0, at - event.weeks_before) : at + event.weeks_after + 1] = 1.0
        out[EVENT_PREFIX + name] = pd.Series(flagged, index=weeks).reindex(index).to_numpy()
    return out


def with_calendar(frame: pd.DataFrame, cfg: MMMConfig) -> pd.DataFrame:
    """``frame`` with the calendar's event columns added (a copy; other columns untouched).

    A pure function of the frame's ``date`` column and ``model.calendar``: call it on the weekly table before
    validating it, so the event columns are stored with the features.
    """
    if not cfg.model.calendar:
        return frame.copy()
    if DATE_COLUMN not in frame.columns:
        raise ValueError(f"the weekly table has no {DATE_COLUMN!r} column to place the calendar's events on")
    flags = event_indicators(frame[DATE_COLUMN], cfg.model.calendar)
    out = frame.copy()
    for column in flags.columns:
        out[column] = flags[column].to_numpy()
    return out
