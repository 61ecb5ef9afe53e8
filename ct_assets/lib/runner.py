"""Materialize the lakehouse for a model and some prompts, in this process.

``ct materialize`` and the tests use this: it registers the prompts, then runs the project's
own jobs (``ct_assets/defs/jobs.py``): ``model_job`` for the model, ``graph_job`` once per
contiguous range of the prompt partitions (one run over a partition range: the model loads
once) and ``census_job``. Every run is recorded in the Dagster instance (it shows in the UI)
and gets the same engine resource, so the model loads once per process.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import dagster as dg

from ct_assets.lib.context import multi_key
from ct_assets.lib.resources import EngineResource, lakehouse_resources
from ct_lake.config import LakehouseConfig
from ct_lake.keys import PROMPTS_PARTITIONS
from ct_lake.prompts import register_prompts

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dataclass
class MaterializeSummary:
    model: str
    partition_keys: list[dg.MultiPartitionKey]
    run_ids: list[str]
    success: bool


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


def project_definitions() -> dg.Definitions:
    """The project's definitions (``ct_assets/defs/``), as ``dagster dev`` loads them."""
    from ct_assets.definitions import defs

    return defs()


def materialize(
    config: LakehouseConfig,
    model: str,
    prompts: list[str],
    instance: dg.DagsterInstance,
    *,
    with_model_assets: bool = True,
    raise_on_error: bool = True,
    engine: EngineResource | None = None,
) -> MaterializeSummary:
    """Register ``prompts`` for ``model`` and run ``model_job`` (unless
    ``with_model_assets`` is False), ``graph_job`` over the prompts' partition ranges and
    ``census_job``, with the lakehouse of ``config`` and ``engine`` (default: a new one,
    shared by these runs)."""
    resources = lakehouse_resources(str(config.path), engine or EngineResource())
    registered = register_prompts(config, prompts, [model], instance)
    order = instance.get_dynamic_partitions(PROMPTS_PARTITIONS)
    definitions = project_definitions()
    results = []

    def run(job: str, **kwargs) -> None:
        results.append(
            definitions.resolve_job_def(job).execute_in_process(
                instance=instance, resources=resources, raise_on_error=raise_on_error, **kwargs
            )
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.BetaWarning)
        warnings.simplefilter("ignore", category=dg.PreviewWarning)
        if with_model_assets:
            run("model_job", partition_key=model)
        for first, last in contiguous_ranges(list(registered.prompts), order):
            tags = {RANGE_START: multi_key(model, first), RANGE_END: multi_key(model, last)}
            run("graph_job", tags=tags)
        run("census_job", partition_key=model)
    return MaterializeSummary(
        model=model,
        partition_keys=[multi_key(m, p) for m, p in registered.partitions],
        run_ids=[r.run_id for r in results],
        success=all(r.success for r in results),
    )
