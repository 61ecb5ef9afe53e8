"""Per-partition inputs shared by the assets: the config entry, the prompt text, the model."""

from __future__ import annotations

from dataclasses import dataclass

from ct_assets.lib.config import LakehouseConfig, ModelEntry
from ct_assets.lib.keys import split_partition_key
from ct_assets.lib.lake import Lake
from ct_assets.lib.resources import EngineResource, LakehouseResource

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
