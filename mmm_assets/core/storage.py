"""DuckDB table writes that are all-or-nothing, and the guards around the stores.

Identifiers are validated and quoted before they reach SQL; values only ever travel as a registered DataFrame or
bound parameters. A replaced table is swapped inside one transaction, so a failure (or a killed process) leaves the
previous table exactly as it was. Opening the database waits a bounded time for a lock held by another process, and
a run checks that the disks of its outputs have room before it starts writing.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pandas as pd

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: DuckDB's message when another process holds the file: 'Conflicting lock is held in <program> (PID <n>)'.
_LOCKED = "Could not set lock on file"
_HOLDER = re.compile(r"lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
#: Seconds between two attempts to open a locked database.
LOCK_POLL_S = 0.25


class DatabaseLockedError(RuntimeError):
    """The DuckDB file stayed locked by another process for longer than the configured wait."""


class DiskSpaceError(RuntimeError):
    """A disk the run writes to has less free space than the configured minimum."""


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


def ensure_free_space(folders: Mapping[str, Path], min_free_mb: float) -> None:
    """Raise :class:`DiskSpaceError` naming the first folder (by its role) whose disk has under ``min_free_mb``."""
    for role, folder in folders.items():
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        free_mb = shutil.disk_usage(existing).free / 2**20
        if free_mb < min_free_mb:
            raise DiskSpaceError(
                f"the disk of the {role} {folder} has {free_mb:.0f} MB free, under the {min_free_mb:g} MB a run "
                "needs (operations.min_free_disk_mb); free some space or point the path at a bigger disk. "
                "Nothing was written: the previous outputs are as they were"
            )


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier (embedded quotes doubled)."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _table(name: str) -> str:
    if not _TABLE.match(name):
        raise ValueError(f"table name {name!r} must be letters, digits and '_' (at most 63 characters)")
    return quote_ident(name)


def _with_view(conn: duckdb.DuckDBPyConnection, frame: pd.DataFrame, sql: str, table: str) -> None:
    """Run ``sql`` (with ``{view}`` and ``{table}`` placeholders) inside a transaction over a registered frame."""
    view = f"_staged_{uuid.uuid4().hex}"
    conn.register(view, frame)
    try:
        conn.execute("BEGIN TRANSACTION")
        try:
            for statement in sql.format(view=quote_ident(view), table=_table(table)).split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.unregister(view)


def replace_table(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Replace ``table`` with ``frame`` atomically."""
    _with_view(conn, frame, "CREATE OR REPLACE TABLE {table} AS SELECT * FROM {view}", table)


def append_rows(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Append ``frame`` to ``table`` (created with the frame's schema on first use) atomically."""
    _with_view(
        conn,
        frame,
        "CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {view} LIMIT 0; "
        "INSERT INTO {table} BY NAME SELECT * FROM {view}",
        table,
    )


def read_table(conn: duckdb.DuckDBPyConnection, table: str) -> pd.DataFrame:
    return conn.execute(f"SELECT * FROM {_table(table)}").df()


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
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
