"""The bad-input catalogue, end to end: every case goes through the assets and leaves nothing written.

Each case starts from a files scenario whose DuckDB already holds a good ``mmm_features`` table (from a good file),
then drops one bad landing file or bad scenario in, materialises ``marketing_spend`` + ``mmm_features`` and checks
two things: the run fails with one clear error (the file, the column, the lines or dates, what to do), and every
file of the scenario folder, the DuckDB database included, is byte for byte what it was. The unit tests of
test_ingest.py / test_features.py / test_config.py cover the same rules one function at a time.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterEvent, ExecuteInProcessResult

from mmm_assets.core.config import DEFAULT_MARKET, ColumnMapping, load_config
from mmm_assets.core.config.paths import DEFAULT_CONFIG
from mmm_assets.core.errors import day
from mmm_assets.core.stores.duckdb_store import read_market, read_table
from mmm_assets.core.synthetic.generator import generate, landing_export
from mmm_assets.defs.features import TABLE, mmm_features
from mmm_assets.defs.ingest import marketing_spend
from mmm_assets.defs.resources import ScenarioResource
from mmm_assets_tests.conftest import merge, write_scenario
from mmm_assets_tests.system.runs import materialize_market

COLUMNS = {
    "date": "Week Start",
    "target": "Revenue (EUR)",
    "channels": {"adwords": "Google Ads", "facebook": "Facebook", "linkedin": "LinkedIn"},
}
#: 208 weekly rows (2019-01-07 .. 2022-12-26) of the reference scenario under the team's column names.
GOOD = landing_export(generate(load_config(DEFAULT_CONFIG).data.synthetic)[0], ColumnMapping(**COLUMNS))
WEEKS = [day(stamp) for stamp in GOOD["Week Start"]]
TODAY = pd.Timestamp.today().normalize()

Writer = Callable[[Path], None]


def _files(**settings: object) -> dict:
    """Scenario overrides for a files source reading ``spend.csv`` from the test's landing folder."""
    return {"scenario": "landing", "data": {"source": "files", "files": {"file": "spend.csv", **settings}}}


def _scenario(folder: Path, overrides: dict) -> Path:
    base = _files(landing_dir=str(folder / "landing"), columns=COLUMNS)
    return write_scenario(folder, merge(base, overrides))


def _ingest(config: Path) -> ExecuteInProcessResult:
    resource = ScenarioResource(config_path=str(config))
    return materialize_market([marketing_spend, mmm_features], resources={"scenario": resource}, raise_on_error=False)


def errors(events: Iterable[DagsterEvent]) -> list[tuple[str, str]]:
    """(class name, message) of the innermost cause of every error among a run's events."""
    found = []
    for event in events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            found.append((error.cls_name, error.message))
    return found


def _snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the Dagster instance's own."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "dagster_home" not in p.parts
    }


# --- how a case writes its landing file ------------------------------------------------------------------------


def frame(change: Callable[[pd.DataFrame], pd.DataFrame] = lambda f: f) -> Writer:
    """Write ``change(copy of the good frame)`` as CSV."""
    return lambda path: change(GOOD.copy()).to_csv(path, index=False)


def cell(row: int, column: str, text: str) -> Writer:
    """The good file with one cell's text replaced (row is 0-based: it is on line row + 2)."""

    def change(data: pd.DataFrame) -> pd.DataFrame:
        data[column] = data[column].astype(object)
        data.loc[row, column] = text
        return data

    return frame(change)


def content(raw: bytes) -> Writer:
    return lambda path: path.write_bytes(raw)


def with_dates(dates: pd.DatetimeIndex) -> Writer:
    """The good rows under other dates."""
    return frame(lambda data: data.assign(**{"Week Start": dates}))


def daily(data: pd.DataFrame) -> pd.DataFrame:
    """Each week of ``data`` as seven days, each with a seventh of the week's target and spend."""
    days = data.loc[data.index.repeat(7)].reset_index(drop=True)
    days["Week Start"] = pd.date_range(data["Week Start"].iloc[0], periods=len(days), freq="D")
    numbers = days.columns.drop("Week Start")
    days[numbers] = days[numbers] / 7
    return days


def symlink_outside(path: Path) -> None:
    outside = path.parent.parent / "outside.csv"
    GOOD.to_csv(outside, index=False)
    path.symlink_to(outside)


def future_dates() -> pd.DatetimeIndex:
    """208 weekly dates, the last two after today."""
    return pd.date_range(end=TODAY + pd.Timedelta(days=14), periods=len(GOOD), freq="7D")


def csv_bytes(data: pd.DataFrame = GOOD) -> bytes:
    """``data`` as the CSV text pandas writes (every line, the last included, ends with a line break)."""
    return data.to_csv(index=False).encode()


def cut_off(keep: int) -> Writer:
    """The good file as an export that stopped ``keep`` characters into its last line (no final line break)."""
    text = csv_bytes().removesuffix(b"\n")
    last = text.rindex(b"\n") + 1
    return content(text[: last + keep])


def last_value_cut_to(kept: int) -> Writer:
    """The good file stopped ``kept`` characters into the last value of its last line (no final line break)."""
    text = csv_bytes().removesuffix(b"\n")
    return content(text[: text.rindex(b",") + 1 + kept])


def with_line(number: int, line: str) -> Writer:
    """The good file with line ``number`` (1-based, the header is line 1) replaced by ``line``."""
    lines = csv_bytes().decode().split("\n")
    lines[number - 1] = line
    return content("\n".join(lines).encode())


def nested(depth: int) -> Callable[[str], str]:
    """The scenario YAML with a mapping nested ``depth`` levels deep under ``model`` (block style)."""

    def edit(text: str) -> str:
        deep = "".join(f"{'  ' * level}k{level}:\n" for level in range(1, depth)) + f"{'  ' * depth}leaf: 1\n"
        return text.replace("\nmodel:\n", "\nmodel:\n" + deep, 1)

    return edit


def with_duplicate_key(text: str) -> str:
    """The scenario YAML with the linkedin channel mapped a second time, to another column."""
    return re.sub(r"(\n( +)linkedin: LinkedIn\n)", r"\1\2linkedin: Facebook\n", text, count=1)


# --- the catalogue -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: how to write it, and what the error must say (regular expressions, all of them)."""

    id: str
    expected: tuple[str, ...]
    write: Writer = frame()
    config: dict = field(default_factory=dict)
    edit_yaml: Callable[[str], str] | None = None
    error: str = "InputError"


def file_case(id: str, write: Writer, *expected: str, **config: object) -> Case:
    """A bad landing file (the message must also name it)."""
    return Case(id, (r"spend\.csv", *expected), write, _files(**config) if config else {})


def config_case(id: str, config: dict, *expected: str, edit_yaml: Callable[[str], str] | None = None) -> Case:
    """A bad scenario file with a good landing file (the message must name the scenario file)."""
    return Case(id, (r"scenario\.yaml", *expected), config=config, edit_yaml=edit_yaml, error="ConfigError")


W = WEEKS
CATALOGUE = [
    # -- the file itself
    file_case("empty-file", content(b""), r"the file is empty \(0 bytes\); export the weekly data again"),
    file_case("binary-file", content(b"Week Start,Revenue\x00\x01\x02\xff"),
              r"not a CSV file \(binary content\); export the data as comma-separated UTF-8 text"),
    file_case("excel-renamed-csv", content(b"PK\x03\x04\x14\x00\x06\x00"),
              r"looks like an Excel workbook.*export the data as comma-separated text"),
    file_case("semicolon-delimiter", lambda p: GOOD.to_csv(p, index=False, sep=";"),
              r"looks semicolon-separated; a comma-separated file is expected \(export as CSV with ',' as"),
    file_case("header-only", frame(lambda f: f.iloc[:0]), r"has a header but no data rows; export the weekly data"),
    file_case("file-too-large", frame(),
              r"the file is 0\.011 MB, over the 0\.01 MB limit \(data\.files\.max_file_mb\); export only the "
              r"columns and weeks the model needs, or raise data\.files\.max_file_mb", max_file_mb=0.01),
    # -- lines: fields missing or too many, a file cut off at the end
    file_case("cut-off-mid-line", cut_off(keep=25),
              r"the file seems cut off: its last line \(line 209\) has 2 of the header's 5 fields and no line break "
              r"at the end; export the file again"),
    file_case("cut-off-inside-last-value", last_value_cut_to(2),
              r"the file seems cut off: its last line \(line 209\) has no line break at the end, and both the line and "
              r"its last value are shorter than on every other line, as if the export stopped inside that value; "
              r"export the file again \(if that line is complete, end the file with a line break\)"),
    file_case("short-line", with_line(31, f"{W[29]},1000,20,30"),
              r"cannot be read as CSV: fewer fields than the header's 5 at line 31 \(4 fields\); every line needs a "
              r"field \(empty or not\) for every column"),
    file_case("unquoted-comma", with_line(12, f"{W[10]},1,234.5,20,30,40"),
              r"cannot be read as CSV: more fields than the header's 5 at line 12 \(6 fields\); values that contain "
              r"commas \(e\.g\. thousands separators\) must be quoted or written without them"),
    # -- columns
    file_case("missing-date-column", frame(lambda f: f.drop(columns=["Week Start"])),
              r"not in the file: 'Week Start' \(date\).*Fix data\.files\.columns in the scenario config or the export"),
    file_case("missing-target-column", frame(lambda f: f.drop(columns=["Revenue (EUR)"])),
              r"not in the file: 'Revenue \(EUR\)' \(target\).*Fix data\.files\.columns"),
    file_case("missing-channel-column", frame(lambda f: f.rename(columns={"LinkedIn": "Linked In"})),
              r"'LinkedIn' \(channel 'linkedin'; did you mean 'Linked In'\?\).*Fix data\.files\.columns"),
    file_case("duplicate-column-name", frame(lambda f: f.rename(columns={"LinkedIn": "Facebook"})),
              r"duplicate column name\(s\) in the header: 'Facebook' \(2 times\); column names must be unique"),
    # -- dates
    file_case("unparsable-date", cell(5, "Week Start", "week 6"),
              r"column 'Week Start' \(date\): not an ISO-8601 date \(YYYY-MM-DD\) at line 7 \('week 6'\); "
              r"export every date as YYYY-MM-DD"),
    file_case("mixed-date-formats", frame(lambda f: f.assign(**{"Week Start": [
        d.strftime("%d/%m/%Y" if i >= 200 else "%Y-%m-%d") for i, d in enumerate(f["Week Start"])]})),
              r"not an ISO-8601 date \(YYYY-MM-DD\) at line 202 \('" + pd.Timestamp(W[200]).strftime("%d/%m/%Y")
              + r"'\).* and 3 more; export every date as YYYY-MM-DD"),
    file_case("daily-dates", with_dates(pd.date_range(W[0], periods=len(GOOD), freq="D")),
              rf"dates are not weekly: found steps of 1 day between {W[0]} and ",
              r"the file looks daily, set data\.files\.aggregate_daily: true to sum the days into weeks"),
    file_case("irregular-dates", cell(50, "Week Start", day(pd.Timestamp(W[50]) + pd.Timedelta(days=3))),
              rf"found steps of 10 days between {W[49]} and .*4 days between .* and {W[51]}; the file must have "
              r"one row per week, all dates on the same weekday"),
    file_case("duplicate-week", frame(lambda f: pd.concat([f.iloc[:10], f.iloc[[9]], f.iloc[10:]])),
              rf"duplicate dates: {W[9]} \(2 rows\); keep one row per week"),
    file_case("missing-weeks", frame(lambda f: f.drop(index=[30, 31])),
              rf"no row for week\(s\) {W[30]}, {W[31]}; the weeks must be contiguous, add the missing ones"),
    file_case("future-dates", with_dates(future_dates()),
              rf"column 'Week Start' \(date\): date in the future \(today is {day(TODAY)}\) at line 208 "
              rf"\('{day(TODAY + pd.Timedelta(days=7))}'\), line 209 .*export actuals only"),
    # -- cells
    file_case("nan-cell", cell(40, "Facebook", "NaN"),
              r"column 'Facebook' \(channel 'facebook'\): missing or non-finite value at line 42; every week needs"),
    file_case("inf-cell", cell(41, "LinkedIn", "inf"),
              r"column 'LinkedIn' \(channel 'linkedin'\): missing or non-finite value at line 43"),
    file_case("empty-cell", cell(42, "Revenue (EUR)", ""),
              r"column 'Revenue \(EUR\)' \(target\): missing or non-finite value at line 44"),
    file_case("text-in-number", cell(43, "Google Ads", "twelve"),
              r"column 'Google Ads' \(channel 'adwords'\): not a plain number at line 45 \('twelve'\); export plain "
              r"numbers with '\.' as the decimal point"),
    file_case("thousands-separators", cell(44, "Revenue (EUR)", "1,234,567.50"),
              r"not a plain number at line 46 \('1,234,567\.50'\); thousands separators, currency symbols and '%' "
              r"are not parsed"),
    file_case("currency-symbol", cell(45, "Facebook", "€1200"),
              r"column 'Facebook' \(channel 'facebook'\): not a plain number at line 47 \('€1200'\); thousands "
              r"separators, currency symbols"),
    file_case("absurd-value", cell(100, "Google Ads", "5e13"),
              r"column 'Google Ads' \(channel 'adwords'\): value beyond ±1e\+12 at line 102 \('5e\+13'\); check the "
              r"export's units and digits, or raise data\.files\.max_abs_value"),
    # -- values that parse but cannot be modelled
    file_case("negative-spend", cell(20, "Facebook", "-150"),
              rf"column 'Facebook' \(channel 'facebook'\): negative spend on {W[20]} \(-150\); spend cannot be "
              r"negative, correct those weeks"),
    file_case("all-zero-channel", frame(lambda f: f.assign(LinkedIn=0.0)),
              r"column 'LinkedIn' \(channel 'linkedin'\) has no spend in any week; remove it from the column mapping"),
    file_case("constant-target", frame(lambda f: f.assign(**{"Revenue (EUR)": 1000.0})),
              r"column 'Revenue \(EUR\)' \(target\): the target is constant \(1000 in every week\).*check that the "
              r"target is mapped"),
    file_case("non-positive-target", frame(lambda f: f.assign(**{"Revenue (EUR)": np.r_[0.0, -5.0, f["Revenue (EUR)"].to_numpy()[2:]]})),
              rf"column 'Revenue \(EUR\)' \(target\): zero or negative on {W[0]} \(0\), {W[1]} \(-5\); the target "
              r"must be positive in every week \(MAPE is undefined otherwise\)"),
    file_case("too-few-weeks", frame(lambda f: f.iloc[:30]),
              r"found 30 weeks, at least 52 are needed; export a longer history \(validation\.min_weeks"),
    # -- daily files with aggregate_daily: true that cannot be summed into whole weeks
    file_case("aggregate-daily-on-weekly-file", frame(), r"column 'Week Start' \(date; data\.files\.aggregate_daily "
              r"is true\): the dates are not daily \(typically 7 days apart\); set aggregate_daily: false",
              aggregate_daily=True),
    file_case("aggregate-daily-missing-day", frame(lambda f: daily(f).drop(index=[9])),
              r"aggregate_daily is true\): no row for day\(s\) 2019-01-16; every day of every week is needed",
              aggregate_daily=True),
    file_case("aggregate-daily-unfinished-week", frame(lambda f: daily(f).iloc[:-4]),
              r"the last week, from 2022-12-26, has 3 of 7 days; remove its days or wait until the week is over",
              aggregate_daily=True),
    # -- where the file is
    file_case("symlink-escapes-landing", symlink_outside,
              r"resolves to .*outside\.csv, which escapes the landing folder .*; copy the file into the folder"),
    # -- the scenario file
    config_case("landing-path-escapes", _files(file="../outside.csv"),
                r"data\.files\.file: file '\.\./outside\.csv' must be a plain file name inside landing_dir"),
    config_case("unknown-key", _files(agregate_daily=True),
                r"data\.files\.agregate_daily: unknown key \(check the spelling; see config/default\.yaml"),
    config_case("wrong-type", {"validation": {"min_weeks": "many"}},
                r"validation\.min_weeks: Input should be a valid integer"),
    config_case("threshold-out-of-range", {"validation": {"thresholds": {"rhat_max": 0.5, "mape_max_pct": 250}}},
                r"validation\.thresholds\.rhat_max: Input should be greater than or equal to 1",
                r"validation\.thresholds\.mape_max_pct: Input should be less than or equal to 100"),
    config_case("value-limit-out-of-range", _files(max_abs_value=0), r"data\.files\.max_abs_value: .*greater than 0"),
    config_case("file-limit-out-of-range", _files(max_file_mb=0), r"data\.files\.max_file_mb: .*greater than 0"),
    config_case("nested-too-deep", {}, r"line \d+, column \d+: the settings are nested more than 50 levels deep "
                r"\(a scenario needs fewer than 10\); check the indentation", edit_yaml=nested(500)),
    config_case("unsafe-canonical-name", _files(columns={"channels": {'tv"; DROP TABLE mmm_features; --': "LinkedIn"}}),
                r"channel name 'tv\"; DROP TABLE mmm_features; --' is not allowed: use lower-case letters, digits"),
    config_case("canonical-name-with-space", _files(columns={"channels": {"linked in": "LinkedIn"}}),
                r"channel name 'linked in' is not allowed"),
    config_case("reserved-canonical-name", _files(columns={"controls": {"y": "LinkedIn"}}),
                r"control name 'y' is reserved for the pipeline's own 'y' column"),
    config_case("one-source-column-two-names", _files(columns={"channels": {"social": "Facebook"}}),
                r"source column\(s\) \['Facebook'\] mapped more than once; each source column maps to one name"),
    config_case("one-name-channel-and-control", _files(columns={"controls": {"facebook": "Google Ads"}}),
                r"\['facebook'\] named both as channel and control"),
    config_case("two-source-columns-one-name", {}, r"is not valid YAML: duplicate key 'linkedin': give each key once",
                edit_yaml=with_duplicate_key),
]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A DuckDB file holding the good file's ``mmm_features`` table, written by the assets; and that table."""
    folder = tmp_path_factory.mktemp("seed")
    (folder / "landing").mkdir()
    GOOD.to_csv(folder / "landing" / "spend.csv", index=False)
    config = _scenario(folder, {})
    assert _ingest(config).success
    with duckdb.connect(str(load_config(config).paths.duckdb), read_only=True) as conn:
        return load_config(config).paths.duckdb, read_table(conn, TABLE)


@pytest.mark.parametrize("case", CATALOGUE, ids=[case.id for case in CATALOGUE])
def test_bad_input_is_rejected_clearly_and_nothing_is_written(case: Case, seeded, tmp_path: Path) -> None:
    database, table = seeded
    shutil.copy(database, tmp_path / "mmm.duckdb")
    (tmp_path / "landing").mkdir()
    case.write(tmp_path / "landing" / "spend.csv")
    config = _scenario(tmp_path, case.config)
    if case.edit_yaml:
        config.write_text(case.edit_yaml(config.read_text()))
    before = _snapshot(tmp_path)

    result = _ingest(config)

    assert not result.success
    found = errors(result.all_events)
    assert found, "the run failed without an error"
    cls_name, message = found[0]
    assert cls_name == case.error, message
    for expected in case.expected:
        assert re.search(expected, message, flags=re.DOTALL), f"{expected!r} not in:\n{message}"
    assert _snapshot(tmp_path) == before
    with duckdb.connect(str(tmp_path / "mmm.duckdb"), read_only=True) as conn:
        pd.testing.assert_frame_equal(read_table(conn, TABLE), table)


def test_the_catalogue_is_complete() -> None:
    assert len(CATALOGUE) >= 25 and len({case.id for case in CATALOGUE}) == len(CATALOGUE)


# --- inputs that look odd but are fine -----------------------------------------------------------------------


def _ingested(tmp_path: Path, data: pd.DataFrame, overrides: dict, write: Writer | None = None) -> pd.DataFrame:
    """Materialise the two assets on ``data`` as the landing file (written by ``write`` when given, else by
    pandas); the stored feature table."""
    (tmp_path / "landing").mkdir()
    (write or (lambda path: data.to_csv(path, index=False)))(tmp_path / "landing" / "spend.csv")
    config = _scenario(tmp_path, overrides)
    result = _ingest(config)
    assert result.success, errors(result.all_events)
    with duckdb.connect(str(load_config(config).paths.duckdb), read_only=True) as conn:
        return read_market(conn, TABLE, DEFAULT_MARKET, scenario=load_config(config).scenario)


def _canonical(data: pd.DataFrame) -> pd.DataFrame:
    """The good frame under the pipeline's names, as the feature table stores it."""
    return data.rename(columns={"Week Start": "date", "Revenue (EUR)": "y", "Google Ads": "adwords",
                                "Facebook": "facebook", "LinkedIn": "linkedin"})


def test_source_names_with_quotes_spaces_sql_and_unicode_are_only_mapped(tmp_path: Path) -> None:
    """Source column names never reach SQL: any header works once mapped; the table has the canonical names."""
    names = {
        "date": 'Week "Start"',
        "target": "Revenue (EUR); DROP TABLE mmm_features; --",
        "channels": {"adwords": "SELECT", "facebook": "  Ausgaben für Facebook 📣  ", "linkedin": "Linked'In"},
        "controls": {"price": 'Preis "netto" €'},
    }
    data = GOOD.assign(price=np.linspace(9.5, 10.5, len(GOOD)))
    renamed = data.set_axis([names["date"], names["target"], *names["channels"].values(),
                             *names["controls"].values()], axis=1)
    stored = _ingested(tmp_path, renamed, _files(columns=names))
    expected = _canonical(data)
    assert list(stored.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)


def test_aggregate_daily_sums_days_into_the_same_weeks(tmp_path: Path) -> None:
    data = GOOD.assign(price=np.arange(len(GOOD), dtype=float))
    days = daily(data)
    days["price"] = np.repeat(data["price"].to_numpy(), 7) + np.tile(np.arange(-3.0, 4.0), len(GOOD))  # mean = week
    stored = _ingested(tmp_path, days, _files(aggregate_daily=True, columns={**COLUMNS, "controls": {"price": "price"}}))
    pd.testing.assert_frame_equal(stored, _canonical(data), check_dtype=False)


def test_a_complete_last_line_without_a_line_break_is_accepted(tmp_path: Path) -> None:
    """RFC 4180 lets the last line go without a line break; only a last line that looks cut off is refused."""
    stored = _ingested(tmp_path, GOOD, {}, write=content(csv_bytes().removesuffix(b"\n")))
    pd.testing.assert_frame_equal(stored, _canonical(GOOD), check_dtype=False)


def test_the_value_limit_is_configurable(tmp_path: Path) -> None:
    data = GOOD.copy()
    data.loc[100, "Google Ads"] = 5e13
    stored = _ingested(tmp_path, data, _files(max_abs_value=1e14))
    assert stored.loc[100, "adwords"] == 5e13
