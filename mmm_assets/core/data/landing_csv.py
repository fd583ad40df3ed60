"""Reading a landing CSV with bounded memory: only the columns asked for, each row keyed by its line number.

The file is never held whole. A byte scan first rejects what is not UTF-8 text (an Excel or Parquet file under a
.csv name, binary content, another encoding), naming the line of the first bad byte. Arrow's CSV reader then keeps
only the columns asked for, as Arrow strings (the text's bytes plus 4 bytes a cell), instead of a grid of Python
strings of every column, which cost 11-13 times the file (benchmarks/ingest_memory.py).

Lines are 1-based and the header is line 1. Blank lines, and lines without a value in any column asked for, are
skipped; every line must have as many fields as the header (a blank line aside). RFC 4180 lets the last line go without a line break, and a complete one is accepted; but a file that
stops without one may have been cut off, so its last line is rejected when it has too few fields, or when both it
and its last value are shorter than every other line and last value (the export seemingly stopped inside that
value). Exporters that end the file with a line break (Excel, pandas, R) never meet the second rule.
"""

from __future__ import annotations

import codecs
import csv
import math
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mmm_assets.core.errors import MAX_EXAMPLES, InputError, raise_if_problems

#: Bytes the byte scan reads at a time: big enough to be fast, small next to the file size limit.
SCAN_BLOCK_BYTES = 16 * 2**20
#: Bytes Arrow's reader parses at a time. A line must fit in one block (Arrow's default, 1 MiB, refuses a line of
#: ~100,000 short fields); each block holds a few at once: on the wide file of benchmarks/ingest_memory.py 4 MiB
#: peaked ~20 MiB above 1 MiB, 16 MiB ~90 MiB above.
ARROW_BLOCK_BYTES = 4 * 2**20
NO_ROWS = "has a header but no data rows; export the weekly data again"
_MAGIC = {b"PAR1": "a Parquet file (give it the .parquet extension)", b"PK\x03\x04": "an Excel workbook or zip archive"}
_DELIMITERS = {";": "semicolon", "\t": "tab"}
_LINE_BREAKS = (b"\n", b"\r")
_HEADER_LINE = 1
_COMMA_HINT = "values that contain commas (e.g. thousands separators) must be quoted or written without them"


def read_csv_columns(path: Path, wanted: Collection[str]) -> tuple[list[str], pd.DataFrame]:
    """The header of CSV file ``path`` and the cells of the ``wanted`` columns that occur once in it.

    The cells are Arrow-backed strings indexed by line number; blank lines and rows without a value in any wanted
    column are left out. Raises :class:`InputError` for a file that is not UTF-8 text, has no header or no data
    rows, looks semicolon- or tab-separated, has lines whose field count differs from the header's or seems cut off.
    """
    _scan(path)
    header = _header(path)
    _check_delimiter(path, header)
    counts = Counter(header)
    keep = [i for i, name in enumerate(header) if counts[name] == 1 and name in wanted]
    table, misfits = _parse(path, len(header), keep or [0])  # with no wanted column, one still counts the rows
    _check_lines(path, table.num_rows, misfits)
    return header, _cells(path, table, {f"f{i}": header[i] for i in keep})


def _check_lines(path: Path, rows: int, misfits: _Misfits) -> None:
    """Every line has the header's number of fields, and a file without a final line break does not seem cut off."""
    cut = not _ends_with_line_break(path)
    raise_if_problems(str(path), misfits.problems(_HEADER_LINE + rows + misfits.count if cut else None))
    if cut and (short := _cut_inside_last_value(path)) is not None:
        raise InputError(
            f"{path}: the file seems cut off: its last line (line {short}) has no line break at the end, and both "
            "the line and its last value are shorter than on every other line, as if the export stopped inside "
            "that value; export the file again (if that line is complete, end the file with a line break)"
        )


def _cells(path: Path, table: pa.Table, names: dict[str, str]) -> pd.DataFrame:
    """Columns ``names`` (Arrow name -> the header's) of the rows with a value in any parsed column, indexed by line
    (the first row is line 2); Arrow-backed strings, not copied unless blank rows are dropped."""
    lines = np.arange(_HEADER_LINE + 1, _HEADER_LINE + 1 + table.num_rows)
    filled = _any_value(table)
    if not filled.any():
        raise InputError(f"{path}: {NO_ROWS}")
    cells = table.select(list(names))
    if not filled.all():  # filtering copies the cells: only when there are blank rows to drop
        cells, lines = cells.filter(pa.array(filled)), lines[filled]
    frame = cells.rename_columns(list(names.values())).to_pandas(types_mapper=pd.ArrowDtype)
    frame.index = lines
    return frame


def _scan(path: Path) -> None:
    """Reject a file that is not UTF-8 text, reading it block by block; the message names the first bad line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines_before = 0
    with path.open("rb") as stream:
        block = stream.read(SCAN_BLOCK_BYTES)
        for magic, what in _MAGIC.items():
            if block.startswith(magic):
                raise InputError(
                    f"{path}: not a CSV file, it looks like {what}; export the data as comma-separated text"
                )
        while block:
            if b"\x00" in block:
                raise InputError(
                    f"{path}: not a CSV file (binary content); export the data as comma-separated UTF-8 text"
                )
            pending = decoder.getstate()[0]  # the start of a character split across two blocks
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                at = max(err.start - len(pending), 0)
                _not_utf8(path, (pending + block)[err.start], lines_before + block.count(b"\n", 0, at) + 1)
            lines_before += block.count(b"\n")
            block = stream.read(SCAN_BLOCK_BYTES)
        pending = decoder.getstate()[0]
        if pending:  # the file ends inside a character
            _not_utf8(path, pending[0], lines_before + 1)


def _not_utf8(path: Path, byte: int, line: int) -> NoReturn:
    raise InputError(f"{path}: not a UTF-8 text file (byte 0x{byte:02x} on line {line}); export it as CSV UTF-8")


def _header(path: Path) -> list[str]:
    """The column names on line 1 (a byte-order mark dropped). A blank line 1 is refused: as a file of blank lines
    when every line is blank, else as a missing header."""
    with path.open(encoding="utf-8-sig", newline="") as stream:
        records = csv.reader(stream, strict=True)
        try:
            header = next(records, [])
            if any(name.strip() for name in header):
                return header
            if not any(any(value.strip() for value in record) for record in records):
                raise InputError(f"{path}: the file holds only blank lines; export the weekly data again")
        except csv.Error as err:
            raise InputError(
                f"{path}: cannot be read as CSV (line {records.line_num}: {err}); a quoted value must end with a quote"
            ) from None
    raise InputError(f"{path}: line 1 holds no column names; the first line must be the header")


def _check_delimiter(path: Path, header: list[str]) -> None:
    if len(header) != 1:
        return
    found = [(header[0].count(sep), name) for sep, name in _DELIMITERS.items() if sep in header[0]]
    if found:
        raise InputError(
            f"{path}: the header {header[0]!r} is a single column that looks {max(found)[1]}-separated; "
            "a comma-separated file is expected (export as CSV with ',' as the separator)"
        )


@dataclass
class _Misfits:
    """Lines whose field count differs from the header's: how many, and the first few of each kind (the count is
    kept, the lines are not, so a file of millions of bad lines costs no memory)."""

    width: int
    count: int = 0
    fewer: list[tuple[int, int]] = field(default_factory=list)
    more: list[tuple[int, int]] = field(default_factory=list)
    n_fewer: int = 0
    last: tuple[int, int] | None = None

    def __call__(self, row: pacsv.InvalidRow) -> str:
        """Arrow's handler of a row with the wrong number of fields: note it and leave it out of the table."""
        found = (row.number, row.actual_columns)
        self.count += 1
        self.n_fewer += found[1] < self.width
        kind = self.fewer if found[1] < self.width else self.more
        if len(kind) < MAX_EXAMPLES:
            kind.append(found)
        self.last = found
        return "skip"

    def problems(self, cut_line: int | None) -> list[str]:
        """The messages; ``cut_line`` is the last line of a file without a final line break (None when it has one):
        a short last line there is reported as a file cut off."""
        fewer, n_fewer = self.fewer, self.n_fewer
        problems = []
        if cut_line is not None and self.last is not None and self.last[0] == cut_line and self.last[1] < self.width:
            fewer, n_fewer = [line for line in fewer if line != self.last], n_fewer - 1
            problems.append(
                f"the file seems cut off: its last line (line {cut_line}) has {self.last[1]} of the header's "
                f"{self.width} fields and no line break at the end; export the file again"
            )
        if n_fewer:
            problems.append(
                f"cannot be read as CSV: fewer fields than the header's {self.width} at {_lines(fewer, n_fewer)}; "
                "every line needs a field (empty or not) for every column: export the file again"
            )
        if self.count - self.n_fewer:
            problems.append(
                f"cannot be read as CSV: more fields than the header's {self.width} at "
                f"{_lines(self.more, self.count - self.n_fewer)}; {_COMMA_HINT}"
            )
        return problems


def _lines(shown: list[tuple[int, int]], total: int) -> str:
    """ "line 7 (3 fields), line 9 (1 field) and K more"."""
    text = ", ".join(f"line {line} ({n} field{'' if n == 1 else 's'})" for line, n in shown)
    return f"{text} and {total - len(shown)} more" if total > len(shown) else text


def _parse(path: Path, width: int, columns: list[int]) -> tuple[pa.Table, _Misfits]:
    """Columns ``columns`` (0-based) of every record after the header as Arrow strings, named f<i>; the records
    whose field count differs from the header's are left out and noted."""
    names = [f"f{i}" for i in range(width)]  # by position: the header's own names may repeat
    kept = [names[i] for i in columns]
    misfits = _Misfits(width)
    # The header is read as a row and sliced off (skipping it fails on a file of one line); serial reading gives
    # each bad row its line number.
    read = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=ARROW_BLOCK_BYTES)
    parse = pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=misfits)
    convert = pacsv.ConvertOptions(
        include_columns=kept, column_types=dict.fromkeys(kept, pa.string()),
        strings_can_be_null=False, quoted_strings_can_be_null=False,
    )
    try:
        table = pacsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as err:
        raise InputError(f"{path}: cannot be read as CSV ({err}); {_COMMA_HINT}") from None
    return table.slice(1), misfits


def _any_value(table: pa.Table) -> np.ndarray:
    """Per row: is any of its cells non-empty (a blank line, or a line of commas only, has none)."""
    filled = pa.array(np.zeros(table.num_rows, dtype=bool))
    for column in table.columns:
        filled = pc.or_(filled, pc.not_equal(column, ""))
    return np.asarray(filled, dtype=bool)


def _ends_with_line_break(path: Path) -> bool:
    with path.open("rb") as stream:
        stream.seek(-1, 2)
        return stream.read(1) in _LINE_BREAKS


def _cut_inside_last_value(path: Path) -> int | None:
    """The last line's number when it is shorter than every other non-blank line after the header and its last
    value shorter than theirs too, as when an export stops inside that value; None otherwise.

    Both must hold: a short line alone is often a week with small numbers, a short last value alone a number
    written with fewer decimals.
    """
    shortest_line = shortest_value = math.inf
    previous, number = b"", 0
    with path.open("rb") as stream:
        for number, line in enumerate(stream, start=1):
            if number > _HEADER_LINE + 1 and previous.strip():
                text = previous.rstrip(b"\r\n")
                shortest_line = min(shortest_line, len(text))
                shortest_value = min(shortest_value, len(_last_field(text)))
            previous = line
    cut = len(previous) < shortest_line < math.inf and len(_last_field(previous)) < shortest_value
    return number if cut else None


def _last_field(line: bytes) -> bytes:
    """The text after a line's last comma (a quoted value holding commas is cut short: this only compares lengths)."""
    return line.rsplit(b",", 1)[-1]
