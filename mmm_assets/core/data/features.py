"""Checks that a canonical weekly frame (``date``, ``y``, channels, controls) can be modelled.

Every problem is collected and reported in one :class:`InputError`, naming the column and the dates (YYYY-MM-DD).
Columns are named as the user's file names them when the frame says so (``attrs[SOURCE_COLUMNS_ATTR]``, set by
core/data/ingest.py): "column 'Revenue (EUR)' (target)", "column 'Facebook' (channel 'facebook')".
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_datetime64_dtype, is_numeric_dtype

from mmm_assets.core.config import DATE_COLUMN, TARGET_COLUMN
from mmm_assets.core.errors import InputError, day, examples, raise_if_problems

WEEK = pd.Timedelta(days=7)
DAY = pd.Timedelta(days=1)
#: The frame attribute mapping each canonical column to the landing file's own name for it (messages use it).
SOURCE_COLUMNS_ATTR = "source_columns"
#: The frame attribute that says where the weekly data came from (validation messages name it).
SOURCE_ATTR = "source"


def _column(column: str, role: str, names: Mapping[str, str]) -> str:
    """How messages name a column: by the landing file's own name when known ("column 'Facebook' (channel
    'facebook')", "column 'Revenue (EUR)' (target)"), else by the pipeline's ("column 'facebook' (channel)")."""
    source = names.get(column)
    if source is None:
        return "column 'date'" if column == DATE_COLUMN else f"column {column!r} ({role})"
    own = "" if column in (DATE_COLUMN, TARGET_COLUMN) else f" {column!r}"
    return f"column {source!r} ({role}{own})"


def _on(mask: pd.Series, labels: pd.Series, values: pd.Series | None = None) -> str:
    """ "2021-01-04 (-5), 2021-01-11 (-2) and K more" for the rows selected by ``mask``."""
    chosen = labels[mask]
    if values is not None:
        chosen = chosen + " (" + values[mask].map("{:.10g}".format) + ")"
    return examples(list(chosen))


def _type_problems(frame: pd.DataFrame, roles: dict[str, str], names: Mapping[str, str]) -> list[str]:
    problems = []
    for column, role in roles.items():
        dtype = frame[column].dtype
        if column == DATE_COLUMN and not is_datetime64_dtype(dtype):
            problems.append(f"{_column(column, role, names)} has type {dtype}; expected time-zone-naive dates")
        elif column != DATE_COLUMN and (not is_numeric_dtype(dtype) or is_bool_dtype(dtype)):
            problems.append(f"{_column(column, role, names)} has type {dtype}; expected numbers")
    return problems


def _cadence_problems(dates: pd.Series) -> list[str]:
    """Missing weeks between the dates, and steps between consecutive dates that are not whole weeks."""
    weeks = pd.DatetimeIndex(dates.dropna().unique()).sort_values()
    missing: list[str] = []
    off: list[str] = []
    for start, end in zip(weeks[:-1], weeks[1:]):
        step = end - start
        if step % WEEK == pd.Timedelta(0):
            missing += [day(week) for week in pd.date_range(start + WEEK, end - WEEK, freq=WEEK)]
        else:
            days = step / DAY
            off.append(f"{days:g} day{'' if days == 1 else 's'} between {day(start)} and {day(end)}")
    problems = []
    if missing:
        problems.append(f"no row for week(s) {examples(missing)}; the weeks must be contiguous, add the missing ones")
    if off:
        steps = weeks[1:] - weeks[:-1]
        daily = (steps == DAY).sum() * 2 >= len(steps)
        hint = (
            f"; {len(weeks)} dates, most of them one day apart: the file looks daily, set "
            "data.files.aggregate_daily: true to sum the days into weeks"
            if daily else ""
        )
        problems.append(
            f"dates are not weekly: found steps of {examples(off)}; the file must have one row per week, "
            f"all dates on the same weekday{hint}"
        )
    return problems


def _value_problems(
    frame: pd.DataFrame, roles: dict[str, str], labels: pd.Series, names: Mapping[str, str]
) -> list[str]:
    problems = []
    missing_dates = frame[DATE_COLUMN].isna()
    if missing_dates.any():
        problems.append(f"{_column(DATE_COLUMN, 'date', names)}: missing date in {_on(missing_dates, labels)}")
    for column, role in roles.items():
        if column == DATE_COLUMN:
            continue
        values = frame[column].astype("float64")
        where = _column(column, role, names)
        invalid = ~np.isfinite(values)
        if invalid.any():
            problems.append(f"{where}: missing or non-finite value on {_on(invalid, labels)}")
        if role == "channel":
            negative = values < 0
            if negative.any():
                problems.append(
                    f"{where}: negative spend on {_on(negative, labels, values)}; spend cannot be negative, "
                    "correct those weeks in the export"
                )
            if len(values) and (values == 0).all():
                owner = _column(column, role, names) if column in names else f"channel {column!r}"
                problems.append(f"{owner} has no spend in any week; remove it from the column mapping")
    return problems


def _target_problems(target: pd.Series, labels: pd.Series, names: Mapping[str, str]) -> list[str]:
    problems = []
    where = _column(TARGET_COLUMN, "target", names)
    finite = target[np.isfinite(target)]
    if len(finite) > 1 and finite.nunique() == 1:
        constant = f"{finite.iloc[0]:.10g}"
        problems.append(
            f"{where}: the target is constant ({constant} in every week); the model cannot explain it: "
            "check that the target is mapped to the KPI column"
        )
    not_positive = target <= 0
    if not_positive.any():
        problems.append(
            f"{where}: zero or negative on {_on(not_positive, labels, target)}; the target must be "
            "positive in every week (MAPE is undefined otherwise)"
        )
    return problems


def validate_features(
    frame: pd.DataFrame, channels: list[str], controls: list[str], min_weeks: int, source: str
) -> pd.DataFrame:
    """A copy of ``frame`` sorted by date with a fresh index, after checking that it is a modellable weekly series.

    Messages name the columns as the landing file does when ``frame.attrs[SOURCE_COLUMNS_ATTR]`` says how (a frame
    from core/data/ingest.py's ``read_landing_file``), by the pipeline's names otherwise.
    """
    names: Mapping[str, str] = frame.attrs.get(SOURCE_COLUMNS_ATTR, {})
    roles = {DATE_COLUMN: "date", TARGET_COLUMN: "target"} | dict.fromkeys(channels, "channel")
    roles |= dict.fromkeys(controls, "control")
    absent = [column for column in roles if column not in frame.columns]
    if absent:
        raise InputError(
            f"{source}: column(s) {', '.join(map(repr, absent))} missing from the weekly table "
            f"(it has {', '.join(map(repr, frame.columns))})"
        )
    work = frame[list(roles)].reset_index(drop=True)
    raise_if_problems(source, _type_problems(work, roles, names))
    # The index keeps each row's input position, to name rows that have no date.
    work = work.sort_values(DATE_COLUMN, kind="stable", na_position="last")
    dates = work[DATE_COLUMN]
    positions = pd.Series(work.index + 1, index=work.index).astype(str)
    labels = dates.dt.strftime("%Y-%m-%d").where(dates.notna(), "row " + positions)

    problems = _value_problems(work, roles, labels, names)
    counts = dates.value_counts().sort_index()
    repeated = [f"{day(date)} ({n} rows)" for date, n in counts[counts > 1].items()]
    if repeated:
        problems.append(f"duplicate dates: {examples(repeated)}; keep one row per week")
    problems += _cadence_problems(dates)
    if len(work) < min_weeks:
        problems.append(
            f"found {len(work)} weeks, at least {min_weeks} are needed; export a longer history "
            "(validation.min_weeks sets the minimum)"
        )
    problems += _target_problems(work[TARGET_COLUMN].astype("float64"), labels, names)
    raise_if_problems(source, problems)

    numbers = [column for column in roles if column != DATE_COLUMN]
    out = work.reset_index(drop=True)
    out[numbers] = out[numbers].astype("float64")
    out[DATE_COLUMN] = out[DATE_COLUMN].astype("datetime64[ns]")
    return out
