"""Commands that need neither torch nor Dagster start without them, and start fast.

Each case runs the ``ct`` command's ``main`` in a fresh interpreter (so nothing another test
imported counts) and then reads ``sys.modules``. The wall-time guard times whole ``ct``
processes against the time ``import torch`` alone takes on the same machine, so that it holds
on a busy CI machine and still fails when torch (or Dagster) is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ct_lake.keys import prompt_key
from ct_lake.lake import Lake

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformer_lens", "nnsight", "transformers", "dagster", "pandas", "starlette")

_SCRIPT = """
import json, sys
from ct_cli.main import main
try:
    rc = main(json.loads(sys.argv[1]))
except SystemExit as stop:
    rc = stop.code
loaded = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
print("@@" + json.dumps({"rc": rc, "loaded": loaded}))
"""


def _ct(argv: list[str], cwd: Path, modules: tuple[str, ...] = HEAVY) -> tuple[int, str, list[str]]:
    """``(exit status, stdout before the report, which of modules were loaded)`` of
    ``ct argv``."""
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(argv), json.dumps(modules)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},  # this checkout's packages, installed or not
        capture_output=True,
        text=True,
        timeout=120,
    )
    out, _, report = done.stdout.rpartition("@@")
    assert report, done.stderr
    result = json.loads(report)
    return result["rc"], out, result["loaded"]


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("lake: lake\nmodels: []\n")
    return path


@pytest.fixture
def lake_config(tmp_path) -> Path:
    """The config of a lake with one prompt."""
    path = tmp_path / "c.yaml"
    path.write_text("lake: lake\nmodels: []\n")
    Lake(tmp_path / "lake").write_table(
        "prompts", [{"text": "one", "n_chars": 3}], prompt=prompt_key("one")
    )
    return path


def test_ct_help_imports_neither_torch_nor_dagster(tmp_path):
    rc, out, loaded = _ct(["--help"], tmp_path)
    assert rc == 0 and "materialize" in out and "eval-transcoders" in out and "lake" in out
    assert loaded == []


def test_ct_sql_imports_neither_torch_nor_dagster(tmp_path, config):
    query = "SELECT count(*) AS n_prompts FROM prompts"
    rc, out, loaded = _ct(["sql", query, "--config", str(config), "--format", "csv"], tmp_path)
    assert (rc, out.split()) == (0, ["n_prompts", "0"])  # an empty lake: no prompts yet
    assert loaded == []
    # a query that names no view reads no table: not even pyarrow
    rc, out, loaded = _ct(
        ["sql", "SELECT 1 AS one", "--config", str(config)], tmp_path, (*HEAVY, "pyarrow")
    )
    assert rc == 0 and out.split()[:3] == ["one", "---", "1"]
    assert loaded == []
    rc, out, loaded = _ct(["sql", "--views", "--config", str(config)], tmp_path)
    assert rc == 0 and "graph_overview  (derived)" in out
    assert loaded == []


def test_ct_lake_imports_neither_torch_nor_dagster(tmp_path, lake_config):
    rc, out, loaded = _ct(["lake", "--help"], tmp_path)
    assert rc == 0 and "usage: ct lake" in out
    assert loaded == []
    rc, out, loaded = _ct(["lake", "info", "--config", str(lake_config)], tmp_path)
    assert rc == 0 and out.split("\n")[1].split()[:3] == ["prompts", "0", "1"]
    assert loaded == []
    rc, out, loaded = _ct(
        ["sql", "SELECT text FROM prompts", "--config", str(lake_config), "--format", "csv"],
        tmp_path,
    )
    assert (rc, out.split()) == (0, ["text", "one"])
    assert loaded == []


def test_ct_features_show_imports_no_torch(tmp_path):
    missing = str(tmp_path / "no-features")
    rc, _, loaded = _ct(["features", "show", "0", "1", "--features_dir", missing], tmp_path)
    assert rc == 2 and loaded == []  # its error, before any model: one line, no torch


def test_ct_prompts_list_imports_no_torch(tmp_path, config):
    rc, out, loaded = _ct(["prompts", "list", "--config", str(config)], tmp_path)
    assert rc == 0 and "no prompts registered yet" in out
    assert loaded == []


def test_the_control_a_model_command_does_import_torch(tmp_path):
    """The check above can fail: a command that loads a model shows torch in sys.modules."""
    missing = str(tmp_path / "missing.txt")  # fails after importing torch, before any load
    rc, _, loaded = _ct(["eval-transcoders", "m", "t", "--prompts", missing], tmp_path)
    assert rc == 2 and "torch" in loaded


def _best_wall_s(argv: list[str], cwd: Path, runs: int) -> float:
    """The shortest wall time of ``runs`` runs of ``python argv`` (the least disturbed by
    other processes on the machine)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, *argv],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            check=True,
            timeout=120,
        )
        times.append(time.perf_counter() - start)
    return min(times)


def test_commands_without_a_model_take_a_fraction_of_a_torch_import(tmp_path, config):
    """Measured here: torch's import alone 2.5-3.5 s; ct --help 0.07-0.12 s and ct sql
    "SELECT 1" 0.35-0.6 s (2 shared cores, load 1.5-6); Dagster's import 2.6 s. A third of the
    torch import leaves room for a slow machine and fails on either import."""
    torch_s = _best_wall_s(["-c", "import torch"], tmp_path, runs=2)
    for argv in (["--help"], ["sql", "SELECT 1", "--config", str(config)]):
        wall_s = _best_wall_s(["-m", "ct_cli", *argv], tmp_path, runs=3)
        assert wall_s < torch_s / 3, (argv, wall_s, torch_s)
