"""The demo notebooks: committed as built from ``demos/cells/`` and executed (every code cell
shows its output, figures included, nothing on stderr, no temporary paths), and each runs
again, offline, in a scratch folder, showing what its text promises."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "demos"))
try:
    import build_notebooks as demos
finally:
    sys.path.remove(str(ROOT / "demos"))

# Per notebook: lines its outputs must contain (regular expressions, multiline).
EXPECTED = {
    "attribute_demo": [
        r"^targets: \[\('Ludus', 0\.\d+\)",
        r"^read back equal: True$",
        r"^the viewer lists: \[\('file__mosho', ",
    ],
    "intervention_demo": [
        r"^ablated, answer: (?!Ludus)",
        r"^direct effects match the graph: True$",
        r"^swapped answer: (\S+) \(donor's capital: \1\)$",
        r"^steered: .*lives is (?!Ludus)\w+",
    ],
}


def _text(nb) -> str:
    return "\n".join(demos.output_text(c) for c in nb.cells if c.cell_type == "code")


def _has_image(nb) -> bool:
    return any(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


def test_every_notebook_has_its_checks():
    assert set(EXPECTED) == set(demos.NOTEBOOKS)


@pytest.mark.parametrize("name", demos.NOTEBOOKS)
def test_committed_notebook_is_its_source_executed(name):
    path = demos.notebook_path(name)
    assert path.exists(), f"run: python demos/build_notebooks.py --execute {name}"
    saved = nbformat.read(path, as_version=4)
    built = demos.build(name)
    assert [(c.cell_type, c.source) for c in saved.cells] == [
        (c.cell_type, c.source) for c in built.cells
    ], f"{name} is not up to date: python demos/build_notebooks.py --execute {name}"
    silent = [i for i, c in enumerate(saved.cells) if c.cell_type == "code" and not c.outputs]
    assert not silent, f"code cells without outputs (not executed?): {silent}"
    assert demos.problems(saved) == []
    assert _has_image(saved), "no figure"
    text = _text(saved)
    for pattern in EXPECTED[name]:
        assert re.search(pattern, text, re.M), pattern


@pytest.mark.slow
@pytest.mark.parametrize("name", demos.NOTEBOOKS)
def test_notebook_runs(name, tmp_path):
    nb = demos.build(name)
    demos.execute(nb, tmp_path)  # raises CellExecutionError on the first failing cell
    assert demos.problems(nb) == []
    silent = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not c.outputs]
    assert not silent, f"code cells without outputs: {silent}"
    assert _has_image(nb)
    text = _text(nb)
    for pattern in EXPECTED[name]:
        assert re.search(pattern, text, re.M), pattern
