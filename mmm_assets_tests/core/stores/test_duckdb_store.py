import duckdb
import pandas as pd
import pytest

from mmm_assets.core.stores.duckdb_store import (
    append_rows,
    content_hash,
    quote_ident,
    read_market,
    read_scenario,
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
        replace_market(conn, "x; DROP TABLE y", pd.DataFrame({"a": [1]}), "north", scenario="s")


def test_replace_one_market_keeps_the_others(conn):
    replace_market(conn, "t", pd.DataFrame({"a": [1, 2]}), "north", scenario="s")
    replace_market(conn, "t", pd.DataFrame({"a": [5]}), "south", scenario="s")
    replace_market(conn, "t", pd.DataFrame({"a": [3], "b": ["x"]}), "north", scenario="s")  # a column only north has
    assert read_market(conn, "t", "north", scenario="s").to_dict("list") == {"a": [3], "b": ["x"]}
    assert read_market(conn, "t", "south", ["a"], scenario="s").to_dict("list") == {"a": [5]}
    assert read_market(conn, "t", "south", scenario="s")["b"].isna().all()
    assert read_table(conn, "t")["market"].tolist() == ["south", "north"]
    assert table_exists(conn, "t") and not table_exists(conn, "nope")


def test_an_empty_table_first_then_rows_of_text(conn):
    """A market with nothing to write (a scenario without goals) creates the table; another market's text follows."""
    empty = pd.DataFrame({"goal": pd.Series(dtype=object), "total": pd.Series(dtype=float)})
    replace_market(conn, "t", empty, "north", scenario="s")
    replace_market(conn, "t", pd.DataFrame({"goal": ["least spend"], "total": [1.5]}), "south", scenario="s")
    assert read_market(conn, "t", "south", scenario="s").to_dict("list") == {"goal": ["least spend"], "total": [1.5]}
    assert read_market(conn, "t", "north", scenario="s").empty


def test_scenarios_are_namespaces(conn):
    """Two scenarios naming a market alike keep their own rows: a write replaces its (scenario, market) only."""
    replace_market(conn, "t", pd.DataFrame({"a": [1, 2]}), "national", scenario="brand_a")
    replace_market(conn, "t", pd.DataFrame({"a": [9]}), "national", scenario="brand_b")
    replace_market(conn, "t", pd.DataFrame({"a": [4]}), "south", scenario="brand_b")
    assert read_market(conn, "t", "national", scenario="brand_a")["a"].tolist() == [1, 2]
    assert read_market(conn, "t", "national", scenario="brand_b")["a"].tolist() == [9]
    assert list(read_table(conn, "t").columns) == ["scenario", "market", "a"]
    assert read_scenario(conn, "t", "brand_b").to_dict("list") == {"market": ["national", "south"], "a": [9, 4]}
    append_rows(conn, "h", pd.DataFrame({"v": [1]}), scenario="brand_a", market="national")
    append_rows(conn, "h", pd.DataFrame({"v": [2], "scenario": ["ignored"]}), scenario="brand_b", market="national")
    assert read_market(conn, "h", "national", scenario="brand_b").to_dict("list") == {"v": [2]}
    assert read_table(conn, "h")["scenario"].tolist() == ["brand_a", "brand_b"]


def test_a_table_from_before_scenarios_is_adopted_by_its_first_writer(conn):
    """An older file (market column, no scenario column): the first scenario to touch a table claims its rows, in
    the same transaction as its write; later scenarios add theirs beside them."""
    conn.execute("CREATE TABLE t AS SELECT * FROM (VALUES ('north', 1), ('south', 2)) AS v(market, a)")
    conn.execute("CREATE TABLE h AS SELECT 'north' AS market, 0.5 AS v")
    conn.execute("CREATE TABLE r AS SELECT 'north' AS market, 7 AS a")
    replace_market(conn, "t", pd.DataFrame({"a": [3]}), "north", scenario="old")
    append_rows(conn, "h", pd.DataFrame({"v": [0.7]}), scenario="old", market="north")
    assert read_market(conn, "r", "north", scenario="old")["a"].tolist() == [7]  # a read adopts too
    replace_market(conn, "t", pd.DataFrame({"a": [8]}), "north", scenario="new")
    assert read_table(conn, "t").sort_values(["scenario", "market"]).to_dict("list") == {
        "market": ["north", "north", "south"], "a": [8, 3, 2], "scenario": ["new", "old", "old"]
    }
    assert read_market(conn, "h", "north", scenario="old")["v"].tolist() == [0.5, 0.7]
    assert read_market(conn, "r", "north", scenario="new").empty


def test_market_values_are_bound_not_interpolated(conn):
    hostile = "north' OR '1'='1"
    replace_market(conn, "t", pd.DataFrame({"a": [1]}), "north", scenario=hostile)
    replace_market(conn, "t", pd.DataFrame({"a": [2]}), hostile, scenario=hostile)
    assert read_market(conn, "t", hostile, scenario=hostile)["a"].tolist() == [2]
    assert read_market(conn, "t", "north", scenario=hostile)["a"].tolist() == [1]


def test_a_table_from_before_markets_is_replaced_whole(conn):
    conn.execute("CREATE TABLE t AS SELECT 1 AS a")
    replace_market(conn, "t", pd.DataFrame({"a": [7]}), "north", scenario="s")
    assert read_table(conn, "t").to_dict("list") == {"scenario": ["s"], "market": ["north"], "a": [7]}


def test_failed_replace_leaves_previous_rows(conn):
    replace_market(conn, "t", pd.DataFrame({"a": [1, 2]}), "north", scenario="s")
    with pytest.raises(duckdb.ConversionException):  # the delete ran, then the insert fails: all rolled back
        replace_market(conn, "t", pd.DataFrame({"a": ["not a number"]}), "north", scenario="s")
    assert read_market(conn, "t", "north", scenario="s")["a"].tolist() == [1, 2]


def test_a_failed_write_leaves_an_older_table_unadopted(conn):
    conn.execute("CREATE TABLE t AS SELECT 'north' AS market, 1 AS a")
    with pytest.raises(duckdb.ConversionException):
        replace_market(conn, "t", pd.DataFrame({"a": ["not a number"]}), "north", scenario="s")
    assert read_table(conn, "t").to_dict("list") == {"market": ["north"], "a": [1]}


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
