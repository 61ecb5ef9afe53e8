"""A small real lake for the viewer tests: the tiny model's 2 prompts (a copy of the session's
``tiny_lake_template``), plus a folder with one JSON graph file (a copy of a lake graph's
viewer file)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.assets.conftest import PROMPTS, write_config  # noqa: F401
from tests.conftest import copy_tiny_lake
from tests.s3server import s3_server, s3_uri  # noqa: F401


@dataclass
class ViewerLake:
    config: object  # LakehouseConfig
    files_dir: Path  # one JSON graph: file__copy (the second prompt's graph)
    ids: list[str]  # lake graph ids, in PROMPTS order


@pytest.fixture(scope="session")
def viewer_lake(tmp_path_factory, tiny_lake_template) -> ViewerLake:
    from ct_lake.config import load_config
    from ct_lake.keys import prompt_key
    from ct_lake.paths import GRAPH_FILES, graph_slug

    folder = tmp_path_factory.mktemp("viewer-lakehouse")
    config = load_config(copy_tiny_lake(tiny_lake_template, folder / "lakehouse"))
    ids = [graph_slug("tiny", prompt_key(p)) for p in PROMPTS]
    files_dir = folder / "graph-files"
    files_dir.mkdir()
    source = config.lake / "files" / GRAPH_FILES / "model=tiny" / f"{ids[1]}.json"
    shutil.copy(source, files_dir / "copy.json")
    return ViewerLake(config, files_dir, ids)
