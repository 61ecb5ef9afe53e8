"""A lake's files, folders, tables and catalog get the usual permissions under the umask:
``0644``/``0755`` under ``022``, ``0600``/``0700`` under ``077``, whatever private temporary
file or folder the atomic write went through."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ct_lake import catalog
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake
from tests.umask import CASES, mode, modes, umask

PROMPT = prompt_key("one")


@pytest.mark.parametrize(("mask", "file_mode", "folder_mode"), CASES)
def test_lake_files_have_the_usual_mode(tmp_path, mask, file_mode, folder_mode):
    lake = Lake(tmp_path / "lake")
    source = tmp_path / "plot.svg"
    source.write_text("<svg/>")
    source.chmod(0o600)  # a private source file: the stored copy still gets the usual mode
    with umask(mask):
        from_bytes = Path(lake.write_file("graphs", "g.json", b"{}", model="m", prompt=PROMPT))
        from_path = Path(lake.write_file("plots", "p.svg", source, model="m", prompt=PROMPT))
    assert (mode(from_bytes), mode(from_path)) == (file_mode, file_mode)
    assert from_bytes.read_bytes() == b"{}" and from_path.read_text() == "<svg/>"


@pytest.mark.parametrize(("mask", "file_mode", "folder_mode"), CASES)
def test_a_lake_tree_has_the_usual_modes(tmp_path, mask, file_mode, folder_mode):
    """The assets build a tree in a private scratch folder (``TemporaryDirectory``: ``0700``)."""
    lake = Lake(tmp_path / "lake")
    with umask(mask), tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        (Path(scratch) / "layers").mkdir(mode=0o700)
        (Path(scratch) / "config.yaml").write_text("a: 1\n")
        (Path(scratch) / "layers" / "layer_0.safetensors").write_bytes(b"x")
        (Path(scratch) / "layers" / "layer_0.safetensors").chmod(0o600)
        stored = Path(lake.write_tree("transcoders", "set", Path(scratch), model="m"))
        lake.write_tree("transcoders", "set", Path(scratch), model="m")  # a replacement too
    assert modes(stored) == {
        ".": folder_mode,
        "config.yaml": file_mode,
        "layers": folder_mode,
        "layers/layer_0.safetensors": file_mode,
    }


@pytest.mark.parametrize(("mask", "file_mode", "folder_mode"), CASES)
def test_tables_and_the_catalog_file_have_the_usual_modes(tmp_path, mask, file_mode, folder_mode):
    rng = np.random.default_rng(0)
    edges = pa.table(
        {
            "target": rng.integers(0, 50, 4, dtype=np.int32),
            "source": rng.integers(0, 50, 4, dtype=np.int32),
            "weight": rng.standard_normal(4, dtype=np.float32),
        }
    )
    with umask(mask):
        lake = Lake(tmp_path / "lake")
        lake.write_table("edges", edges, model="m", prompt=PROMPT)
        path = catalog.write_catalog_file(lake, tmp_path / "catalog.duckdb")
    assert mode(path) == file_mode
    found = modes(tmp_path / "lake" / "edges")
    files = {name: m for name, m in found.items() if (tmp_path / "lake/edges" / name).is_file()}
    folders = {name: m for name, m in found.items() if name not in files}
    assert any(name.endswith(".parquet") for name in files)
    assert any(name.startswith("_delta_log/") for name in files)
    assert set(files.values()) == {file_mode}
    assert set(folders.values()) == {folder_mode}
