"""DuckDB table writes that are all-or-nothing, and the guards around the stores.

Identifiers are validated and quoted before they reach SQL; values only ever travel as a registered DataFrame or
bound parameters. A replaced table is swapped inside one transaction, so a failure (or a killed process) leaves the
previous table exactly as it was. Opening the database waits a bounded time for a lock held by another process, and
a run checks that the disks of its outputs have room before it starts writing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import duckdb
import pandas as pd

from mmm_assets.core.config import MARKET_COLUMN, SCENARIO_COLUMN

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: DuckDB type names as DESCRIBE reports them: a word, optionally with a precision (DECIMAL(18,3)) or a list suffix.
_TYPE = re.compile(r"^[A-Z][A-Z0-9_ ]*(\(\d+(,\s*\d+)?\))?(\[\])?$")
#: DuckDB's message when another process holds the file: 'Conflicting lock is held in <program> (PID <n>)'.
_LOCKED = "Could not set lock on file"
_HOLDER = re.compile(r"lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
#: Seconds between two attempts to open a locked database.
LOCK_POLL_S = 0.25
#: Bytes in the megabytes (MiB) that free-space messages and `operations.min_free_disk_mb` count.
MB = 2**20
#: Below this many MB a free-space figure is shown with two significant digits (0.14 MB), above it as a whole number.
WHOLE_MB_FROM = 10
#: How messages name the folder of the model files (as the scenario resource's free-space check names it).
MODELS_ROLE = "models directory (paths.models_dir)"
#: What a write gets when there is no room for it: the disk is full, the user's quota is used up, or the file would
#: pass the size limit of the process (`ulimit -f`) or of the file system. Each is a disk-space failure, not a bug.
NO_ROOM = {
    errno.ENOSPC: "no space left on the disk",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file would pass the size limit of the process (ulimit -f) or of the file system",
}


class DatabaseLockedError(RuntimeError):
    """The DuckDB file stayed locked by another process for longer than the configured wait."""


class DiskSpaceError(RuntimeError):
    """A disk the run writes to has less free space than the configured minimum, or ran out of room during a write.

    Waiting does not cure it (a retry soon after fails the same way): someone has to free space or move the path.
    """


def connect(path: Path, lock_timeout_s: float) -> duckdb.DuckDBPyConnection:
    """A read-write connection to ``path``; while another process holds its lock, retry for ``lock_timeout_s``."""
    deadline = time.monotonic() + lock_timeout_s
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as err:
            if _LOCKED not in str(err):
                raise
            if time.monotonic() >= deadline:
                found = _HOLDER.search(str(err))
                holder = f"pid {found['pid']}, {found['program']}" if found else "process unknown"
                raise DatabaseLockedError(
                    f"DuckDB file {path} is locked by another process ({holder}) and was not released within "
                    f"{lock_timeout_s:g} s; let that process finish or stop it, then run again "
                    "(operations.duckdb_lock_timeout_s sets the wait)"
                ) from None
        time.sleep(LOCK_POLL_S)


@contextlib.contextmanager
def exclusive(path: Path, on_wait: Callable[[str], None], wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (our pid written in it) for the block, which gets True; while another
    process holds it, call ``on_wait`` with the holder's pid once and wait (or, without ``wait``, run the block at
    once with False, not holding it). The lock goes with its process: a killed holder never blocks the next one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait(os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown")
            if not wait:
                yield False
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield True
        finally:
            os.ftruncate(fd, 0)  # no stale pid for the next one to report
    finally:
        os.close(fd)


def free_mb(folder: Path) -> float:
    """Free space, in MB, of the disk that holds ``folder`` (or its nearest existing parent, before it is created)."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    return shutil.disk_usage(existing).free / MB


def shown_mb(value: float) -> str:
    """A size in MB as messages show it: whole MB from 10 MB up, two significant digits below (a small disk's
    0.14 MB must not read as 0)."""
    return f"{value:.0f}" if value >= WHOLE_MB_FROM else f"{value:.2g}"


def ensure_free_space(folders: Mapping[str, Path], min_free_mb: float, new_file_bytes: int = 0) -> None:
    """Raise :class:`DiskSpaceError` naming the first folder (by its role) whose disk has under ``min_free_mb``.

    With ``new_file_bytes`` (a file about to be written there), the disk must hold the file and still keep
    ``min_free_mb`` free afterwards: checked before the write, so a file that cannot fit is never started.
    """
    for role, folder in folders.items():
        free = free_mb(folder)
        file_mb = new_file_bytes / MB
        if free >= min_free_mb + file_mb:
            continue
        if new_file_bytes:
            needed = (
                f"under the {shown_mb(min_free_mb + file_mb)} MB needed to write a {shown_mb(file_mb)} MB file and "
                f"keep {min_free_mb:g} MB free (operations.min_free_disk_mb)"
            )
        else:
            needed = f"under the {min_free_mb:g} MB a run needs (operations.min_free_disk_mb)"
        raise DiskSpaceError(
            f"the disk of the {role} {folder} has {shown_mb(free)} MB free, {needed}; free some space or point "
            "the path at a bigger disk. Nothing was written: the previous outputs are as they were"
        )


@contextlib.contextmanager
def no_room_is_disk_space_error(role: str, folder: Path, min_free_mb: float) -> Iterator[None]:
    """Within the block, a write into ``folder`` that fails for lack of room (an ``OSError`` whose errno is in
    :data:`NO_ROOM`) raises :class:`DiskSpaceError` instead, naming the folder, its free space now and the setting;
    other errors pass unchanged. The block is expected to have removed its partial file already."""
    try:
        yield
    except OSError as err:
        reason = NO_ROOM.get(err.errno)
        if reason is None:
            raise
        raise DiskSpaceError(
            f"the disk of the {role} {folder} had no room for a file being written ({reason}: [Errno {err.errno}] "
            f"{err.strerror}); it has {shown_mb(free_mb(folder))} MB free now. Free some space, point the path at "
            f"a bigger disk, or keep more free beside the largest file (operations.min_free_disk_mb, now "
            f"{min_free_mb:g} MB). Nothing was written under a final name: the partial file was removed and the "
            "previous outputs are as they were"
        ) from None  # the message carries the errno; the OSError's frames add nothing for a person


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier (embedded quotes doubled)."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _table(name: str) -> str:
    if not _TABLE.match(name):
        raise ValueError(f"table name {name!r} must be letters, digits and '_' (at most 63 characters)")
    return quote_ident(name)


def append_rows(
    conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, *, scenario: str | None = None,
    market: str | None = None,
) -> None:
    """Append ``frame`` to ``table`` atomically: created on first use, new columns added (NULL in older rows).

    With ``scenario`` (and ``market``) the rows are stamped with them in leading columns; a table from before the
    scenario column gets it, its older rows counted as ``scenario``'s (see :func:`replace_market`).
    """
    _write(conn, table, _keyed(frame, scenario, market), scenario, replace_market=None)


def _keyed(frame: pd.DataFrame, scenario: str | None, market: str | None) -> pd.DataFrame:
    """``frame`` with ``scenario`` and ``market`` as its first columns (those given; a column of that name is replaced)."""
    keys = {name: value for name, value in ((SCENARIO_COLUMN, scenario), (MARKET_COLUMN, market)) if value is not None}
    staged = frame.drop(columns=list(keys), errors="ignore")
    for position, (name, value) in enumerate(keys.items()):
        staged.insert(position, name, value)
    return staged


def _columns(conn: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    """Column name -> DuckDB type of a table or registered view."""
    return {name: kind for name, kind, *_ in conn.execute(f"DESCRIBE SELECT * FROM {_table(relation)}").fetchall()}


def _sql_type(kind: str) -> str:
    """A DuckDB type name as DESCRIBE reports it (e.g. DOUBLE, TIMESTAMP_NS, DECIMAL(18,3)), checked to be one."""
    if not _TYPE.match(kind):
        raise ValueError(f"unexpected column type {kind!r}")
    return kind


def replace_market(
    conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, market: str, *, scenario: str
) -> None:
    """Replace one scenario's market's rows of ``table`` with ``frame`` atomically; other markets' and other
    scenarios' rows stay as they are.

    The table keeps ``scenario`` and ``market`` columns: scenarios are namespaces, so two scenarios sharing a DuckDB
    file and a market name keep their own rows. Columns only this market has (e.g. a channel other markets do not
    run) are added to the table (NULL for the others). A table from before markets existed (no ``market`` column) is
    replaced as a whole; one from before scenarios (a ``market`` column but no ``scenario``) gets the column, its
    rows counted as the writer's scenario (one scenario per file was the only safe use then), in the same
    transaction; a read adopts them the same way (:func:`adopt_rows`).
    """
    _write(conn, table, _keyed(frame, scenario, market), scenario, replace_market=market)


def _text_typed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its object columns that hold no value as text: DuckDB types such a column (every column of an
    empty frame, e.g. a scenario without goals) as NULL, which no later row's text can be inserted into."""
    empty = [c for c in frame.columns if frame[c].dtype == object and frame[c].isna().all()]
    return frame.astype(dict.fromkeys(empty, "string")) if empty else frame


def _write(
    conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, scenario: str | None, replace_market: str | None
) -> None:
    """Insert ``frame`` into ``table`` in one transaction, first deleting the rows of (``scenario``,
    ``replace_market``) when a market is given."""
    view = f"_staged_{uuid.uuid4().hex}"
    conn.register(view, _text_typed(frame))
    try:
        conn.execute("BEGIN TRANSACTION")
        try:
            existing = _columns(conn, table) if table_exists(conn, table) else {}
            if not existing or (replace_market is not None and MARKET_COLUMN not in existing):
                conn.execute(f"CREATE OR REPLACE TABLE {_table(table)} AS SELECT * FROM {_table(view)}")
            else:
                if scenario is not None:
                    _adopt(conn, table, scenario, existing)
                    existing = _columns(conn, table)
                for name, kind in _columns(conn, view).items():
                    if name not in existing:
                        conn.execute(f"ALTER TABLE {_table(table)} ADD COLUMN {quote_ident(name)} {_sql_type(kind)}")
                if replace_market is not None:
                    conn.execute(
                        f"DELETE FROM {_table(table)} WHERE {quote_ident(SCENARIO_COLUMN)} = ? "
                        f"AND {quote_ident(MARKET_COLUMN)} = ?",
                        [scenario, replace_market],
                    )
                conn.execute(f"INSERT INTO {_table(table)} BY NAME SELECT * FROM {_table(view)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.unregister(view)


def adopt_rows(conn: duckdb.DuckDBPyConnection, table: str, scenario: str) -> None:
    """Give a table from before scenarios (no ``scenario`` column) the column, every existing row counted as
    ``scenario``'s, in one transaction: the migration of an older DuckDB file, done by the first scenario that
    writes or reads the table. Tables that have the column are left as they are."""
    conn.execute("BEGIN TRANSACTION")
    try:
        _adopt(conn, table, scenario, _columns(conn, table))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _adopt(conn: duckdb.DuckDBPyConnection, table: str, scenario: str, columns: Mapping[str, str]) -> None:
    if SCENARIO_COLUMN in columns:
        return
    conn.execute(f"ALTER TABLE {_table(table)} ADD COLUMN {quote_ident(SCENARIO_COLUMN)} VARCHAR")
    conn.execute(f"UPDATE {_table(table)} SET {quote_ident(SCENARIO_COLUMN)} = ?", [scenario])


def read_table(conn: duckdb.DuckDBPyConnection, table: str) -> pd.DataFrame:
    """The whole table, every scenario and market."""
    return conn.execute(f"SELECT * FROM {_table(table)}").df()


def read_scenario(conn: duckdb.DuckDBPyConnection, table: str, scenario: str) -> pd.DataFrame:
    """Every market's rows of one scenario's ``table``, with the market column and without the scenario column."""
    adopt_rows(conn, table, scenario)
    rows = conn.execute(f"SELECT * FROM {_table(table)} WHERE {quote_ident(SCENARIO_COLUMN)} = ?", [scenario]).df()
    return rows.drop(columns=SCENARIO_COLUMN)


def read_market(
    conn: duckdb.DuckDBPyConnection, table: str, market: str, columns: list[str] | None = None, *, scenario: str
) -> pd.DataFrame:
    """One scenario's market's rows of ``table`` without the scenario and market columns (only ``columns``, in that
    order, when given)."""
    adopt_rows(conn, table, scenario)
    rows = conn.execute(
        f"SELECT * FROM {_table(table)} WHERE {quote_ident(SCENARIO_COLUMN)} = ? AND {quote_ident(MARKET_COLUMN)} = ?",
        [scenario, market],
    ).df()
    return rows[columns] if columns is not None else rows.drop(columns=[SCENARIO_COLUMN, MARKET_COLUMN])


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether ``table`` exists in the database's main schema."""
    # fetchall, not fetchone: DuckDB refuses a later write on a connection that has an unfinished result
    ((count,),) = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'", [table]
    ).fetchall()
    return bool(count)


def content_hash(frame: pd.DataFrame) -> str:
    """A short content hash of a table (values, column names and order): the data version of a feature table."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
