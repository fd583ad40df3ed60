"""DuckDB table writes that are all-or-nothing.

Identifiers are validated and quoted before they reach SQL; values only ever travel as a registered DataFrame or
bound parameters. A replaced table is swapped inside one transaction, so a failure (or a killed process) leaves the
previous table exactly as it was.
"""

from __future__ import annotations

import hashlib
import re
import uuid

import duckdb
import pandas as pd

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


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
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'", [table]
    ).fetchone()
    return bool(row and row[0])


def content_hash(frame: pd.DataFrame) -> str:
    """A short content hash of a table (values, column names and order): the data version of a feature table."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
