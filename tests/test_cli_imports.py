"""Commands that need neither torch nor Dagster start without them.

Each case runs the ``ct`` command's ``main`` in a fresh interpreter (so nothing another test
imported counts) and then reads ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformer_lens", "nnsight", "transformers", "dagster")

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


def _ct(argv: list[str], cwd: Path) -> tuple[int, str, list[str]]:
    """``(exit status, stdout before the report, heavy modules loaded)`` of ``ct argv``."""
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(argv), json.dumps(HEAVY)],
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


def test_ct_help_imports_neither_torch_nor_dagster(tmp_path):
    rc, out, loaded = _ct(["--help"], tmp_path)
    assert rc == 0 and "materialize" in out and "eval-transcoders" in out and "lake" in out
    assert loaded == []


def test_ct_sql_imports_neither_torch_nor_dagster(tmp_path, config):
    query = "SELECT count(*) AS n_prompts FROM prompts"
    rc, out, loaded = _ct(["sql", query, "--config", str(config), "--format", "csv"], tmp_path)
    assert (rc, out.split()) == (0, ["n_prompts", "0"])  # an empty lake: no prompts yet
    assert loaded == []
    rc, out, loaded = _ct(["sql", "--views", "--config", str(config)], tmp_path)
    assert rc == 0 and "graph_overview  (derived)" in out
    assert loaded == []


def test_ct_lake_imports_neither_torch_nor_dagster(tmp_path):
    rc, out, loaded = _ct(["lake", "--help"], tmp_path)
    assert rc == 0 and "usage: ct lake" in out
    assert loaded == []


def test_ct_prompts_list_imports_no_torch(tmp_path, config):
    rc, out, loaded = _ct(["prompts", "list", "--config", str(config)], tmp_path)
    assert rc == 0 and "no prompts registered yet" in out
    assert "torch" not in loaded and "transformer_lens" not in loaded


def test_the_control_a_model_command_does_import_torch(tmp_path):
    """The check above can fail: a command that loads a model shows torch in sys.modules."""
    missing = str(tmp_path / "missing.txt")  # fails after importing torch, before any load
    rc, _, loaded = _ct(["eval-transcoders", "m", "t", "--prompts", missing], tmp_path)
    assert rc == 2 and "torch" in loaded
