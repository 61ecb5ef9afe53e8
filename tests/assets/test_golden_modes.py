"""A golden baseline is a file to commit: the usual mode under the umask, not mkstemp's 0600."""

from __future__ import annotations

import json

import pytest

from ct_assets.lib.golden import write_baseline
from tests.umask import CASES, mode, umask


@pytest.mark.parametrize(("mask", "file_mode", "folder_mode"), CASES)
def test_a_baseline_has_the_usual_mode(tmp_path, mask, file_mode, folder_mode):
    snapshot = {"model": "m", "features": [{"layer": 0, "feature": 1}], "edges": []}
    with umask(mask):
        path = write_baseline(tmp_path / "golden" / "m" / "p.json", snapshot)
    assert mode(path) == file_mode
    assert mode(path.parent) == folder_mode
    assert json.loads(path.read_text()) == snapshot
