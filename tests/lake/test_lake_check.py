"""A damaged file spoils only what reads it: ``ct sql`` names it and answers every other query;
``ct lake check`` lists it and ``--quarantine`` sets it aside so that its table reads again.
Temporary files of killed writers go after a grace period (``ct lake sweep``, and before a
process's first write)."""

from __future__ import annotations

import os
import time

import duckdb
import pytest

from ct_cli.main import main
from ct_lake import catalog, files
from ct_lake.check import check
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake

P1, P2 = prompt_key("one"), prompt_key("two")


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(tmp_path / "lake")
    for prompt, weight in ((P1, 0.5), (P2, 0.25)):
        rows = [{"target": 1, "source": 2, "weight": weight}]
        lake.write_table("edges", rows, model="m", prompt=prompt)
    note = {"id": "a1", "author": "x", "kind": "note", "node_ids": [], "text": "t"}
    lake.write_table("annotations", [note], graph="file__g")
    (tmp_path / "c.yaml").write_text("lake: lake\nmodels: []\n")
    return lake


def _data_file(lake: Lake, table: str, partition: str):
    (path,) = (lake.root / table / partition).glob("*.parquet")
    return path


def _damage(path, how: str = "truncate") -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[:7])
    else:  # a footer that reads, pages that do not
        middle = bytes(b ^ 0x5A for b in data[4 : len(data) // 2])
        path.write_bytes(data[:4] + middle + data[len(data) // 2 :])


def ct(capsys, tmp_path, *argv) -> tuple[int, str, str]:
    code = main([*argv, "--config", str(tmp_path / "c.yaml")])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_damaged_data_file_spoils_only_the_queries_that_read_it(lake, tmp_path, capsys):
    bad_edges = _data_file(lake, "edges", f"model=m/prompt={P1}")
    bad_note = _data_file(lake, "annotations", "graph=file__g")
    _damage(bad_edges)
    _damage(bad_note)
    for query, answer in (
        ("SELECT 42 AS n", "42"),
        (f"SELECT count(*) AS n FROM edges WHERE prompt = '{P2}'", "1"),
        ("SELECT count(*) AS n FROM (SHOW TABLES) WHERE name = 'annotations'", "1"),
        ("SELECT count(*) AS n FROM graph_overview", "0"),
    ):
        code, out, err = ct(capsys, tmp_path, "sql", query, "--format", "csv")
        assert (code, out.split(), err) == (0, ["n", answer], ""), query
    for query, bad in (
        ("SELECT count(*) FROM edges", bad_edges),
        ("SELECT text FROM annotations", bad_note),
    ):
        code, out, err = ct(capsys, tmp_path, "sql", query)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        relative = bad.relative_to(lake.root).as_posix()
        assert err.startswith(f"ct sql: error: table {relative.split('/')[0]}: damaged data file")
        assert relative in err and "ct lake check --quarantine" in err
    # the API sets them apart too, and says which it found
    damaged: dict = {}
    query = "SELECT weight FROM edges UNION ALL SELECT 1.0 FROM annotations"
    rows = catalog.query_rows(lake, query, damaged=damaged, skip_damaged=True)
    assert rows == (["weight"], [(0.25,)])
    assert {table: list(found) for table, found in damaged.items()} == {
        "edges": [bad_edges.relative_to(lake.root / "edges").as_posix()],
        "annotations": [bad_note.relative_to(lake.root / "annotations").as_posix()],
    }


def test_ct_lake_check_lists_and_quarantines_damaged_data_files(lake, tmp_path, capsys):
    bad = _data_file(lake, "edges", f"model=m/prompt={P1}")
    _damage(bad, how="pages")  # a readable footer: only reading the pages finds it
    _damage(_data_file(lake, "annotations", "graph=file__g"))
    code, out, err = ct(capsys, tmp_path, "lake", "check")
    relative = bad.relative_to(lake.root).as_posix()
    assert code == 1 and err == "", err
    assert f"damaged data file {relative}: " in out
    assert "damaged data file annotations/graph=file__g/" in out
    assert "2 damaged file(s): `ct lake check --quarantine` sets them aside" in out
    code, out, err = ct(capsys, tmp_path, "lake", "check", "--quarantine")
    assert code == 0 and err == "" and out.count("quarantined ") == 2, out
    assert f"partition model=m/prompt={P1} removed from table edges" in out
    (moved,) = (lake.root / "_quarantine").glob(f"*/{relative}")
    assert not bad.exists() and moved.stat().st_size > 0
    fresh = Lake(lake.root)
    assert check(fresh) == []
    assert fresh.partitions("edges") == [{"model": "m", "prompt": P2}]
    assert not fresh.has_partition("annotations", graph="file__g")
    assert fresh.history()[-1].operation == "WRITE"
    code, out, _ = ct(capsys, tmp_path, "sql", "SELECT count(*) AS n FROM edges", "--format", "csv")
    assert (code, out.split()) == (0, ["n", "1"])
    code, out, _ = ct(capsys, tmp_path, "lake", "check")
    assert code == 0 and "no damaged file" in out


def test_a_damaged_delta_log(lake, tmp_path, capsys):
    log = lake.root / "edges" / "_delta_log"
    (log / "00000000000000000001.json").write_text('{"add": {broken\n')
    code, out, err = ct(capsys, tmp_path, "sql", "SELECT count(*) FROM edges")
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert err.startswith("ct sql: error: table edges of lake ") and "damaged Delta log" in err
    code, out, _ = ct(capsys, tmp_path, "sql", "SELECT count(*) AS n FROM annotations")
    assert code == 0 and out.split()[-3] == "1"
    code, out, _ = ct(capsys, tmp_path, "lake", "check", "--quarantine")
    assert code == 0 and "table rolled back to its newest whole version" in out
    assert Lake(lake.root).partitions("edges") == [{"model": "m", "prompt": P1}]
    # an older entry that later versions build on is reported, never moved
    rows = [{"target": 1, "source": 2, "weight": 0.25}]
    Lake(lake.root).write_table("edges", rows, model="m", prompt=P2)
    (log / "00000000000000000000.json").write_text("not json\n")
    damages = check(Lake(lake.root))
    assert [(d.kind, d.repairable) for d in damages] == [("log entry", False)]
    code, out, _ = ct(capsys, tmp_path, "lake", "check", "--quarantine")
    assert code == 1 and "cannot set aside edges/_delta_log/00000000000000000000.json" in out
    assert (log / "00000000000000000000.json").exists()


def test_sweep_removes_old_temporaries_only(lake, tmp_path, capsys, monkeypatch):
    folder = lake.root / "files" / "plots" / "model=m"
    folder.mkdir(parents=True)
    old, new = folder / ".a.png.x1.tmp", folder / ".b.png.x2.tmp"
    keep = folder / "c.tmp"  # not a temporary name of ours
    for path in (old, new, keep):
        path.write_bytes(b"partial")
    hour_ago = time.time() - 2 * files.SWEEP_GRACE_S
    for path in (old, keep):
        os.utime(path, (hour_ago, hour_ago))
    staging = folder / ".tree.x3.tmp"  # a tree being copied: its newest file counts
    (staging / "inner").mkdir(parents=True)
    os.utime(staging, (hour_ago, hour_ago))
    (staging / "inner" / "layer.bin").write_bytes(b"x")
    code, out, _ = ct(capsys, tmp_path, "lake", "check")
    assert "1 temporary file(s) of killed writers" in out
    code, out, _ = ct(capsys, tmp_path, "lake", "sweep")
    assert code == 0 and out.startswith("1 temporary file(s) removed")
    assert not old.exists() and new.exists() and keep.exists() and staging.exists()
    code, _, err = ct(capsys, tmp_path, "lake", "sweep", "--older-than", "-1")
    assert code == 2 and err == "ct lake sweep: error: --older-than must be 0 or more minutes\n"
    # a process sweeps before its first write to a lake
    os.utime(new, (hour_ago, hour_ago))
    monkeypatch.setattr(files, "_SWEPT", set())
    Lake(lake.root).write_file("plots", "d.png", b"png", model="m")
    assert not new.exists() and keep.exists()


def test_a_damaged_file_found_while_making_every_view(lake):
    _damage(_data_file(lake, "annotations", "graph=file__g"))
    con = catalog.connect(lake)
    assert con.execute("SELECT count(*) FROM edges").fetchall() == [(2,)]
    with pytest.raises(duckdb.Error, match="table annotations: damaged data file"):
        con.execute("SELECT * FROM annotations").fetchall()


def test_a_listed_file_that_is_gone(lake, tmp_path, capsys):
    gone = _data_file(lake, "edges", f"model=m/prompt={P2}")
    gone.unlink()
    code, out, err = ct(capsys, tmp_path, "sql", "SELECT count(*) FROM edges")
    assert code == 2 and "table edges: damaged data file edges/model=m/" in err
    code, out, _ = ct(capsys, tmp_path, "lake", "check", "--quarantine")
    assert code == 0 and f"partition model=m/prompt={P2} removed from table edges" in out
    assert Lake(lake.root).partitions("edges") == [{"model": "m", "prompt": P1}]


def test_a_damaged_file_on_s3(s3_uri):
    """On an S3 lake too: the query that reads it names it, the others answer, check lists it
    (and quarantine, which moves files, is refused there in one line)."""
    from ct_lake.catalog import CatalogError, query_rows
    from ct_lake.check import quarantine
    from ct_lake.storage import LakeError

    lake = Lake(s3_uri)
    for prompt in (P1, P2):
        rows = [{"target": 1, "source": 2, "weight": 0.5}]
        lake.write_table("edges", rows, model="m", prompt=prompt)
    lake.write_table("prompts", [{"text": "one", "n_chars": 3}], prompt=P1)
    snap = lake.snapshot("edges")
    bad = next(f for f in snap.files if f.partition == ("m", P1))
    fs, root = lake._filesystem("edges")
    with fs.open_output_stream(f"{root}/{bad.path}") as out:
        out.write(b"PAR1 not parquet")
    assert query_rows(lake, "SELECT text FROM prompts", sandbox=True) == (["text"], [("one",)])
    with pytest.raises(CatalogError, match=f"table edges: damaged data file edges/{bad.path}"):
        query_rows(lake, "SELECT count(*) FROM edges", sandbox=True)
    found = query_rows(lake, "SELECT weight FROM edges", damaged={}, skip_damaged=True)
    assert found == (["weight"], [(0.5,)])
    damages = check(lake)
    assert [(d.kind, d.path) for d in damages] == [("data file", f"edges/{bad.path}")]
    with pytest.raises(LakeError, match="quarantine works on local lakes only"):
        quarantine(lake, damages)
