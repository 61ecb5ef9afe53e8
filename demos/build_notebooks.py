"""Build the demo notebooks of ``demos/`` from their reviewed sources in ``demos/cells/``.

Each ``demos/cells/<name>.py`` holds ``CELLS``, a list of ``("md" | "code", source)``;
the notebook ``demos/<name>.ipynb`` is generated from it, so review changes there.

    python demos/build_notebooks.py                 # every notebook, code only (no outputs)
    python demos/build_notebooks.py --execute       # ...run in a scratch folder, with outputs
    python demos/build_notebooks.py --execute lakehouse_demo   # one notebook
    python demos/build_notebooks.py --format        # ruff-format the code cells' sources

The committed notebooks are the executed ones (outputs and figures included, so they read on
a code host). ``tests/e2e/test_notebooks.py`` checks that their cells are these sources and
runs each again. Execution uses this interpreter as the kernel, offline, with progress bars
off, and refuses outputs that carry the scratch folder's path, errors or progress bars.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nbclient
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

DEMOS = Path(__file__).resolve().parent
CELLS_DIR = DEMOS / "cells"
NOTEBOOKS = (
    "attribute_demo",
    "intervention_demo",
    "circuit_tracing_tutorial",
    "lakehouse_demo",
    "model_families",
)
KERNEL = "ct-lakehouse-demos"
# The kernel's environment: offline, and no progress bars or download notes in the outputs.
KERNEL_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
    # tqdm.auto's note that ipywidgets is not installed (its bars are off anyway)
    "PYTHONWARNINGS": "ignore:IProgress not found",
}
# What an output must not show: a progress bar, a temporary folder's path.
_PROGRESS = re.compile(r"\d+%\|[^|\n]*\|")
_TEMP_PATH = re.compile(r"(/tmp/|/var/folders/|/private/var/|[A-Za-z]:\\\\Users\\\\)")


def notebook_path(name: str) -> Path:
    return DEMOS / f"{name}.ipynb"


def cells_of(name: str) -> list[tuple[str, str]]:
    """``CELLS`` of ``demos/cells/<name>.py``."""
    path = CELLS_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_demo_cells_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CELLS


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` from its cells, without outputs."""
    return notebook_of(cells_of(name), name)


def notebook_of(cells: list[tuple[str, str]], name: str = "notebook") -> nbformat.NotebookNode:
    """A Python 3 notebook of ``(kind, source)`` cells (kind ``md`` or ``code``), without
    outputs, its cells numbered ``cell-00``, ``cell-01``... so rebuilding changes no id."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in cells:
        if kind not in ("md", "code"):
            raise ValueError(f"{name}: a cell of kind {kind!r} (md or code)")
        nb.cells.append(new_markdown_cell(source) if kind == "md" else new_code_cell(source))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


@contextlib.contextmanager
def _kernel_environment(prefix: Path) -> Iterator[None]:
    """A kernel spec that runs this interpreter (the venv, not whatever ``python`` is on
    PATH), and :data:`KERNEL_ENV`, for the kernels started inside the block."""
    from ipykernel import kernelspec

    kernelspec.install(kernel_name=KERNEL, prefix=str(prefix))
    saved = dict(os.environ)
    os.environ.update(KERNEL_ENV)
    os.environ["JUPYTER_PATH"] = str(prefix / "share" / "jupyter")
    os.environ.pop("MPLBACKEND", None)  # the inline backend draws the figures
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def execute(nb: nbformat.NotebookNode, workdir: Path, timeout: int = 600) -> None:
    """Run ``nb`` in place, top to bottom, with ``workdir`` as its working folder.

    Raises ``nbclient.exceptions.CellExecutionError`` on the first failing cell."""

    with tempfile.TemporaryDirectory(prefix="ct-kernel-") as prefix:
        with _kernel_environment(Path(prefix)):
            client = nbclient.NotebookClient(
                nb,
                timeout=timeout,
                kernel_name=KERNEL,
                record_timing=False,  # no timestamps in the committed notebooks
                resources={"metadata": {"path": str(workdir)}},
            )
            client.execute()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }


def output_text(cell) -> str:
    """The text a code cell shows: its streams, plain-text results and errors."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append("\n".join(out.get("traceback", [])))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
            parts.append(out["data"].get("text/html", ""))
    return "".join(parts)


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """What keeps an executed notebook from being committed: errors, output on stderr,
    progress bars, temporary paths."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                found.append(f"cell {i}: writes to stderr: {out.get('text', '')[:200]!r}")
        text = output_text(cell)
        if _PROGRESS.search(text):
            found.append(f"cell {i}: a progress bar in its output")
        match = _TEMP_PATH.search(text)
        if match:
            start = max(0, match.start() - 60)
            found.append(
                f"cell {i}: a temporary path in its output: {text[start : match.end() + 60]!r}"
            )
    return found


def format_sources(name: str) -> bool:
    """Rewrite the code cells of ``demos/cells/<name>.py`` as ``ruff format`` lays them out
    (the notebooks are checked by ``ruff format --check .``); True when something changed."""
    import subprocess

    path = CELLS_DIR / f"{name}.py"
    text = path.read_text()
    with tempfile.TemporaryDirectory(prefix="ct-format-") as scratch:
        nb_path = Path(scratch) / f"{name}.ipynb"
        nbformat.write(build(name), nb_path)
        subprocess.run(
            [sys.executable, "-m", "ruff", "format", "-q", str(nb_path)],
            check=True,
            cwd=DEMOS.parent,  # the project's ruff settings
        )
        formatted = nbformat.read(nb_path, as_version=4)
    for old, new in zip(build(name).cells, formatted.cells, strict=True):
        if old.source == new.source:
            continue
        if text.count(old.source) != 1:
            raise ValueError(f"{path.name}: cannot find one copy of the cell {old.source[:60]!r}")
        text = text.replace(old.source, new.source)
    changed = text != path.read_text()
    if changed:
        path.write_text(text)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"notebooks (default: all of {NOTEBOOKS})")
    parser.add_argument(
        "--execute", action="store_true", help="run each and write it with its outputs"
    )
    parser.add_argument(
        "--format", action="store_true", help="ruff-format the sources' code cells first"
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in NOTEBOOKS]
    if unknown:
        parser.error(f"unknown notebooks {unknown}; known: {', '.join(NOTEBOOKS)}")
    status = 0
    for name in args.names or NOTEBOOKS:
        if args.format and format_sources(name):
            print(f"formatted demos/cells/{name}.py")
        nb = build(name)
        if args.execute:
            start = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix=f"ct-{name}-") as workdir:
                try:
                    execute(nb, Path(workdir))
                except nbclient.exceptions.CellExecutionError as err:
                    print(f"{name}: not written: {err}", file=sys.stderr)
                    status = 1
                    continue
            found = problems(nb)
            if found:
                print(f"{name}: not written:", *found, sep="\n  ", file=sys.stderr)
                status = 1
                continue
            print(f"{name}: executed in {time.perf_counter() - start:.0f} s")
        nbformat.write(nb, notebook_path(name))
        print(f"wrote {notebook_path(name).relative_to(DEMOS.parent)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
