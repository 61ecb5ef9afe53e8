"""The viewer sits on ct_lake and ct_engine: no module of it imports the Dagster project."""

from __future__ import annotations

import ast
from pathlib import Path

VIEWER = Path(__file__).resolve().parents[2] / "ct_viewer"


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):  # function bodies too
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_no_viewer_module_imports_ct_assets_or_dagster():
    files = sorted(VIEWER.rglob("*.py"))
    assert len(files) >= 5
    found = {
        f"{path.relative_to(VIEWER)}: {name}"
        for path in files
        for name in _imports(path)
        if name.split(".")[0] in ("ct_assets", "dagster")
    }
    assert not found
    used = {name.split(".")[0] for path in files for name in _imports(path)}
    assert {"ct_lake", "ct_engine"} <= used
