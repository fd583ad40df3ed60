import duckdb
import pandas as pd
import pytest

from mmm_assets.core.stores.duckdb_store import (
    append_rows,
    content_hash,
    quote_ident,
    read_market,
    read_table,
    replace_market,
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
        replace_market(conn, "x; DROP TABLE y", pd.DataFrame({"a": [1]}), "north")


def test_replace_one_market_keeps_the_others(conn):
    replace_market(conn, "t", pd.DataFrame({"a": [1, 2]}), "north")
    replace_market(conn, "t", pd.DataFrame({"a": [5]}), "south")
    replace_market(conn, "t", pd.DataFrame({"a": [3], "b": ["x"]}), "north")  # a column only north has
    assert read_market(conn, "t", "north").to_dict("list") == {"a": [3], "b": ["x"]}
    assert read_market(conn, "t", "south", ["a"]).to_dict("list") == {"a": [5]}
    assert read_market(conn, "t", "south")["b"].isna().all()
    assert read_table(conn, "t")["market"].tolist() == ["south", "north"]
    assert table_exists(conn, "t") and not table_exists(conn, "nope")


def test_market_values_are_bound_not_interpolated(conn):
    hostile = "north' OR '1'='1"
    replace_market(conn, "t", pd.DataFrame({"a": [1]}), "north")
    replace_market(conn, "t", pd.DataFrame({"a": [2]}), hostile)
    assert read_market(conn, "t", hostile)["a"].tolist() == [2]
    assert read_market(conn, "t", "north")["a"].tolist() == [1]


def test_a_table_from_before_markets_is_replaced_whole(conn):
    conn.execute("CREATE TABLE t AS SELECT 1 AS a")
    replace_market(conn, "t", pd.DataFrame({"a": [7]}), "north")
    assert read_table(conn, "t").to_dict("list") == {"market": ["north"], "a": [7]}


def test_failed_replace_leaves_previous_rows(conn):
    replace_market(conn, "t", pd.DataFrame({"a": [1, 2]}), "north")
    with pytest.raises(duckdb.ConversionException):  # the delete ran, then the insert fails: all rolled back
        replace_market(conn, "t", pd.DataFrame({"a": ["not a number"]}), "north")
    assert read_market(conn, "t", "north")["a"].tolist() == [1, 2]


def test_append_creates_then_appends_by_name(conn):
    append_rows(conn, "h", pd.DataFrame({"metric": ["r2"], "value": [0.9]}))
    append_rows(conn, "h", pd.DataFrame({"value": [0.8], "metric": ["mape"], "market": ["north"]}))
    assert read_table(conn, "h").to_dict("list") == {
        "metric": ["r2", "mape"], "value": [0.9, 0.8], "market": [None, "north"]
    }


def test_content_hash_tracks_values_and_columns():
    a = pd.DataFrame({"x": [1.0, 2.0]})
    assert content_hash(a) == content_hash(a.copy())
    assert content_hash(a) != content_hash(pd.DataFrame({"x": [1.0, 2.5]}))
    assert content_hash(a) != content_hash(a.rename(columns={"x": "z"}))
