"""Per-partition inputs shared by the assets: the config entry, the prompt text, the model."""

from __future__ import annotations

from dataclasses import dataclass

from ct_assets.lib.resources import EngineResource, LakehouseResource
from ct_lake.config import LakehouseConfig, ModelEntry
from ct_lake.keys import split_partition_key
from ct_lake.lake import Lake
from ct_lake.paths import cached_transcoders
from ct_lake.prompts import prompt_text


@dataclass
class PartitionInputs:
    key: str
    model_key: str
    prompt_key: str
    config: LakehouseConfig
    lake: Lake
    entry: ModelEntry
    prompt: str


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


def load_model(engine: EngineResource, lake: Lake, entry: ModelEntry):
    return engine.model(entry, transcoders=cached_transcoders(lake, entry.name))
