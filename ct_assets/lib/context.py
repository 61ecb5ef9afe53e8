"""Partition keys in Dagster's terms, and what every model × prompt asset reads first.

A model × prompt partition is a ``dg.MultiPartitionKey`` of the dimensions ``model`` and
``prompt``; :func:`multi_key` builds one from a ``(model, prompt)`` pair (validated by
:func:`ct_lake.keys.partition_key`), :func:`model_prompt` takes one apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from ct_assets.lib.resources import LakehouseResource
from ct_engine.graph.cache import load_graph
from ct_lake import records
from ct_lake.config import LakehouseConfig, ModelEntry
from ct_lake.keys import MODEL_DIMENSION, PROMPT_DIMENSION, partition_key
from ct_lake.lake import Lake
from ct_lake.paths import GRAPH_FILE, GRAPHS
from ct_lake.prompts import prompt_text


def multi_key(model: str, prompt: str) -> dg.MultiPartitionKey:
    """The partition of ``(model key, prompt key)``."""
    model, prompt = partition_key(model, prompt)
    return dg.MultiPartitionKey({MODEL_DIMENSION: model, PROMPT_DIMENSION: prompt})


def model_prompt(key: dg.MultiPartitionKey | str) -> tuple[str, str]:
    """``(model key, prompt key)`` of a model × prompt partition key."""
    if not isinstance(key, dg.MultiPartitionKey):
        from ct_assets.defs.partitions import model_prompt_partitions

        key = model_prompt_partitions.get_partition_key_from_str(str(key))
    dims = key.keys_by_dimension
    return partition_key(dims[MODEL_DIMENSION], dims[PROMPT_DIMENSION])


@dataclass(frozen=True)
class GraphPartition:
    """A model × prompt partition with what its assets read first: the config's model entry
    and the prompt text."""

    key: dg.MultiPartitionKey
    config: LakehouseConfig
    lake: Lake
    entry: ModelEntry
    text: str

    @property
    def keys(self) -> dict[str, str]:
        """The lake partition: ``{"model": ..., "prompt": ...}``."""
        model, prompt = model_prompt(self.key)
        return {"model": model, "prompt": prompt}


def graph_partitions(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):
    """Every partition of the run (one, or a range), in order."""
    config, lake = lakehouse.config, lakehouse.lake
    for key in context.partition_keys:
        model, prompt = model_prompt(key)
        yield GraphPartition(
            key=multi_key(model, prompt),
            config=config,
            lake=lake,
            entry=config.model(model),
            text=prompt_text(lake, prompt),
        )


def read_graph(lake: Lake, keys: dict[str, str]):
    """The partition's attribution graph (``ct_engine.graph.Graph``), read from the lake once
    per process while unchanged and the graph cache holds it.

    A graph read from its file again (a range run whose graphs exceed the cache's budget reads
    each one again for every asset) is given the node influence its ``nodes`` table stored,
    so that pruning and the scores do not compute it once more per asset."""
    return load_graph(
        lake.local_file(GRAPHS, GRAPH_FILE, **keys),
        on_load=lambda graph: records.seed_node_influence(lake, keys, graph),
    )
