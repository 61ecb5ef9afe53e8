"""Materialize the lakehouse for a model and some prompts, in this process.

``ct materialize`` and the tests use this: it registers the prompts, then runs the project's
own jobs (``ct_assets/defs/jobs.py``): ``model_job`` for the model, ``graph_job`` once per
contiguous range of the prompt partitions (one run over a partition range: the model loads
once) and ``census_job``. Every run is recorded in the Dagster instance (it shows in the UI)
and gets the same engine resource, so the model loads once per process.
"""

from __future__ import annotations

import time
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


def chunks(ranges: list[tuple[str, str]], order: list[str], size: int) -> list[tuple[str, str]]:
    """Split each contiguous ``(first, last)`` range of ``order`` into ranges of at most
    ``size`` keys."""
    out = []
    for first, last in ranges:
        keys = order[order.index(first) : order.index(last) + 1]
        out.extend(
            (part[0], part[-1]) for part in (keys[i : i + size] for i in range(0, len(keys), size))
        )
    return out


def materialize_on_workers(
    config: LakehouseConfig,
    model: str,
    prompts: list[str],
    instance: dg.DagsterInstance,
    *,
    dagster_url: str,
    partitions_per_run: int = 5,
    with_model_assets: bool = True,
    poll_s: float = 2.0,
    progress=None,
) -> MaterializeSummary:
    """The team profile's :func:`materialize`: the same jobs, submitted to the Dagster
    webserver at ``dagster_url`` (as the UI's launch button does), queued by the instance's run
    coordinator and started by the daemon; their steps run on the Celery workers. Graph runs
    cover at most ``partitions_per_run`` prompts each, so that the workers share the graphs;
    they all wait in the queue together. Returns when every run has finished; ``progress``
    (a callable taking one line) hears of each run's end."""
    from urllib.parse import urlsplit

    from dagster_graphql import DagsterGraphQLClient

    url = urlsplit(dagster_url)
    client = DagsterGraphQLClient(url.hostname or "127.0.0.1", port_number=url.port, timeout=60)
    registered = register_prompts(config, prompts, [model], instance)
    order = instance.get_dynamic_partitions(PROMPTS_PARTITIONS)
    run_ids: list[str] = []
    say = progress or (lambda line: None)

    def submit(job: str, tags: dict[str, str]) -> str:
        run_id = client.submit_job_execution(job, tags=tags)
        run_ids.append(run_id)
        return run_id

    def wait(pending: list[str]) -> None:
        pending = list(pending)
        while pending:
            for run_id in list(pending):
                run = instance.get_run_by_id(run_id)
                if run is not None and run.is_finished:
                    pending.remove(run_id)
                    say(f"{run.job_name} {run_id[:8]}: {run.status.value.lower()}")
            if pending:
                time.sleep(poll_s)

    if with_model_assets:
        wait([submit("model_job", {"dagster/partition": model})])
    ranges = chunks(contiguous_ranges(list(registered.prompts), order), order, partitions_per_run)
    wait(
        [
            submit("graph_job", {RANGE_START: multi_key(model, a), RANGE_END: multi_key(model, b)})
            for a, b in ranges
        ]
    )
    wait([submit("census_job", {"dagster/partition": model})])
    runs = [instance.get_run_by_id(run_id) for run_id in run_ids]
    return MaterializeSummary(
        model=model,
        partition_keys=[multi_key(m, p) for m, p in registered.partitions],
        run_ids=run_ids,
        success=all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs),
    )
