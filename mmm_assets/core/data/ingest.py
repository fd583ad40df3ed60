"""Reading a landing file (CSV or Parquet) into the pipeline's canonical frame.

Nothing is coerced silently: every cell that is not an ISO-8601 date or a plain number, every date after today and
every number beyond the files source's ``max_abs_value`` is reported with its line (CSV, 1-based, the header is
line 1) or row (Parquet, 1-based), all in one :class:`InputError`. Daily rows are summed into weeks only when the
files source asks for it (``aggregate_daily``), and only whole, gap-free weeks.

Memory is bounded: a file larger than ``max_file_mb`` is refused before it is read, and only the mapped columns
are kept (CSV: core/data/landing_csv.py; Parquet: its column selection).
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype

from mmm_assets.core.config import (
    DATE_COLUMN,
    DEFAULT_MAX_ABS_VALUE,
    DEFAULT_MAX_FILE_MB,
    TARGET_COLUMN,
    ColumnMapping,
    FilesSource,
    normalised_name,
)
from mmm_assets.core.data.features import SOURCE_COLUMNS_ATTR
from mmm_assets.core.data.landing_csv import NO_ROWS, read_csv_columns
from mmm_assets.core.errors import InputError, day, examples, raise_if_problems
from mmm_assets.core.stores.duckdb_store import MB, shown_mb

SUPPORTED_SUFFIXES = (".csv", ".parquet")

_PLAIN_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
#: Cell texts that mean "no value" (compared lower-case); numbers that overflow to infinity count as well.
_MISSING = {"", "nan", "na", "n/a", "#n/a", "null", "none", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
#: Thousands separators, currency symbols and percent signs: formatting a spreadsheet adds and we do not parse.
_FORMATTING = re.compile(r"[,'’\s$€£¥%]")
WEEK_DAYS = 7
#: The frame's attribute holding the market column's value of the market read (its name may be normalised).
MARKET_VALUE_ATTR = "market_value"


class LandingFile(Path):
    """A landing file resolved from a files source: its path, carrying the source's reading rules.

    The rules (``max_abs_value``, ``max_file_mb``, ``aggregate_daily``) travel with the path, so every reader of a
    resolved file (the ingest asset, the landing sensor) applies the same ones; a plain :class:`Path` is read with
    the defaults.
    """

    def __init__(self, path: Path, source: FilesSource) -> None:
        super().__init__(path)
        self.source = source

    def with_segments(self, *segments: str | os.PathLike[str]) -> Path:
        """Paths derived from this one (its parent, ``resolve()``, ...) are plain paths."""
        return Path(*segments)


@dataclass(frozen=True)
class _Table:
    """A landing file's header and its raw cells, indexed by line (CSV) or row (Parquet) number."""

    header: list[str]
    cells: pd.DataFrame  # the columns whose name occurs once in the header
    unit: str  # "line" or "row"


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; use a .csv or .parquet file")
    return suffix


def _landing_files(landing: Path) -> list[Path]:
    return sorted(p for p in landing.iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES and p.is_file())


def resolve_landing_file(files: FilesSource) -> LandingFile:
    """The configured file in the landing folder, or its newest .csv / .parquet file (by mtime, ties by name)."""
    landing = files.landing_dir
    if not landing.is_dir():
        raise InputError(
            f"landing folder {landing} does not exist; create it and put the weekly CSV or Parquet export there"
        )
    available = _landing_files(landing)
    if files.file is not None:
        path = landing / files.file
        _check_suffix(path)
        if not path.is_file():
            present = ", ".join(p.name for p in available) or "none"
            raise InputError(f"{path}: file not found in the landing folder (.csv/.parquet files there: {present})")
    elif not available:
        raise InputError(
            f"landing folder {landing} holds no .csv or .parquet file; put the weekly export there "
            "or name the file in data.files.file"
        )
    else:
        path = max(available, key=lambda p: (p.stat().st_mtime_ns, p.name))
    real, root = path.resolve(), landing.resolve()
    if not real.is_relative_to(root):
        raise InputError(
            f"{path}: resolves to {real}, which escapes the landing folder {root}; copy the file into the folder "
            "instead of linking to it"
        )
    return LandingFile(path, files)


def _market_column(path: Path) -> str | None:
    return path.source.market_column if isinstance(path, LandingFile) else None


def _check_size(path: Path) -> None:
    """Refuse an empty file, and one over the size limit before reading it: the limit bounds the memory a read
    takes."""
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes); export the weekly data again")
    limit = path.source.max_file_mb if isinstance(path, LandingFile) else DEFAULT_MAX_FILE_MB
    if size > limit * MB:
        raise InputError(
            f"{path}: the file is {shown_mb(size / MB)} MB, over the {limit:g} MB limit (data.files.max_file_mb); "
            "export only the columns and weeks the model needs, or raise data.files.max_file_mb if a file this "
            "large is expected"
        )


def _read_table(path: Path, columns: ColumnMapping) -> _Table:
    suffix = _check_suffix(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    _check_size(path)
    column = _market_column(path)
    wanted = {source for _, source, _ in _roles(columns)} | ({column} if column else set())
    if suffix == ".csv":
        table = _Table(*read_csv_columns(path, wanted), "line")
    else:
        table = _read_parquet(path, wanted)
    if column is not None and column not in table.cells:
        close = difflib.get_close_matches(column, table.header, n=1)
        raise InputError(
            f"{path}: no market column {column!r} (data.files.market_column){f'; did you mean {close[0]!r}?' if close else ''}; "
            f"the file has columns {', '.join(map(repr, table.header))}"
        )
    return table


def landing_market_names(path: Path, columns: ColumnMapping) -> dict[str, str]:
    """{market name: the market column's value} of a landing file with a market column, sorted by name.

    A market name is the value normalised (:func:`mmm_assets.core.config.normalised_name`: "North East" ->
    "north_east"), so the file's own spelling works unchanged. Raises :class:`InputError` naming the file, the column
    and the values when a value has no letter or digit, or when two values become the same name ("North East" and
    "north-east"): which market their rows belong to is then a guess.
    """
    column = _market_column(path)
    if column is None:
        raise ValueError(f"{path}: the files source has no market_column")
    table = _read_table(path, columns)
    return _market_names(path, table, column, _market_text(table.cells[column]))


def landing_markets(path: Path, columns: ColumnMapping) -> list[str]:
    """The market names a landing file with a market column holds, sorted (see :func:`landing_market_names`)."""
    return list(landing_market_names(path, columns))


def _market_names(path: Path, table: _Table, column: str, texts: pd.Series) -> dict[str, str]:
    spellings: dict[str, list[str]] = {}
    unusable = []
    for value in sorted(set(texts.unique())):
        name = normalised_name(value, "market")
        if name is None:
            unusable.append(value)
        else:
            spellings.setdefault(name, []).append(value)
    where = f"{path}: column {column!r} (market)"
    if unusable:
        lines = table.cells.index[texts.isin(unusable).to_numpy(dtype=bool)]
        raise InputError(
            f"{where}: {examples([repr(v) for v in unusable])} at {table.unit} {examples([str(i) for i in lines])} "
            "cannot name a market (no letter or digit); give every row its market"
        )
    clashes = {name: values for name, values in spellings.items() if len(values) > 1}
    if clashes:
        said = "; ".join(f"{' and '.join(map(repr, values))} become the same market {name!r}"
                         for name, values in sorted(clashes.items()))
        raise InputError(
            f"{where}: {said} (market names are the values in lower case, other characters as '_'); spell each "
            "market one way in the export, or give the different markets names that differ in letters or digits"
        )
    return {name: values[0] for name, values in sorted(spellings.items())}


def read_landing_file(path: Path, columns: ColumnMapping, market: str | None = None) -> pd.DataFrame:
    """The file as a canonical frame: ``date``, ``y``, the channels and the controls, in the file's row order.

    With ``aggregate_daily`` (a :class:`LandingFile` of such a source), one row per week instead, in date order.
    With a ``market_column`` (a :class:`LandingFile` of such a source), only ``market``'s rows: those whose value
    normalises to ``market`` (:func:`landing_market_names`), the value kept in ``attrs[MARKET_VALUE_ATTR]``.
    The frame's ``attrs[SOURCE_COLUMNS_ATTR]`` maps each canonical column to the file's own name, so that later
    checks (core/data/features.py) name the user's columns.
    """
    table = _read_table(path, columns)
    column = _market_column(path)
    if column is not None:
        if market is None:
            raise ValueError(f"{path}: the file holds several markets; say which one to read")
        texts = _market_text(table.cells[column])
        names = _market_names(path, table, column, texts)
        if market not in names:
            raise InputError(
                f"{path}: column {column!r} (market) has no row for market {market!r}; it has {examples(list(names))}"
            )
        table = _Table(table.header, table.cells[(texts == names[market]).to_numpy(dtype=bool)], table.unit)
    limit = path.source.max_abs_value if isinstance(path, LandingFile) else DEFAULT_MAX_ABS_VALUE
    frame = _canonical(path, table, columns, limit)
    if isinstance(path, LandingFile) and path.source.aggregate_daily:
        frame = _weekly_sums(path, frame, columns)
    frame.attrs[SOURCE_COLUMNS_ATTR] = {canonical: source for canonical, source, _ in _roles(columns)}
    if column is not None:
        frame.attrs[MARKET_VALUE_ATTR] = names[market]
    return frame


def _read_parquet(path: Path, sources: set[str]) -> _Table:
    """The ``sources`` columns that occur once in the file's schema, indexed by 1-based row number."""
    try:
        header = pq.read_schema(path).names
        counts = Counter(header)
        wanted = [name for name in header if counts[name] == 1 and name in sources]
        table = pq.read_table(path, columns=wanted)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: not a readable Parquet file ({err}); export it again") from None
    if table.num_rows == 0:
        raise InputError(f"{path}: {NO_ROWS}")
    cells = pd.DataFrame({name: table.column(name).to_pandas() for name in wanted})
    cells.index = cells.index + 1
    return _Table(header, cells, "row")


def _roles(mapping: ColumnMapping) -> list[tuple[str, str, str]]:
    """(canonical name, source column, role as said in messages) for every mapped column, in output order."""
    return [
        (DATE_COLUMN, mapping.date, "date"),
        (TARGET_COLUMN, mapping.target, "target"),
        *((name, source, f"channel {name!r}") for name, source in mapping.channels.items()),
        *((name, source, f"control {name!r}") for name, source in mapping.controls.items()),
    ]


def _header_problems(header: list[str], roles: list[tuple[str, str, str]]) -> list[str]:
    problems = []
    repeated = [f"{name!r} ({n} times)" for name, n in Counter(header).items() if n > 1]
    if repeated:
        problems.append(f"duplicate column name(s) in the header: {', '.join(repeated)}; column names must be unique")
    missing = []
    for _, source, role in roles:
        if source not in header:
            close = difflib.get_close_matches(source, header, n=1)
            missing.append(f"{source!r} ({role}{f'; did you mean {close[0]!r}?' if close else ''})")
    if missing:
        problems.append(
            f"mapped column(s) not in the file: {', '.join(missing)}; the file has columns "
            f"{', '.join(map(repr, header))}. Fix data.files.columns in the scenario config or the export"
        )
    return problems


def cell_text(cells: pd.Series) -> pd.Series:
    """Cells as stripped strings, empty where there is no value."""
    return cells.astype(object).where(cells.notna(), "").astype(str).str.strip()


def _market_text(cells: pd.Series) -> pd.Series:
    """A market column as stripped strings; Arrow text (a CSV's) stays in Arrow, so the many rows of a file of many
    markets cost no Python string each."""
    if isinstance(cells.dtype, pd.ArrowDtype):
        return cells.str.strip()
    return cell_text(cells)


def cells_at(mask: pd.Series, unit: str, values: pd.Series | None = None) -> str:
    """ "line 3 ('abc'), line 7 ('x') and K more" for the cells selected by ``mask``."""
    where = mask.index[mask.to_numpy()]
    return examples([f"{unit} {i}" + ("" if values is None else f" ({values[i]!r})") for i in where])


def _parse_one_date(value: str) -> pd.Timestamp | None:
    try:
        stamp = pd.to_datetime(value, format="ISO8601")
    except (ValueError, OverflowError):
        return None
    return stamp.tz_localize(None) if stamp.tzinfo is not None else stamp


def parse_dates(text: pd.Series) -> pd.Series:
    """ISO-8601 dates as naive datetimes (a time zone is dropped, keeping the local date); NaT where not a date."""
    try:
        with warnings.catch_warnings(action="ignore"):  # mixed time zones warn and give objects; handled below
            parsed = pd.to_datetime(text, format="ISO8601")
    except (ValueError, OverflowError):  # some value is not ISO-8601: parse one by one to find which
        parsed = None
    if parsed is None or not is_datetime64_any_dtype(parsed):
        return pd.to_datetime(text.map(_parse_one_date, na_action="ignore"))
    return parsed.dt.tz_localize(None) if isinstance(parsed.dtype, pd.DatetimeTZDtype) else parsed


def _dates(cells: pd.Series, unit: str) -> tuple[pd.Series, list[str]]:
    if is_datetime64_any_dtype(cells):
        parsed = cells.dt.tz_localize(None) if isinstance(cells.dtype, pd.DatetimeTZDtype) else cells
        text, bad = None, pd.Series(False, index=cells.index)
    else:
        text = cell_text(cells)
        parsed = parse_dates(text.where(text != ""))
        bad = parsed.isna() & (text != "")
    missing = parsed.isna() & ~bad
    days = parsed.dt.normalize()
    today = pd.Timestamp.today().normalize()
    future = days > today
    problems = []
    if missing.any():
        problems.append(f"missing date at {cells_at(missing, unit)}")
    if bad.any():
        problems.append(
            f"not an ISO-8601 date (YYYY-MM-DD) at {cells_at(bad, unit, text)}; export every date as YYYY-MM-DD"
        )
    if future.any():
        problems.append(
            f"date in the future (today is {today:%Y-%m-%d}) at {cells_at(future, unit, days.dt.strftime('%Y-%m-%d'))}; "
            "export actuals only (no plans or forecasts) and check the date format"
        )
    return days, problems


def parse_numbers(cells: pd.Series, unit: str, limit: float) -> tuple[pd.Series, list[str]]:
    """Plain numbers of ``cells`` (NaN where not one) and the problems found, naming the ``unit``s (lines, rows)."""
    if is_numeric_dtype(cells) and not is_bool_dtype(cells):
        text, values = None, cells.astype("float64")
        bad = pd.Series(False, index=cells.index)
    else:
        text = cell_text(cells)
        plain = text.str.fullmatch(_PLAIN_NUMBER)
        values = text.where(plain).astype("float64")
        bad = ~plain & ~text.str.lower().isin(_MISSING)
    missing = ~np.isfinite(values) & ~bad
    huge = np.isfinite(values) & (values.abs() > limit)
    problems = []
    if missing.any():
        problems.append(f"missing or non-finite value at {cells_at(missing, unit)}; every week needs a number")
    if huge.any():
        problems.append(
            f"value beyond ±{limit:g} at {cells_at(huge, unit, values.map('{:g}'.format))}; check the export's units "
            "and digits, or raise data.files.max_abs_value if such values are real"
        )
    if bad.any():
        formatted = text[bad].str.contains(_FORMATTING).any()
        hint = "thousands separators, currency symbols and '%' are not parsed; " if formatted else ""
        problems.append(
            f"not a plain number at {cells_at(bad, unit, text)}; {hint}"
            "export plain numbers with '.' as the decimal point (e.g. 1234.5)"
        )
    return values, problems


def _canonical(path: Path, table: _Table, mapping: ColumnMapping, limit: float) -> pd.DataFrame:
    roles = _roles(mapping)
    problems = _header_problems(table.header, roles)
    out: dict[str, pd.Series] = {}
    for canonical, source, role in roles:
        if source in table.cells:
            if canonical == DATE_COLUMN:
                out[canonical], found = _dates(table.cells[source], table.unit)
            else:
                out[canonical], found = parse_numbers(table.cells[source], table.unit, limit)
            problems += [f"column {source!r} ({role}): {problem}" for problem in found]
    raise_if_problems(str(path), problems)
    frame = pd.DataFrame(out).reset_index(drop=True)
    frame[DATE_COLUMN] = frame[DATE_COLUMN].astype("datetime64[ns]")
    return frame


def _weekly_sums(path: Path, frame: pd.DataFrame, mapping: ColumnMapping) -> pd.DataFrame:
    """Daily rows as weeks starting on the first day's weekday: target and spend summed, controls averaged.

    Only whole weeks of consecutive days are summed; a duplicate or missing day, an unfinished last week or a file
    that is not daily is rejected rather than summed into a week that is too small or too large.
    """
    where = f"column {mapping.date!r} (date; data.files.aggregate_daily is true)"
    days = frame[DATE_COLUMN]
    counts = days.value_counts().sort_index()
    unique = pd.DatetimeIndex(counts.index)
    steps = unique[1:] - unique[:-1]
    if len(steps) and steps.median() > pd.Timedelta(days=1):
        raise InputError(
            f"{path}: {where}: the dates are not daily (typically {steps.median().days} days apart); "
            "set aggregate_daily: false for a weekly file"
        )
    problems = []
    repeated = [f"{day(date)} ({n} rows)" for date, n in counts[counts > 1].items()]
    if repeated:
        problems.append(f"{where}: duplicate days {examples(repeated)}; keep one row per day")
    first, last = unique.min(), unique.max()
    missing = [day(date) for date in pd.date_range(first, last, freq="D").difference(unique)]
    if missing:
        problems.append(f"{where}: no row for day(s) {examples(missing)}; every day of every week is needed")
    tail = ((last - first).days + 1) % WEEK_DAYS
    if tail:
        problems.append(
            f"{where}: the last week, from {day(last - pd.Timedelta(days=tail - 1))}, has {tail} of {WEEK_DAYS} days; "
            "remove its days or wait until the week is over"
        )
    raise_if_problems(str(path), problems)
    week = first + pd.to_timedelta((days - first).dt.days // WEEK_DAYS * WEEK_DAYS, unit="D")
    values = frame.drop(columns=[DATE_COLUMN]).groupby(week.rename(DATE_COLUMN))
    controls = list(mapping.controls)
    weekly = values.sum()
    weekly[controls] = values[controls].mean()
    return weekly.reset_index()
