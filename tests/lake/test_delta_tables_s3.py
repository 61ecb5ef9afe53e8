"""Lake tables on an S3-compatible server (moto, 127.0.0.1): the same Delta operations as on a
local disk, and DuckDB views over the registered datasets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from ct_lake import catalog
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake
from ct_lake.storage import LakeError

REPO = Path(__file__).resolve().parents[2]
P1, P2 = prompt_key("one"), prompt_key("two")


def rows(*weights):
    return [{"target": i, "source": i + 1, "weight": w} for i, w in enumerate(weights)]


def test_tables_history_views_and_optimize_on_s3(s3_uri, tmp_path):
    lake = Lake(s3_uri)
    uri, n = lake.write_table("edges", rows(0.5, 1.5), model="m", prompt=P1)
    assert (uri, n) == (f"{s3_uri}/edges/model=m/prompt={P1}", 2)
    lake.write_table("edges", rows(2.5), model="m", prompt=P2)
    lake.write_table("edges", rows(3.5), model="m", prompt=P1)
    lake.write_table("annotations", [], graph="g1")  # an empty partition: one 0-row file
    assert lake.read_table("edges", model="m", prompt=P1).column("weight").to_pylist() == [3.5]
    assert lake.read_table("edges", model="m", prompt=P1, as_of=2).num_rows == 2
    assert lake.has_partition("annotations", graph="g1")
    assert lake.read_table("annotations", graph="g1").num_rows == 0
    assert [c.lake_version for c in lake.history()] == [1, 2, 3, 4, 5]  # + CREATE TABLE
    with pytest.raises(LakeError):
        lake.root  # noqa: B018  (an S3 lake has no local folder)

    with catalog.connect(lake) as con:
        assert con.execute("SELECT count(*) FROM edges").fetchone() == (2,)
        assert con.execute(f"SELECT weight FROM edges WHERE prompt = '{P2}'").fetchall() == [(2.5,)]
        assert con.execute("SELECT count(*) FROM annotations").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM graph_overview").fetchone() == (0,)
    with catalog.connect(lake, as_of=2) as con:
        assert con.execute("SELECT count(*) FROM edges").fetchone() == (3,)
    with pytest.raises(LakeError, match="catalog file"):
        catalog.write_catalog_file(lake, tmp_path / "c.duckdb")

    info = {t.table: t for t in lake.info()}
    assert (info["edges"].partitions, info["edges"].files, info["edges"].rows) == (2, 2, 2)
    report = lake.optimize(retention_hours=0)
    assert {t.table: t.files_vacuumed for t in report.tables}["edges"] == 1
    assert lake.read_table("edges", model="m", prompt=P1).num_rows == 1

    # Partition pruning through the registered dataset: with P1's data objects deleted, a query
    # for P2 still runs (it never opens P1's files); one over the whole table cannot.
    fs, root = lake.location.filesystem()
    for f in lake.snapshot("edges").files:
        if f.partition == ("m", P1):
            fs.delete_file(f"{root}/edges/{f.path}")
    with catalog.connect(lake) as con:
        assert con.execute(f"SELECT weight FROM edges WHERE prompt = '{P2}'").fetchall() == [(2.5,)]
        with pytest.raises(duckdb.Error):
            con.execute("SELECT count(*) FROM edges").fetchall()


READER = """
import sys
from ct_lake import catalog
from ct_lake.lake import Lake

lake = Lake(sys.argv[1])
lake.write_table("edges", [{"target": 1, "source": 2, "weight": 0.5}], model="m",
                 prompt="p_000000000001")
print(lake.read_table("edges", model="m", prompt="p_000000000001", as_of=1).num_rows)
with catalog.connect(lake) as con:
    print(con.execute("SELECT count(*) FROM edges").fetchone()[0])
lake.optimize(retention_hours=0)
"""


def test_a_process_reading_an_s3_lake_exits_cleanly(s3_uri, s3_server):
    result = subprocess.run(
        [sys.executable, "-c", READER, s3_uri],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=s3_server.env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]
