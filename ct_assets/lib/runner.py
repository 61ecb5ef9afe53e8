"""Materialize the lakehouse for a model and some prompts, in this process.

``ct materialize`` and the tests use this: it registers the prompts, then runs the per-model
assets, one run over the model's prompt partitions for the graph assets (a partition range:
the model is loaded once), and the census, all recorded in the Dagster instance (so the runs
show in the UI).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from ct_lake.config import LakehouseConfig
from ct_lake.keys import PROMPTS_PARTITIONS, partition_key
from ct_lake.prompts import register_prompts

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dataclass
class MaterializeSummary:
    model: str
    partition_keys: list[str]
    run_ids: list[str]
    success: bool


def model_assets():
    from ct_assets.defs.assets.transcoders import transcoder_cache, transcoder_quality

    return [transcoder_cache, transcoder_quality]


def graph_assets():
    from ct_assets.defs.assets.files import graph_files
    from ct_assets.defs.assets.graphs import attribution_graph, graph_scores, pruned_graph
    from ct_assets.defs.assets.interventions import intervention_results

    return [attribution_graph, pruned_graph, graph_scores, intervention_results, graph_files]


def census_assets():
    from ct_assets.defs.assets.census import feature_census

    return [feature_census]


def contiguous_ranges(selected: list[str], order: list[str]) -> list[tuple[str, str]]:
    """Split ``selected`` keys into runs that are contiguous in ``order``: ``(first, last)``."""
    index = sorted(order.index(k) for k in set(selected))
    ranges, start = [], None
    for i, position in enumerate(index):
        if start is None:
            start = position
        if i + 1 == len(index) or index[i + 1] != position + 1:
            ranges.append((order[start], order[position]))
            start = None
    return ranges


def materialize(
    config: LakehouseConfig,
    model: str,
    prompts: list[str],
    instance,
    *,
    with_model_assets: bool = True,
    raise_on_error: bool = True,
) -> MaterializeSummary:
    """Register ``prompts`` for ``model`` and materialize every asset for them."""
    import dagster as dg

    from ct_assets.lib.resources import EngineResource, LakehouseResource
    from ct_assets.lib.tracking import MlflowTracker

    path = str(config.path)
    resources = {
        "lakehouse": LakehouseResource(config_path=path),
        "engine": EngineResource(),
        "tracker": MlflowTracker(config_path=path),
    }
    registered = register_prompts(config, prompts, [model], instance)
    order = instance.get_dynamic_partitions(PROMPTS_PARTITIONS)
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.BetaWarning)
        warnings.simplefilter("ignore", category=dg.PreviewWarning)
        if with_model_assets:
            results.append(
                dg.materialize(
                    model_assets(),
                    partition_key=model,
                    instance=instance,
                    resources=resources,
                    raise_on_error=raise_on_error,
                )
            )
        for first, last in contiguous_ranges(list(registered.prompts), order):
            tags = {RANGE_START: partition_key(model, first), RANGE_END: partition_key(model, last)}
            results.append(
                dg.materialize(
                    graph_assets(),
                    instance=instance,
                    resources=resources,
                    tags=tags,
                    raise_on_error=raise_on_error,
                )
            )
        results.append(
            dg.materialize(
                census_assets(),
                partition_key=model,
                instance=instance,
                resources=resources,
                raise_on_error=raise_on_error,
            )
        )
    return MaterializeSummary(
        model=model,
        partition_keys=registered.partition_keys,
        run_ids=[r.run_id for r in results],
        success=all(r.success for r in results),
    )
