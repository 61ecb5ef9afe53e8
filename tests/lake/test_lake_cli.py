"""``ct lake info|history|optimize`` and ``ct sql --as-of`` on a real Delta lake."""

from __future__ import annotations

import pytest

from ct_cli.main import main
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake

P1 = prompt_key("one")


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  - {name: a, model: m, transcoders: t}\nlake: data\n")
    lake = Lake(tmp_path / "data")
    lake.write_table("edges", [{"target": 1, "source": 2, "weight": 0.5}], model="m", prompt=P1)
    lake.write_table("prompts", [{"text": "one", "n_chars": 3}], prompt=P1)
    lake.write_table("edges", [{"target": 1, "source": 2, "weight": 0.75}], model="m", prompt=P1)
    return path


def ct(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ct_sql_as_of_a_lake_version_or_a_time(capsys, config):
    query = "SELECT weight FROM edges"
    code, out, _ = ct(
        capsys, "sql", query, "--as-of", "1", "--format", "csv", "--config", str(config)
    )
    assert code == 0 and out.splitlines() == ["weight", "0.5"]
    code, out, _ = ct(capsys, "sql", query, "--format", "csv", "--config", str(config))
    assert code == 0 and out.splitlines() == ["weight", "0.75"]
    lake = Lake(config.parent / "data")
    second = lake.history()[1].timestamp.isoformat()
    code, out, _ = ct(
        capsys,
        "sql",
        "SELECT count(*) AS n FROM prompts",
        "--as-of",
        second,
        "--format",
        "csv",
        "--config",
        str(config),
    )
    assert code == 0 and out.splitlines() == ["n", "1"]
    code, out, err = ct(capsys, "sql", query, "--as-of", "9", "--config", str(config))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "lake version 9 does not exist" in err and "version 3" in err
    code, _, err = ct(capsys, "sql", query, "--as-of", "yesterday", "--config", str(config))
    assert code == 2 and "not a lake version" in err and "Traceback" not in err


def test_ct_lake_history_and_info(capsys, config):
    code, out, _ = ct(capsys, "lake", "history", "--config", str(config))
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["lake", "version", "time"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3"]
    assert [line.split()[2] for line in lines[1:]] == ["edges", "prompts", "edges"]
    assert lines[3].split()[-1] == f"model=m/prompt={P1}"
    code, out, _ = ct(capsys, "lake", "history", "edges", "--limit", "1", "--config", str(config))
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["3"]
    code, _, err = ct(capsys, "lake", "history", "nope", "--config", str(config))
    assert code == 2 and "unknown lake table 'nope'" in err and err.count("\n") == 1

    code, out, _ = ct(capsys, "lake", "info", "--config", str(config))
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    assert code == 0 and rows["edges"][1:4] == ["1", "1", "1"]  # version, partitions, files
    assert rows["edges"][-1] == "1" and rows["prompts"][-1] == "1"
    assert rows["nodes"][1] == "-"
    assert f"lake {config.parent / 'data'}: lake version 3, " in out.splitlines()[-1]


def test_ct_lake_optimize(capsys, config):
    code, out, _ = ct(capsys, "lake", "optimize", "--config", str(config))
    assert code == 0 and "retention 168 h: 0 files" in out
    code, out, _ = ct(capsys, "lake", "optimize", "--retention-hours", "0", "--config", str(config))
    assert code == 0
    edges = next(line.split() for line in out.splitlines() if line.startswith("edges"))
    assert edges[5:7] == ["1", "files"]  # the replaced file of the first write
    assert "retention 0 h: 1 files" in out.splitlines()[-1]
    code, _, err = ct(
        capsys, "lake", "optimize", "--retention-hours", "-1", "--config", str(config)
    )
    assert code == 2 and "--retention-hours" in err
    code, out, _ = ct(
        capsys, "sql", "SELECT weight FROM edges", "--format", "csv", "--config", str(config)
    )
    assert out.splitlines() == ["weight", "0.75"]
