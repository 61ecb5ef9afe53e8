"""The catalog reads only what a query needs: the views it names (and those they use), none for
a query that names no view, every view for a query that reads the catalog itself; and it
names Arrow types as DuckDB does without handing DuckDB an Arrow object."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from ct_lake import catalog
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake
from ct_lake.storage import DamagedLog
from ct_lake.tables import TABLES

P1 = prompt_key("one")


@pytest.fixture
def lake(tmp_path) -> Lake:
    """A lake with edges and prompts, whose edges table's Delta log is then made unreadable:
    a query that reads edges fails, one that does not succeeds."""
    lake = Lake(tmp_path / "lake")
    lake.write_table("edges", [{"target": 1, "source": 2, "weight": 0.5}], model="m", prompt=P1)
    lake.write_table("prompts", [{"text": "one", "n_chars": 3}], prompt=P1)
    for entry in (tmp_path / "lake" / "edges" / "_delta_log").glob("*.json"):
        entry.write_text("not a Delta log entry")
    return Lake(tmp_path / "lake")


def _names(views) -> list[str]:
    return [view.name for view in views]


def test_duckdb_type_names_match_duckdbs_own():
    types = {f.type for spec in TABLES.values() for f in spec.schema}
    types |= {
        pa.int8(),
        pa.uint8(),
        pa.uint16(),
        pa.uint32(),
        pa.uint64(),
        pa.large_string(),
        pa.binary(),
        pa.large_binary(),
        pa.date32(),
        pa.large_list(pa.int64()),
        pa.list_(pa.list_(pa.string())),
        pa.map_(pa.string(), pa.list_(pa.float64())),
        *(pa.timestamp(unit) for unit in ("s", "ms", "us", "ns")),
        *(pa.timestamp(unit, tz="UTC") for unit in ("s", "ms", "us")),
    }
    con = duckdb.connect()
    for t in types:
        expected = str(con.from_arrow(pa.schema([("x", t)]).empty_table()).types[0])
        assert catalog._known_type(t) == expected, t
    # every column of the lake's own tables is named without asking DuckDB
    assert all(catalog._known_type(f.type) for spec in TABLES.values() for f in spec.schema)
    # a type not known here is asked of DuckDB
    struct = pa.schema([("s", pa.struct([("a b", pa.int64())])), ("n", pa.int32())])
    assert catalog._known_type(struct.field("s").type) is None
    assert catalog.schema_columns(con, struct) == [("s", 'STRUCT("a b" BIGINT)'), ("n", "INTEGER")]


def test_views_for_a_query_are_the_views_it_names_and_those_they_use():
    views = catalog.load_views()
    overview = next(v for v in views if v.name == "graph_overview")
    needed = catalog.views_for("SELECT prompt_text FROM graph_overview")
    assert set(_names(needed)) == {"graph_overview", *overview.depends}
    assert {"graphs", "prompts", "scores"} <= overview.depends
    # in catalog order: each view after those it uses
    assert _names(needed) == [v.name for v in views if v.name in _names(needed)]
    assert catalog.views_for("SELECT 1") == []
    assert _names(catalog.views_for('select * from "NODES" -- and edges')) == ["edges", "nodes"]
    for reads_catalog in (
        "SHOW TABLES",
        "DESCRIBE nodes",
        "SELECT * FROM information_schema.tables",
        "SELECT count(*) FROM duckdb_views()",
        "PRAGMA show_tables",
    ):
        assert catalog.views_for(reads_catalog) == views, reads_catalog


def test_a_query_reads_only_the_tables_it_needs(lake):
    with pytest.raises(DamagedLog, match="table edges of lake .* has a damaged Delta log"):
        lake.snapshot("edges")
    con, cursor = catalog.execute(lake, "SELECT text, n_chars FROM prompts")
    assert cursor.fetchall() == [("one", 3)]
    con.close()
    con, cursor = catalog.execute(lake, "SELECT 6 * 7 AS answer")
    assert cursor.fetchall() == [(42,)] and con.execute("SHOW TABLES").fetchall() == []
    con.close()
    with pytest.raises(duckdb.Error, match="table edges of lake .* has a damaged Delta log"):
        catalog.execute(lake, "SELECT count(*) FROM edges")
    # every view: the damaged table's too, which says so when read, not before
    every = catalog.connect(lake)
    assert every.execute("SELECT text FROM prompts").fetchall() == [("one",)]
    assert ("edges",) in every.execute("SHOW TABLES").fetchall()
    with pytest.raises(duckdb.Error, match="damaged Delta log"):
        every.execute("SELECT count(*) FROM edges").fetchall()
    every.close()


def test_execute_gives_what_a_connection_with_every_view_gives(tmp_path):
    lake = Lake(tmp_path / "lake")
    lake.write_table("prompts", [{"text": "one", "n_chars": 3}], prompt=P1)
    every = catalog.connect(lake)
    for query in (
        "SELECT 1 AS one, 'x' AS x",
        "SELECT text FROM prompts",
        "SELECT * FROM graph_overview",
        "SHOW TABLES",
        "SELECT count(*) FROM duckdb_views() WHERE NOT internal",
        "SELECT count(*) FROM query_table('prompts')",
        "SELECT 1; SELECT text FROM prompts",
    ):
        con, cursor = catalog.execute(lake, query)
        assert cursor.fetchall() == every.execute(query).fetchall(), query
        con.close()
    for bad in ("SELECT * FROM promptz", "SELECT 1 +", "SELECT nodes.x FROM prompts"):
        with pytest.raises(duckdb.Error) as expected:
            every.execute(bad)
        with pytest.raises(duckdb.Error) as got:
            catalog.execute(lake, bad)
        assert str(got.value) == str(expected.value)
    every.close()


def test_a_query_with_as_of_is_checked_against_the_history(tmp_path):
    lake = Lake(tmp_path / "lake")
    lake.write_table("prompts", [{"text": "one", "n_chars": 3}], prompt=P1)
    con, cursor = catalog.execute(lake, "SELECT 1", as_of=1)
    assert cursor.fetchall() == [(1,)]
    con.close()
    with pytest.raises(ValueError, match="lake version 5 does not exist"):
        catalog.execute(lake, "SELECT 1", as_of=5)


def test_a_query_that_writes_runs_once(tmp_path):
    """Only read-only queries are tried without views first: a query that writes and then
    reads a table runs once, on the connection with the views."""
    lake = Lake(tmp_path / "lake")
    lake.write_table("prompts", [{"text": "one", "n_chars": 3}], prompt=P1)
    db = tmp_path / "out.duckdb"
    query = (
        f"ATTACH '{db}' AS out; CREATE TABLE out.log (n INTEGER); INSERT INTO out.log VALUES (1); "
        "SELECT count(*) FROM prompts"
    )
    con, cursor = catalog.execute(lake, query)
    assert cursor.fetchall() == [(1,)]
    con.close()
    with duckdb.connect(str(db), read_only=True) as out:
        assert out.execute("SELECT count(*) FROM log").fetchall() == [(1,)]
