"""Bad input to ``ct sql``, ``ct lake ...`` and ``ct serve``: one line each.

Each case runs the real ``ct`` in a fresh folder with ``c.yaml`` naming the lake ``lake``
there; ``setup`` builds what a case needs (a lake with a damaged file, a taken port).
"""

from __future__ import annotations

import socket

import pytest

from tests.bad_inputs.harness import Cli, check_cli, ids

CONFIG = {"c.yaml": "lake: lake\nmodels: []\n"}
C = "--config {tmp}/c.yaml"
_held: list[socket.socket] = []


def _lake(tmp):
    from ct_lake.keys import prompt_key
    from ct_lake.lake import Lake

    lake = Lake(tmp / "lake")
    for text in ("one", "two"):
        rows = [{"target": 1, "source": 2, "weight": 0.5}]
        lake.write_table("edges", rows, model="m", prompt=prompt_key(text))
    return lake


def _damaged_file(tmp):
    _lake(tmp)
    for path in (tmp / "lake" / "edges").glob("model=m/prompt=*/*.parquet"):
        path.write_bytes(b"PAR1 not parquet")
        break


def _damaged_log(tmp):
    _lake(tmp)
    (tmp / "lake" / "edges" / "_delta_log" / "00000000000000000001.json").write_text("{oops\n")


def _busy_port(tmp):
    """A port another server listens on, held until the case ends: ``{port}``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    _held.append(sock)
    return {"port": sock.getsockname()[1]}


CASES = [
    Cli(
        "sql-empty", f"sql '' {C}", r"^ct sql: error: the query has no SQL statement", files=CONFIG
    ),
    Cli(
        "sql-only-a-comment",
        f"sql '-- nothing here' {C}",
        r"^ct sql: error: the query has no SQL statement \(it is empty or only comments\)$",
        files=CONFIG,
    ),
    Cli(
        "sql-copy-without-write",
        f"sql \"COPY (SELECT 1) TO 'out.csv'\" {C}",
        r"^ct sql: error: the query has statements that write or change settings \(COPY\); "
        r"queries read only, unless --write is given$",
        files=CONFIG,
    ),
    Cli("sql-attach", f"sql \"ATTACH 'x.db'\" {C}", r"\(ATTACH\).*--write", files=CONFIG),
    Cli("sql-install", f"sql 'INSTALL httpfs' {C}", r"\(LOAD\).*--write", files=CONFIG),
    Cli(
        "sql-read-outside-the-lake",
        f"sql \"SELECT * FROM read_text('/etc/passwd')\" {C}",
        r"^ct sql: error: Permission Error: .*/etc/passwd.* \(ct sql reads the lake's files "
        r"only; --write lifts this\)$",
        files=CONFIG,
    ),
    Cli("sql-no-such-view", f"sql 'SELECT * FROM edgez' {C}", r"edgez", files=CONFIG),
    Cli("sql-max-rows", f"sql 'SELECT 1' --max-rows -1 {C}", r"--max-rows must be", files=CONFIG),
    Cli(
        "sql-damaged-data-file",
        f"sql 'SELECT count(*) FROM edges' {C}",
        r"^ct sql: error: table edges: damaged data file edges/model=m/prompt=p_[0-9a-f]{12}/"
        r"part-.*\.parquet \(.*\); `ct lake check` lists .*--quarantine",
        files=CONFIG,
        setup=_damaged_file,
    ),
    Cli(
        "sql-damaged-delta-log",
        f"sql 'SELECT count(*) FROM edges' {C}",
        r"^ct sql: error: table edges of lake .*/lake has a damaged Delta log \(.*\); "
        r"`ct lake check` lists what is damaged$",
        files=CONFIG,
        setup=_damaged_log,
    ),
    Cli(
        "lake-info-damaged-delta-log",
        f"lake info {C}",
        r"^ct lake info: error: table edges of lake .* has a damaged Delta log",
        files=CONFIG,
        setup=_damaged_log,
    ),
    Cli(
        "lake-sweep-negative",
        f"lake sweep --older-than -5 {C}",
        r"^ct lake sweep: error: --older-than must be 0 or more minutes$",
        files=CONFIG,
    ),
    Cli(
        "lake-check-no-config",
        "lake check --config {tmp}/none.yaml",
        r"^ct lake check: error: no lakehouse config at .*none\.yaml",
    ),
    Cli(
        "serve-busy-port",
        f"serve --port {{port}} {C}",
        r"^ct serve: error: port \d+ on 127\.0\.0\.1 is already in use \(another server, "
        r"maybe another ct serve\): stop it, or choose a free port with --port$",
        files=CONFIG,
        setup=_busy_port,
    ),
    Cli("serve-no-such-folder", f"serve --graph_file_dir {{tmp}}/nope {C}", r"no folder .*nope"),
]


@pytest.fixture(autouse=True)
def _release_ports():
    yield
    while _held:
        _held.pop().close()


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_cli_lake_bad_input(case, tmp_path):
    check_cli(case, tmp_path)
