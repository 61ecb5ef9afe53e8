"""Per-partition inputs shared by the assets: the config entry, the prompt text, the model."""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from ct_assets.lib.config import LakehouseConfig, ModelEntry
from ct_assets.lib.keys import split_partition_key
from ct_assets.lib.lake import Lake
from ct_assets.lib.resources import EngineResource, LakehouseResource
from ct_engine.graph import Graph

TRANSCODER_DIR = "transcoders"


@dataclass
class PartitionInputs:
    key: str
    model_key: str
    prompt_key: str
    config: LakehouseConfig
    lake: Lake
    entry: ModelEntry
    prompt: str


def prompt_text(lake: Lake, key: str) -> str:
    """The text registered for prompt ``key`` in the lake's ``prompts`` table."""
    if not lake.has_partition("prompts", prompt=key):
        raise ValueError(
            f"prompt {key} is not registered in the lake {lake.root}: add it with "
            "`ct prompts add TEXT --model MODEL` (or the register_prompt job)"
        )
    return lake.read_table("prompts", prompt=key).column("text")[0].as_py()


def partition_inputs(lakehouse: LakehouseResource, key) -> PartitionInputs:
    model_key, prompt_key = split_partition_key(key)
    config = lakehouse.config
    lake = Lake(config.lake)
    return PartitionInputs(
        key=str(key),
        model_key=model_key,
        prompt_key=prompt_key,
        config=config,
        lake=lake,
        entry=config.model(model_key),
        prompt=prompt_text(lake, prompt_key),
    )


def cached_transcoders(lake: Lake, model_key: str) -> str | None:
    """The lake's converted copy of a model's transcoders, if ``transcoder_cache`` ran."""
    path = lake.file_path(TRANSCODER_DIR, "set", model=model_key)
    return str(path) if (path / "config.yaml").exists() else None


def load_model(engine: EngineResource, lake: Lake, entry: ModelEntry):
    return engine.model(entry, transcoders=cached_transcoders(lake, entry.name))


# Graphs read in this process, keyed by file identity. The assets downstream of
# attribution_graph all read the same files, and a range run executes them in one process,
# each asset looping over every partition: the cache holds graphs up to a memory budget
# (CT_GRAPH_CACHE_MB, default 2048) so that each graph is read at most once per run.
_GRAPHS: OrderedDict[tuple, tuple[Graph, int]] = OrderedDict()


def _budget_bytes() -> int:
    return int(float(os.environ.get("CT_GRAPH_CACHE_MB", "2048")) * 2**20)


def _key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _graph_bytes(graph: Graph) -> int:
    A = graph.adjacency_matrix
    if A.layout == torch.sparse_coo:
        size = A._indices().nbytes + A._values().nbytes
    elif A.layout == torch.strided:
        size = A.nbytes
    else:
        size = A.values().nbytes * 3
    return size + graph.active_features.nbytes + graph.activation_values.nbytes


def remember_graph(path: Path, graph: Graph) -> None:
    """Put a graph just written to ``path`` in the cache (the next asset skips the read)."""
    _GRAPHS[_key(path)] = (graph, _graph_bytes(graph))
    _GRAPHS.move_to_end(_key(path))
    while len(_GRAPHS) > 1 and sum(size for _, size in _GRAPHS.values()) > _budget_bytes():
        _GRAPHS.popitem(last=False)


def load_graph(path: Path) -> Graph:
    """``Graph.load(path)``, cached while the file is unchanged (path, size, mtime)."""
    key = _key(path)
    if key not in _GRAPHS:
        remember_graph(path, Graph.load(path))
    _GRAPHS.move_to_end(key)
    return _GRAPHS[key][0]
