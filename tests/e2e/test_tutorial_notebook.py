"""The toy world tutorial notebook runs top to bottom and its steering changes the answer."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from ct_engine.toyworld.default_model import DEFAULT_MODEL_DIR

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "demos" / "toy_world_tutorial.ipynb"
KERNEL = "ct-lakehouse-tutorial"

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "model.safetensors").exists()
    or not (DEFAULT_MODEL_DIR.parent / "plt" / "config.yaml").exists(),
    reason="toy model or its transcoders not built",
)


def _outputs(cell) -> str:
    text = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            text.append(out.get("text", ""))
        elif "data" in out:
            text.append(out["data"].get("text/plain", ""))
    return "".join(text)


def test_notebook_is_built_from_its_script_with_outputs_cleared():
    nbformat = pytest.importorskip("nbformat")
    sys.path.insert(0, str(ROOT / "demos"))
    try:
        from build_tutorial import build
    finally:
        sys.path.remove(str(ROOT / "demos"))
    saved = nbformat.read(NOTEBOOK, as_version=4)
    assert [c.source for c in saved.cells] == [c.source for c in build().cells]
    assert all(not c.get("outputs") for c in saved.cells if c.cell_type == "code")


def test_tutorial_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    kernelspec = pytest.importorskip("ipykernel.kernelspec")

    # A kernel spec that runs this interpreter (the venv), not whatever `python` is on PATH.
    kernelspec.install(kernel_name=KERNEL, prefix=str(tmp_path))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the inline backend draws the figure

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name=KERNEL, resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
    text = "\n".join(_outputs(c) for c in nb.cells if c.cell_type == "code")
    clean = re.search(r"^clean answer: (\S+)", text, re.M)
    steered = re.search(r"^steered answer: (\S+)", text, re.M)
    expected = re.search(r"^expected \(donor's capital\): (\S+)", text, re.M)
    assert clean and steered and expected, text[-2000:]
    assert clean.group(1) == "Ludus"
    assert steered.group(1) != clean.group(1)
    assert steered.group(1) == expected.group(1)
    # the generated continuation follows the steering
    assert re.search(rf"^steered: .*{re.escape(expected.group(1))}", text, re.M)
