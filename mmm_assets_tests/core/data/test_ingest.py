"""Reading landing files: file resolution, CSV / Parquet parsing and the messages of every rejected input."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd
import pytest

from mmm_assets.core.config import ColumnMapping, FilesSource
from mmm_assets.core.data import ingest, landing_csv
from mmm_assets.core.data.features import SOURCE_COLUMNS_ATTR
from mmm_assets.core.data.ingest import LandingFile, read_landing_file, resolve_landing_file
from mmm_assets.core.errors import InputError

MAPPING = ColumnMapping(
    date="Week Start",
    target="Revenue (EUR)",
    channels={"google": "Google Ads Spend", "tv": "TV Spend"},
    controls={"price": "Avg Price"},
)
HEADER = ["Week Start", "Revenue (EUR)", "Google Ads Spend", "TV Spend", "Avg Price"]
ROWS = [
    ["2021-01-11", "1100", "0", "310.25", "9.99"],
    ["2021-01-04", "1000.5", "200", "300", "9.99"],
    ["2021-01-18", "1200", "210", "0", "10.49"],
]
CANONICAL = ["date", "y", "google", "tv", "price"]


def csv_text(rows: list[list[str]], header: list[str] = HEADER) -> str:
    """Comma-separated text, quoted where a cell needs it."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    return out.getvalue()


def write_csv(folder: Path, rows: list[list[str]] = ROWS, header: list[str] = HEADER, name: str = "spend.csv") -> Path:
    path = folder / name
    path.write_text(csv_text(rows, header), encoding="utf-8")
    return path


def with_cells(cells: dict[tuple[int, int], str]) -> list[list[str]]:
    """ROWS with the cells at (data row index, column index) replaced."""
    rows = [list(row) for row in ROWS]
    for (row, column), value in cells.items():
        rows[row][column] = value
    return rows


def read_error(path: Path) -> str:
    """The message of the InputError raised when reading ``path``; it always starts with the file's path."""
    with pytest.raises(InputError) as excinfo:
        read_landing_file(path, MAPPING)
    message = str(excinfo.value)
    assert message.startswith(str(path))
    return message


def resolve_error(files: FilesSource) -> str:
    with pytest.raises(InputError) as excinfo:
        resolve_landing_file(files)
    return str(excinfo.value)


def source(folder: Path, file: str | None = None) -> FilesSource:
    return FilesSource(landing_dir=folder, file=file, columns=MAPPING)


def touch(path: Path, mtime: int, text: str = "") -> Path:
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


# --- reading good files ---------------------------------------------------------------------------------------------


def test_csv_round_trip_maps_team_columns_to_canonical_names(tmp_path: Path) -> None:
    frame = read_landing_file(write_csv(tmp_path), MAPPING)
    assert list(frame.columns) == CANONICAL
    assert str(frame["date"].dtype) == "datetime64[ns]"
    assert all(frame[c].dtype == "float64" for c in CANONICAL[1:])
    assert list(frame["date"].dt.strftime("%Y-%m-%d")) == ["2021-01-11", "2021-01-04", "2021-01-18"]  # file order
    assert frame["y"].tolist() == [1100.0, 1000.5, 1200.0]
    assert frame["tv"].tolist() == [310.25, 300.0, 0.0]
    assert frame["price"].tolist() == [9.99, 9.99, 10.49]


def test_the_frame_carries_the_files_own_column_names(tmp_path: Path) -> None:
    frame = read_landing_file(write_csv(tmp_path), MAPPING)
    assert frame.attrs[SOURCE_COLUMNS_ATTR] == dict(zip(CANONICAL, HEADER))


def test_csv_keeps_only_the_wanted_columns_as_arrow_text_by_line(tmp_path: Path) -> None:
    """Memory: unmapped columns are never kept, and kept cells are Arrow strings (no Python object per cell)."""
    text = csv_text([[*row, "note"] for row in ROWS], [*HEADER, "Comment"])
    path = tmp_path / "spend.csv"
    path.write_text(text.replace("\n", "\n\n,,,,,\n", 1))  # a blank line and a line of commas after the header
    header, cells = landing_csv.read_csv_columns(path, {"TV Spend", "Week Start", "not in the file"})
    assert header == [*HEADER, "Comment"]
    assert list(cells.columns) == ["Week Start", "TV Spend"]
    assert all(isinstance(dtype, pd.ArrowDtype) for dtype in cells.dtypes)
    assert list(cells.index) == [4, 5, 6]
    assert cells["TV Spend"].tolist() == ["310.25", "300", "0"]


def test_csv_ignores_extra_columns_bom_and_blank_lines(tmp_path: Path) -> None:
    text = csv_text([[*row, "note"] for row in ROWS], [*HEADER, "Comment"])
    path = tmp_path / "spend.csv"
    path.write_bytes("\ufeff".encode() + text.replace("\n", "\n\n", 1).encode() + b"\n\n")
    frame = read_landing_file(path, MAPPING)
    assert list(frame.columns) == CANONICAL
    assert len(frame) == 3


@pytest.mark.parametrize(
    "dates",
    [
        ["2021-01-11T00:00:00+01:00", "2021-01-04T00:00:00+01:00", "2021-01-18T00:00:00+01:00"],
        ["2021-01-11T23:30:00-05:00", "2021-01-04T00:00:00+01:00", "2021-01-18T00:00:00Z"],
        ["2021-01-11 13:45:00", "2021-01-04 00:00:01", "2021-01-18"],
    ],
    ids=["timezone", "mixed-offsets", "time-of-day"],
)
def test_csv_dates_become_naive_midnight(tmp_path: Path, dates: list[str]) -> None:
    rows = [[date, *row[1:]] for date, row in zip(dates, ROWS)]
    frame = read_landing_file(write_csv(tmp_path, rows), MAPPING)
    assert list(frame["date"]) == [pd.Timestamp("2021-01-11"), pd.Timestamp("2021-01-04"), pd.Timestamp("2021-01-18")]
    assert str(frame["date"].dtype) == "datetime64[ns]"


@pytest.mark.parametrize(
    "dates",
    [
        pd.to_datetime(["2021-01-04", "2021-01-11"]),
        pd.to_datetime(["2021-01-04", "2021-01-11"]).tz_localize("Europe/Berlin"),
        pd.to_datetime(["2021-01-04", "2021-01-11"]).date,
        ["2021-01-04", "2021-01-11"],
    ],
    ids=["timestamp", "timestamp-tz", "date32", "iso-string"],
)
def test_parquet_round_trip(tmp_path: Path, dates: object) -> None:
    path = tmp_path / "spend.parquet"
    pd.DataFrame(
        {
            "Week Start": dates,
            "Revenue (EUR)": [1000.5, 1100.0],
            "Google Ads Spend": [200, 0],  # integers become floats
            "TV Spend": ["300", "310.25"],  # numbers stored as text are parsed like CSV cells
            "Avg Price": [9.99, 10.49],
        }
    ).to_parquet(path)
    frame = read_landing_file(path, MAPPING)
    assert list(frame.columns) == CANONICAL
    assert list(frame["date"]) == [pd.Timestamp("2021-01-04"), pd.Timestamp("2021-01-11")]
    assert str(frame["date"].dtype) == "datetime64[ns]"
    assert frame["google"].tolist() == [200.0, 0.0]
    assert frame["tv"].tolist() == [300.0, 310.25]


# --- resolving the landing file -------------------------------------------------------------------------------------


def test_resolve_named_file(tmp_path: Path) -> None:
    touch(tmp_path / "newer.csv", 2_000)
    named = touch(tmp_path / "older.csv", 1_000)
    assert resolve_landing_file(source(tmp_path, "older.csv")) == named


def test_resolve_picks_newest_csv_or_parquet(tmp_path: Path) -> None:
    touch(tmp_path / "a.csv", 1_000)
    newest = touch(tmp_path / "b.parquet", 3_000)
    touch(tmp_path / "c.csv", 2_000)
    touch(tmp_path / "d.txt", 9_000)
    (tmp_path / "e.csv").mkdir()
    assert resolve_landing_file(source(tmp_path)) == newest


def test_resolve_breaks_mtime_ties_by_name(tmp_path: Path) -> None:
    touch(tmp_path / "2021-01.csv", 1_000)
    last = touch(tmp_path / "2021-02.csv", 1_000)
    assert resolve_landing_file(source(tmp_path)) == last


def test_resolve_missing_landing_folder(tmp_path: Path) -> None:
    message = resolve_error(source(tmp_path / "landing"))
    assert str(tmp_path / "landing") in message and "does not exist" in message and "put the weekly" in message


def test_resolve_folder_without_csv_or_parquet(tmp_path: Path) -> None:
    touch(tmp_path / "notes.txt", 1_000)
    message = resolve_error(source(tmp_path))
    assert str(tmp_path) in message and "no .csv or .parquet file" in message


def test_resolve_named_file_missing(tmp_path: Path) -> None:
    touch(tmp_path / "other.csv", 1_000)
    message = resolve_error(source(tmp_path, "spend.csv"))
    assert str(tmp_path / "spend.csv") in message and "not found" in message and "other.csv" in message


@pytest.mark.parametrize("name", ["spend.xlsx", "spend.txt", "spend"])
def test_resolve_unsupported_extension(tmp_path: Path, name: str) -> None:
    touch(tmp_path / name, 1_000)
    message = resolve_error(source(tmp_path, name))
    assert name in message and "unsupported file type" in message and ".csv or .parquet" in message


@pytest.mark.parametrize("file", ["spend.csv", None], ids=["named", "newest"])
def test_resolve_rejects_symlink_escaping_landing_folder(tmp_path: Path, file: str | None) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    outside = write_csv(tmp_path, name="outside.csv")
    (landing / "spend.csv").symlink_to(outside)
    message = resolve_error(source(landing, file))
    assert "spend.csv" in message and "escapes the landing folder" in message and str(outside) in message


# --- rejected files -------------------------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "spend.csv"
    path.write_bytes(b"")
    assert "empty (0 bytes)" in read_error(path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_header_only(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"spend{suffix}"
    if suffix == ".csv":
        write_csv(tmp_path, rows=[])
    else:
        pd.DataFrame({column: pd.Series(dtype="float64") for column in HEADER}).to_parquet(path)
    assert "no data rows" in read_error(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"PAR1\x00\x15\x04binary", "looks like a Parquet file"),
        (b"PK\x03\x04\x14\x00", "Excel workbook"),
        (b"Week Start,Revenue\x00\x01\x02", "binary content"),
        ("Week Start,Umsatz (€)\n2021-01-04,1\n".encode("cp1252"), "not a UTF-8 text file (byte 0x80 on line 1)"),
    ],
    ids=["parquet-renamed", "xlsx-renamed", "nul-bytes", "cp1252"],
)
def test_binary_or_non_utf8_csv(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "spend.csv"
    path.write_bytes(content)
    message = read_error(path)
    assert "not a" in message and expected in message


@pytest.mark.parametrize(("sep", "name"), [(";", "semicolon"), ("\t", "tab")])
def test_wrong_delimiter(tmp_path: Path, sep: str, name: str) -> None:
    path = tmp_path / "spend.csv"
    path.write_text("\n".join(sep.join(row) for row in [HEADER, *ROWS]) + "\n")
    message = read_error(path)
    assert f"looks {name}-separated" in message and "comma-separated file is expected" in message


def test_non_utf8_byte_is_found_across_scan_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The byte scan reads blocks: a character split between two blocks is fine, the bad byte's line is exact."""
    monkeypatch.setattr(landing_csv, "SCAN_BLOCK_BYTES", 5)
    path = tmp_path / "spend.csv"
    path.write_bytes(csv_text(with_cells({(0, 3): "é€"})).encode() + "2021-01-25,1,2,3,4\n".encode() + b"x\xff\n")
    assert "not a UTF-8 text file (byte 0xff on line 6)" in read_error(path)


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "spend.parquet"
    path.write_bytes(b"PAR1 this is not really parquet PAR1")
    assert "not a readable Parquet file" in read_error(path)


def test_unquoted_comma_in_csv(tmp_path: Path) -> None:
    path = tmp_path / "spend.csv"
    path.write_text(csv_text(ROWS) + "2021-01-25,1,234.5,2,3,4\n")
    message = read_error(path)
    assert "cannot be read as CSV" in message and "line 5" in message and "must be quoted" in message


def test_lines_with_too_few_or_too_many_fields_are_named(tmp_path: Path) -> None:
    text = csv_text(ROWS) + "2021-01-25,1,2\n" + "2021-02-01,1,2,3,4,5,6\n" + "2021-02-08,1,2,3\n"
    path = tmp_path / "spend.csv"
    path.write_text(text)
    message = read_error(path)
    assert "fewer fields than the header's 5 at line 5 (3 fields), line 7 (4 fields)" in message
    assert "more fields than the header's 5 at line 6 (7 fields)" in message


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""], ids=["lf", "crlf", "no-final-line-break"])
def test_a_complete_last_line_is_accepted_with_or_without_a_line_break(tmp_path: Path, ending: str) -> None:
    """ROWS' last line is its shortest (a 0 in it), but its last value is not: not taken for a cut."""
    path = tmp_path / "spend.csv"
    path.write_bytes("\r\n".join(",".join(row) for row in [HEADER, *ROWS]).encode() + ending.encode())
    assert read_landing_file(path, MAPPING)["price"].tolist() == [9.99, 9.99, 10.49]


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        ("2021-01-25,1300,2", "its last line (line 5) has 3 of the header's 5 fields and no line break at the end"),
        ("2021-01-25,1300,220,5,1", "its last line (line 5) has no line break at the end, and both the line and "
         "its last value are shorter than on every other line, as if the export stopped inside that value"),
    ],
    ids=["inside-a-line", "inside-the-last-value"],
)
def test_a_file_cut_off_at_the_end_is_refused(tmp_path: Path, last: str, expected: str) -> None:
    path = tmp_path / "spend.csv"
    path.write_text(csv_text(ROWS) + last)
    message = read_error(path)
    assert "the file seems cut off: " + expected in message and "export the file again" in message


def test_the_same_short_last_line_with_a_line_break_is_only_checked_as_data(tmp_path: Path) -> None:
    """A line break at the end says the export finished: a short last value is then data, not a cut."""
    path = tmp_path / "spend.csv"
    path.write_text(csv_text(ROWS) + "2021-01-25,1300,220,5,1\n")
    assert read_landing_file(path, MAPPING)["price"].tolist() == [9.99, 9.99, 10.49, 1.0]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_file_over_the_size_limit_is_refused_before_it_is_read(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"spend{suffix}"
    path.write_bytes(b"x" * 3000)  # not even a valid file: the size is checked first
    monkeypatch.setattr(ingest, "read_csv_columns", lambda *_: pytest.fail("read despite the size limit"))
    monkeypatch.setattr(ingest, "_read_parquet", lambda *_: pytest.fail("read despite the size limit"))
    limited = LandingFile(path, source(tmp_path, path.name).model_copy(update={"max_file_mb": 0.001}))
    message = read_error(limited)
    assert "the file is 0.0029 MB, over the 0.001 MB limit (data.files.max_file_mb)" in message
    assert "raise data.files.max_file_mb if a file this large is expected" in message


def test_missing_mapped_columns(tmp_path: Path) -> None:
    header = ["Week", "Revenue (EUR)", "Google Ads", "TV Spend", "Price"]
    message = read_error(write_csv(tmp_path, header=header))
    assert "'Week Start' (date" in message
    assert "'Google Ads Spend' (channel 'google'; did you mean 'Google Ads'?)" in message
    assert "'Avg Price' (control 'price'" in message
    assert "'TV Spend'" not in message.split("the file has columns")[0]
    assert "the file has columns 'Week', 'Revenue (EUR)', 'Google Ads', 'TV Spend', 'Price'" in message


def test_duplicate_column_names(tmp_path: Path) -> None:
    header = [*HEADER[:4], "TV Spend"]
    message = read_error(write_csv(tmp_path, header=header))
    assert "duplicate column name(s) in the header: 'TV Spend' (2 times)" in message


def test_mixed_date_formats_name_the_lines(tmp_path: Path) -> None:
    rows = with_cells({(1, 0): "01/11/2021", (2, 0): "18.01.2021"})
    message = read_error(write_csv(tmp_path, rows))
    assert "column 'Week Start' (date): not an ISO-8601 date (YYYY-MM-DD)" in message
    assert "line 3 ('01/11/2021'), line 4 ('18.01.2021')" in message
    assert "line 2" not in message


def test_missing_date(tmp_path: Path) -> None:
    message = read_error(write_csv(tmp_path, with_cells({(2, 0): ""})))
    assert "column 'Week Start' (date): missing date at line 4" in message


@pytest.mark.parametrize("value", ["", "NaN", "nan", "inf", "-inf", "Infinity", "1e999"])
def test_missing_or_non_finite_number(tmp_path: Path, value: str) -> None:
    message = read_error(write_csv(tmp_path, with_cells({(1, 3): value})))
    assert "column 'TV Spend' (channel 'tv'): missing or non-finite value at line 3" in message


@pytest.mark.parametrize(
    ("value", "separators"),
    [("abc", False), ("$1,200", True), ("1,234.5", True), ("12%", True), ("1.234,5", True), ("0x10", False)],
)
def test_not_a_plain_number(tmp_path: Path, value: str, separators: bool) -> None:
    message = read_error(write_csv(tmp_path, with_cells({(0, 1): value})))
    assert f"column 'Revenue (EUR)' (target): not a plain number at line 2 ({value!r})" in message
    assert "plain numbers with '.' as the decimal point" in message
    assert ("thousands separators, currency symbols" in message) is separators


def test_parquet_cells_are_checked_like_csv(tmp_path: Path) -> None:
    path = tmp_path / "spend.parquet"
    pd.DataFrame(
        {
            "Week Start": ["2021-01-04", "2021-01-11", "11/01/2021"],
            "Revenue (EUR)": [1.0, float("nan"), float("inf")],
            "Google Ads Spend": ["1", "2", "1,000"],
            "TV Spend": [1, 2, 3],
            "Avg Price": ["9.5", None, "9.5"],
        }
    ).to_parquet(path)
    message = read_error(path)
    assert "column 'Week Start' (date): not an ISO-8601 date (YYYY-MM-DD) at row 3 ('11/01/2021')" in message
    assert "column 'Revenue (EUR)' (target): missing or non-finite value at row 2, row 3" in message
    assert "column 'Google Ads Spend' (channel 'google'): not a plain number at row 3 ('1,000')" in message
    assert "column 'Avg Price' (control 'price'): missing or non-finite value at row 2" in message


def test_long_lists_are_cut_with_and_more(tmp_path: Path) -> None:
    rows = [[f"2021-{month:02d}-01", "1", "x", "1", "1"] for month in range(1, 9)]
    message = read_error(write_csv(tmp_path, rows))
    assert "line 6 ('x') and 3 more" in message
    assert "line 7" not in message


def test_all_problems_in_one_error(tmp_path: Path) -> None:
    header = [*HEADER[:4], "Price"]
    rows = with_cells({(0, 0): "01/11/2021", (1, 1): "", (2, 2): "$5"})
    message = read_error(write_csv(tmp_path, rows, header))
    assert "4 problem(s) found" in message
    assert "'Avg Price' (control 'price'" in message
    assert "line 2 ('01/11/2021')" in message
    assert "(target): missing or non-finite value at line 3" in message
    assert "(channel 'google'): not a plain number at line 4 ('$5')" in message
