"""The demo notebooks: committed as built from ``demos/cells/`` and executed (each code cell
that prints, draws or ends in an expression shows it, a figure at least, nothing on stderr,
no temporary paths), and each runs again, offline, in a scratch folder, showing what its
text promises."""

from __future__ import annotations

import ast
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
    "circuit_tracing_tutorial": [
        r"^the answer: Ludus ",
        r"^L\d #\d+ fires most for the people of Soubathia$",
        r"^\(Mosho lives in Soubathia\)$",
    ],
    "model_families": [
        rf"^{family}: .* feature nodes attributed, oracle ok$"
        for family in ("Gemma-2", "Llama-3.2", "Qwen-3", "Gemma-3", "GPT-OSS")
    ],
    "lakehouse_demo": [
        r"^success: True$",
        r"^graphs in the lake: 3$",
        r"^\d+ ablations; the direct effects are the predicted ones: True$",
        r"^the viewer lists 3 graphs$",
        r"^5 runs, of which 3 for graphs$",
    ],
}


def _text(nb) -> str:
    return "\n".join(demos.output_text(c) for c in nb.cells if c.cell_type == "code")


def _silent(nb) -> list[int]:
    """Code cells that print, draw or end in an expression, yet show nothing."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or cell.get("outputs"):
            continue
        body = ast.parse(cell.source).body
        ends_in_expression = bool(body) and isinstance(body[-1], ast.Expr)
        if ends_in_expression or "print(" in cell.source or "plt.show()" in cell.source:
            found.append(i)
    return found


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
    assert not _silent(saved), "code cells without their outputs: not executed?"
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
    assert not _silent(nb)
    assert _has_image(nb)
    text = _text(nb)
    for pattern in EXPECTED[name]:
        assert re.search(pattern, text, re.M), pattern
