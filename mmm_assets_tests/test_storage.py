import duckdb
import pandas as pd
import pytest

from mmm_assets.core import storage
from mmm_assets.core.storage import (
    append_rows,
    content_hash,
    quote_ident,
    read_table,
    replace_table,
    table_exists,
)


@pytest.fixture
def conn(tmp_path):
    with duckdb.connect(str(tmp_path / "t.duckdb")) as c:
        yield c


def test_quote_ident_escapes_quotes():
    assert quote_ident('we"ird name') == '"we""ird name"'
    with pytest.raises(ValueError):
        quote_ident("")


def test_table_names_are_validated(conn):
    with pytest.raises(ValueError, match="table name"):
        replace_table(conn, "x; DROP TABLE y", pd.DataFrame({"a": [1]}))


def test_replace_and_read_back(conn):
    replace_table(conn, "t", pd.DataFrame({"a": [1, 2]}))
    replace_table(conn, "t", pd.DataFrame({"a": [3], "b": ["x"]}))
    assert read_table(conn, "t").to_dict("list") == {"a": [3], "b": ["x"]}
    assert table_exists(conn, "t") and not table_exists(conn, "nope")


def test_failed_replace_leaves_previous_table(conn, monkeypatch):
    replace_table(conn, "t", pd.DataFrame({"a": [1, 2]}))
    real = storage._with_view

    def failing(c, frame, sql, table):
        # the replacement runs, then a later statement of the same transaction fails
        real(c, frame, sql + "; SELECT * FROM no_such_table", table)

    monkeypatch.setattr(storage, "_with_view", failing)
    with pytest.raises(duckdb.CatalogException):
        replace_table(conn, "t", pd.DataFrame({"a": [9, 9, 9]}))
    assert read_table(conn, "t")["a"].tolist() == [1, 2]


def test_append_creates_then_appends_by_name(conn):
    append_rows(conn, "h", pd.DataFrame({"metric": ["r2"], "value": [0.9]}))
    append_rows(conn, "h", pd.DataFrame({"value": [0.8], "metric": ["mape"]}))
    assert read_table(conn, "h").to_dict("list") == {"metric": ["r2", "mape"], "value": [0.9, 0.8]}


def test_content_hash_tracks_values_and_columns():
    a = pd.DataFrame({"x": [1.0, 2.0]})
    assert content_hash(a) == content_hash(a.copy())
    assert content_hash(a) != content_hash(pd.DataFrame({"x": [1.0, 2.5]}))
    assert content_hash(a) != content_hash(a.rename(columns={"x": "z"}))
