"""``ct sql`` reads the lake and nothing else unless told to write; what it prints cannot drive
the terminal."""

from __future__ import annotations

import pytest

from ct_cli.main import main
from ct_lake import catalog
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake

P1 = prompt_key("one")
HOSTILE = "\u001b[2J\u001b]0;owned\u0007after"


@pytest.fixture
def config(tmp_path):
    lake = Lake(tmp_path / "lake")
    lake.write_table("edges", [{"target": 1, "source": 2, "weight": 0.5}], model="m", prompt=P1)
    lake.write_table("prompts", [{"text": HOSTILE, "n_chars": 3}], prompt=P1)
    note = {"id": "a1", "author": "x", "kind": "note", "node_ids": ["1_2_3"], "text": HOSTILE}
    lake.write_table("annotations", [note], graph="file__g")
    (tmp_path / "secret.txt").write_text("secret\n")
    path = tmp_path / "c.yaml"
    path.write_text("lake: lake\nmodels: []\n")
    return path


def ct(capsys, config, *argv) -> tuple[int, str, str]:
    code = main(["sql", *argv, "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("COPY (SELECT 1) TO '{tmp}/lake/out.csv'", r"statements that write .*\(COPY\).*--write"),
        ("ATTACH '{tmp}/x.duckdb' AS x", r"\(ATTACH\)"),
        ("INSTALL httpfs", r"\(LOAD\)"),
        ("SET enable_external_access = true", r"\(SET\)"),
        ("CREATE TABLE t AS SELECT 1", r"\(CREATE\)"),
        ("SELECT * FROM read_text('{tmp}/secret.txt')", r"Permission Error.*reads the lake's"),
        ("SELECT * FROM read_text('{tmp}/lake/../secret.txt')", r"Permission Error"),
        ("SELECT * FROM read_csv('https://example.com/x.csv')", r"Permission Error"),
        ("", r"no SQL statement \(it is empty or only comments\)"),
        ("-- only a comment", r"no SQL statement"),
    ],
)
def test_a_query_reads_only_the_lake(capsys, config, query, error):
    import re

    code, out, err = ct(capsys, config, query.format(tmp=config.parent))
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("ct sql: error: ") and re.search(error, err), err
    assert not (config.parent / "lake" / "out.csv").exists()
    assert not (config.parent / "x.duckdb").exists()


def test_write_lets_a_query_write(capsys, config):
    out_file = config.parent / "out.csv"
    code, _, err = ct(capsys, config, f"COPY (SELECT weight FROM edges) TO '{out_file}'", "--write")
    assert code == 0 and err == "" and out_file.read_text().split() == ["weight", "0.5"]


def test_every_view_reads_in_the_sandbox(config):
    """No view needs a file outside the lake or an extension to load."""
    lake = Lake(config.parent / "lake")
    con = catalog.connect(lake, sandbox=True)
    for view in catalog.load_views():
        con.execute(f'SELECT count(*) FROM "{view.name}"').fetchall()
    assert con.execute("SELECT count(*) FROM annotations").fetchall() == [(1,)]
    con.close()


def test_stored_control_characters_are_escaped(capsys, config):
    code, out, _ = ct(capsys, config, "SELECT text FROM annotations")
    assert code == 0 and "\u001b" not in out and "\u0007" not in out
    assert "\\x1b[2J\\x1b]0;owned\\x07after" in out
    code, out, _ = ct(capsys, config, 'SELECT text AS "\u001b[2J", 1 FROM prompts')
    assert "\u001b" not in out and out.startswith("\\x1b[2J")
    code, out, _ = ct(
        capsys, config, "SELECT text || '\u009b' AS t FROM prompts", "--format", "json"
    )
    assert "\u001b" not in out and "\u009b" not in out and "\\u001b[2J" in out
    # an error quoting stored text escapes it too
    code, out, err = ct(capsys, config, "SELECT CAST(text AS INTEGER) FROM annotations")
    assert code == 2 and "\u001b" not in err and "\\x1b[2J" in err and err.count("\n") == 1
