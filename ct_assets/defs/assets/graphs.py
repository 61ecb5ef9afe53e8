"""Attribution graphs, their pruning and their scores, per model × prompt.

Each asset reads its inputs from the lake, makes one engine call and stores one record per
partition (:mod:`ct_lake.records`); :func:`ct_assets.lib.steps.report` derives the Dagster
metadata, MLflow params and metrics from the record.
"""

import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import torch

from ct_assets.defs.partitions import model_prompt_partitions, per_model
from ct_assets.lib.context import graph_partitions, read_graph
from ct_assets.lib.graph_cache import pruned as pruned_once
from ct_assets.lib.plots import plot_pruned_graph
from ct_assets.lib.profiles import CPU_QUEUE, GPU_QUEUE, step_tags
from ct_assets.lib.resources import EngineResource, LakehouseResource
from ct_assets.lib.steps import CODE_VERSION, Result, report, tracking_check_spec
from ct_assets.lib.tracking import MlflowTracker
from ct_engine.graph.cache import remember_graph
from ct_lake import records
from ct_lake.paths import GRAPH_FILE, GRAPHS

_COMMON = dict(
    partitions_def=model_prompt_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="graphs",
)


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dg.asset(
    **_COMMON,
    pool="gpu",
    op_tags=step_tags(GPU_QUEUE),
    kinds={"pytorch", "parquet"},
    deps=[dg.AssetDep("transcoder_cache", partition_mapping=per_model)],
    check_specs=[tracking_check_spec("attribution_graph")],
)
def attribution_graph(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    engine: EngineResource,
    tracker: MlflowTracker,
) -> Iterator[dg.MaterializeResult]:
    """The attribution graph of the prompt on the model's replacement model.

    Tables ``nodes``, ``edges`` (sparse: target, source, weight; no zeros), ``logit_targets``,
    ``active_features`` and ``graphs`` (one summary row with timings per phase); the graph
    itself as safetensors for the downstream assets.
    """
    from ct_engine import attribute

    results = []
    for p in graph_partitions(context, lakehouse):
        settings = p.config.attribution
        start = time.perf_counter()
        model = engine.model(p.entry, p.lake)
        load_s = time.perf_counter() - start
        graph = attribute(
            p.text,
            model,
            max_n_logits=settings.max_n_logits,
            desired_logit_prob=settings.desired_logit_prob,
            batch_size=p.entry.batch_size,
            max_feature_nodes=settings.max_feature_nodes,
            verbose=engine.verbose,
        )
        # Stored sparsely: the edges are a small share of the N × N entries.
        graph.adjacency_matrix = graph.adjacency_matrix.to_sparse_coo().coalesce()
        with tempfile.TemporaryDirectory() as scratch:
            graph.save(Path(scratch) / GRAPH_FILE)
            record = records.attribution_record(
                p.keys,
                graph,
                model.tokenizer,
                Path(scratch) / GRAPH_FILE,
                text=p.text,
                entry=p.entry,
                settings=settings,
                backend=model.backend,
                timings={"load_model": load_s, **{k: float(v) for k, v in graph.timings.items()}},
                peak_memory_mb=_peak_memory_mb(),
                run_id=context.run.run_id,
                code_version=CODE_VERSION,
            )
            records.store(p.lake, record)
        remember_graph(p.lake.local_file(GRAPHS, GRAPH_FILE, **p.keys), graph)
        results.append(Result(p.key, record, text=p.text))
    yield from report(context, lakehouse, tracker, results)


@dg.asset(
    **_COMMON,
    op_tags=step_tags(CPU_QUEUE),
    kinds={"pytorch", "parquet"},
    deps=["attribution_graph"],
    check_specs=[tracking_check_spec("pruned_graph")],
)
def pruned_graph(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tracker: MlflowTracker
) -> Iterator[dg.MaterializeResult]:
    """The graph pruned by node and edge influence: tables ``pruned_nodes`` (node mask and
    cumulative influence share) and ``pruned_edges`` (kept edges), plus a picture."""
    results = []
    for p in graph_partitions(context, lakehouse):
        graph = read_graph(p.lake, p.keys)
        tokens = p.lake.read_table("graphs", **p.keys).column("tokens")[0].as_py()
        settings = p.config.pruning
        pruned = pruned_once(graph, settings.node_threshold, settings.edge_threshold)
        weights = pruned.edge_mask.values_in(graph.adjacency_matrix)
        with tempfile.TemporaryDirectory() as scratch:
            picture = plot_pruned_graph(
                graph, pruned, Path(scratch) / "pruned.png", weights, title=p.text, tokens=tokens
            )
            record = records.pruned_record(p.keys, graph, pruned, weights, settings, picture)
            records.store(p.lake, record)
        results.append(Result(p.key, record, text=p.text))
    yield from report(context, lakehouse, tracker, results)


GOLDEN_CHECK = "golden_drift"
_GOLDEN_SEVERITY = {"warn": dg.AssetCheckSeverity.WARN, "error": dg.AssetCheckSeverity.ERROR}


def _golden_drift(p) -> dict[str, tuple]:
    """The ``golden_drift`` check of one partition: ``{GOLDEN_CHECK: (passed, metadata,
    severity)}``, or nothing for a partition outside the golden set or without a baseline
    (not compared: Dagster shows the check skipped, so that passed means compared).

    Compares the partition's graph (as the lake now holds it) with its baseline in
    ``ct_assets/golden/baselines/``; thresholds in :mod:`ct_assets.lib.golden`. A golden set
    or baseline that cannot be read fails the check (ERROR) rather than the asset.
    """
    from ct_assets.lib.golden import SKIP, golden_check

    try:
        severity, details = golden_check(p.config, p.lake, p.key)
    except (ValueError, OSError, KeyError) as err:
        severity, details = "error", {"error": f"{type(err).__name__}: {err}"}
    if severity == SKIP:
        return {}
    metadata = {
        k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v for k, v in details.items()
    }
    return {GOLDEN_CHECK: (severity == "pass", metadata, _GOLDEN_SEVERITY.get(severity))}


_SCORES_DOC = """Replacement and completeness scores of the graph, unpruned and pruned (pruned
features folded into error nodes), and the share of influence that ends in error nodes. Table
``scores`` holds the latest; ``score_history`` keeps every run's."""


# A multi-asset of one asset only for ``can_subset``: it makes the check outputs optional, so
# that a run whose prompts are all outside the golden set reports no ``golden_drift`` result
# and Dagster shows the check skipped (``@dg.asset`` requires every check's result).
@dg.multi_asset(
    name="graph_scores",
    specs=[
        dg.AssetSpec(
            "graph_scores",
            deps=["pruned_graph"],
            kinds={"pytorch", "parquet"},
            group_name=_COMMON["group_name"],
            description=_SCORES_DOC,
        )
    ],
    partitions_def=_COMMON["partitions_def"],
    backfill_policy=_COMMON["backfill_policy"],
    op_tags=step_tags(CPU_QUEUE),
    can_subset=True,
    check_specs=[
        tracking_check_spec("graph_scores"),
        dg.AssetCheckSpec(
            GOLDEN_CHECK,
            asset="graph_scores",
            description="the graph agrees with its golden baseline (ct_assets/golden/): "
            "WARN on small drift, ERROR on large; skipped for prompts outside the golden set "
            "or without a baseline",
        ),
    ],
)
def graph_scores(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tracker: MlflowTracker
) -> Iterator[dg.MaterializeResult]:
    """The scores of each graph (see ``_SCORES_DOC``)."""
    from ct_engine.graph import compute_graph_scores, compute_pruned_graph_scores

    results = []
    for p in graph_partitions(context, lakehouse):
        graph = read_graph(p.lake, p.keys)
        kept = p.lake.read_table("pruned_nodes", **p.keys).column("kept").to_numpy(False)
        influence = p.lake.read_table("nodes", **p.keys).column("influence").to_numpy()
        n_edges_kept = p.lake.read_table("pruned_edges", **p.keys).num_rows
        node_mask = torch.from_numpy(kept.astype(bool))
        scores = (
            *compute_graph_scores(graph),
            *compute_pruned_graph_scores(graph, node_mask),
        )
        record = records.scores_record(
            p.keys,
            graph,
            scores,
            influence,
            kept,
            n_edges_kept,
            p.config.pruning,
            context.run.run_id,
        )
        records.store(p.lake, record)
        results.append(Result(p.key, record, checks=_golden_drift(p), text=p.text))
    yield from report(context, lakehouse, tracker, results, check_names=(GOLDEN_CHECK,))
