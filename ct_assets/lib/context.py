"""Per-partition inputs shared by the assets: the config entry, the prompt text, the model."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

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


# Graphs read in this process, keyed by file identity: the assets downstream of
# attribution_graph all read the same file, and a range run executes them in one process.
_GRAPHS: OrderedDict[tuple, Graph] = OrderedDict()
_GRAPH_CACHE_SIZE = 8


def load_graph(path: Path) -> Graph:
    """``Graph.load(path)``, cached while the file is unchanged (path, size, mtime)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _GRAPHS:
        _GRAPHS[key] = Graph.load(path)
        while len(_GRAPHS) > _GRAPH_CACHE_SIZE:
            _GRAPHS.popitem(last=False)
    _GRAPHS.move_to_end(key)
    return _GRAPHS[key]
