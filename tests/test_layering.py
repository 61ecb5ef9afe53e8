"""The layering, enforced: ct_cli > (ct_assets | ct_viewer) > ct_lake > ct_engine.

The contracts live in pyproject.toml (``[tool.importlinter]``); ``lint-imports`` checks them
over every import, function-level ones included. A negative control runs the same contracts
over a copy of the packages with one upward import injected, and must see them broken. Then
``import ct_lake`` and its modules, in a fresh interpreter, must load neither Dagster nor
torch (the lake is a library; the engine and torch are imported inside the functions that
need a model or a graph).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ct_cli", "ct_assets", "ct_viewer", "ct_lake", "ct_engine")


def _lint_imports(folder: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` over the packages found in ``folder`` (its pyproject.toml)."""
    script = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", script, "--no-cache", "--no-logo"],
        cwd=folder,  # lint-imports puts the working folder first on sys.path
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_packages(target: Path) -> None:
    """The Python files of the five packages, and pyproject.toml (the same contracts)."""
    for package in PACKAGES:
        shutil.copytree(
            REPO / package,
            target / package,
            ignore=lambda folder, names: [
                n for n in names if not (n.endswith(".py") or (Path(folder) / n).is_dir())
            ],
        )
    shutil.copy(REPO / "pyproject.toml", target / "pyproject.toml")


def test_the_layers_are_kept():
    done = _lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout and "KEPT" in done.stdout


@pytest.mark.parametrize(
    ("where", "upward"),
    [
        ("ct_engine/commands/injected.py", "from ct_lake import config"),  # engine -> lake
        ("ct_lake/injected.py", "def f():\n    import ct_viewer.server"),  # lazy, still upward
        ("ct_viewer/injected.py", "import ct_assets.lib"),  # the middle layer: independent
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, where, upward):
    _copy_packages(tmp_path)
    clean = _lint_imports(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr  # the copy itself is fine
    (tmp_path / where).write_text(upward + "\n")
    broken = _lint_imports(tmp_path)
    assert broken.returncode != 0
    assert "BROKEN" in broken.stdout
    module = where.removesuffix(".py").replace("/", ".")
    assert module in broken.stdout  # the report names the offending module


def test_dagster_in_the_lake_breaks_the_contract(tmp_path):
    _copy_packages(tmp_path)
    (tmp_path / "ct_lake" / "injected.py").write_text("import dagster\n")
    broken = _lint_imports(tmp_path)
    assert broken.returncode != 0 and "ct_lake.injected -> dagster" in broken.stdout


def test_ct_lake_imports_neither_dagster_nor_torch():
    """Every module of ct_lake, in a fresh process: the engine and torch load only when a model
    or a graph is used."""
    script = """
import importlib, json, pkgutil, sys
import ct_lake
names = [m.name for m in pkgutil.walk_packages(ct_lake.__path__, "ct_lake.")]
for name in names:
    importlib.import_module(name)
loaded = [m for m in ("torch", "dagster", "transformer_lens", "nnsight") if m in sys.modules]
print(json.dumps({"modules": names, "loaded": loaded}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    light_modules = ("ct_lake.config", "ct_lake.lake", "ct_lake.catalog", "ct_lake.commands.sql")
    for light in (*light_modules, "ct_lake.records"):
        assert light in result["modules"]
    assert result["loaded"] == []
