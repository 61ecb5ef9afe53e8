"""Attribution graphs, their pruning and their scores, per model × prompt."""

import resource
import time
from datetime import UTC, datetime

import dagster as dg
import torch

from ct_assets.defs.partitions import model_prompt_partitions, per_model
from ct_assets.lib.context import load_model, partition_inputs
from ct_assets.lib.plots import markdown_image, plot_pruned_graph
from ct_assets.lib.resources import EngineResource, LakehouseResource
from ct_assets.lib.steps import CODE_VERSION, PartitionOutcome, finish, tracking_check_spec
from ct_assets.lib.tracking import MlflowTracker
from ct_lake import records
from ct_lake.graph_cache import load_graph, remember_graph
from ct_lake.paths import graph_path

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
    kinds={"pytorch", "parquet"},
    deps=[dg.AssetDep("transcoder_cache", partition_mapping=per_model)],
    check_specs=[tracking_check_spec("attribution_graph")],
)
def attribution_graph(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    engine: EngineResource,
    tracker: MlflowTracker,
) -> dg.MaterializeResult:
    """The attribution graph of the prompt on the model's replacement model.

    Tables ``nodes``, ``edges`` (sparse: target, source, weight; no zeros), ``logit_targets``,
    ``active_features`` and ``graphs`` (one summary row with timings per phase); the graph
    itself as safetensors for the downstream assets.
    """
    from ct_engine import attribute

    outcomes = []
    for key in context.partition_keys:
        p = partition_inputs(lakehouse, key)
        settings = p.config.attribution
        start = time.perf_counter()
        model = load_model(engine, p.lake, p.entry)
        load_s = time.perf_counter() - start
        graph = attribute(
            p.prompt,
            model,
            max_n_logits=settings.max_n_logits,
            desired_logit_prob=settings.desired_logit_prob,
            batch_size=p.entry.batch_size,
            max_feature_nodes=settings.max_feature_nodes,
            verbose=True,
        )
        # Stored sparsely: the edges are a small share of the N × N entries.
        graph.adjacency_matrix = graph.adjacency_matrix.to_sparse_coo().coalesce()
        graph.save(graph_path(p.lake, p.model_key, p.prompt_key))
        remember_graph(graph_path(p.lake, p.model_key, p.prompt_key), graph)
        keys = dict(model=p.model_key, prompt=p.prompt_key)
        influence = records.node_influence(graph)
        rows, cols, values = graph.nonzero_edges()
        tokens = [model.tokenizer.decode([int(t)]) for t in graph.input_tokens]
        p.lake.write_table("nodes", records.nodes_table(graph, model.tokenizer, influence), **keys)
        p.lake.write_table("edges", records.edges_table(rows, cols, values), **keys)
        p.lake.write_table("logit_targets", records.logit_targets_rows(graph), **keys)
        p.lake.write_table("active_features", records.active_features_table(graph), **keys)
        top = records.logit_targets_rows(graph)[0]
        timings = {"load_model": load_s, **{k: float(v) for k, v in graph.timings.items()}}
        summary = {
            "model_name": p.entry.model,
            "transcoders": p.entry.transcoders,
            "scan": str(graph.scan),
            "backend": model.backend,
            "dtype": p.entry.dtype,
            "n_tokens": graph.n_pos,
            "tokens": tokens,
            "token_ids": graph.input_tokens.tolist(),
            "n_active_features": len(graph.active_features),
            "n_features": graph.n_features,
            "n_nodes": graph.n_nodes,
            "n_edges": len(values),
            "n_targets": graph.n_logits,
            "top_target": top["token"],
            "top_target_prob": top["probability"],
            "max_feature_nodes": settings.max_feature_nodes,
            "batch_size": p.entry.batch_size,
            "timings_s": list(timings.items()),
            "total_s": sum(timings.values()),
            "peak_memory_mb": _peak_memory_mb(),
            "dagster_run_id": context.run_id,
            "code_version": CODE_VERSION,
            "created_at": datetime.now(UTC),
        }
        p.lake.write_table("graphs", [summary], **keys)  # last: the partition's manifest
        outcomes.append(
            PartitionOutcome(
                key=p.key,
                metadata={
                    "prompt": p.prompt,
                    "n_tokens": graph.n_pos,
                    "n_features": graph.n_features,
                    "n_active_features": len(graph.active_features),
                    "n_edges": len(values),
                    "top_target": top["token"],
                    "top_target_prob": top["probability"],
                    "total_s": summary["total_s"],
                    "timings_s": dg.MetadataValue.json(timings),
                    "graph_file": dg.MetadataValue.path(
                        str(graph_path(p.lake, p.model_key, p.prompt_key))
                    ),
                },
                params={
                    "model": p.entry.model,
                    "transcoders": p.entry.transcoders,
                    "scan": graph.scan,
                    "backend": model.backend,
                    "dtype": p.entry.dtype,
                    "batch_size": p.entry.batch_size,
                    "max_n_logits": settings.max_n_logits,
                    "desired_logit_prob": settings.desired_logit_prob,
                    "max_feature_nodes": settings.max_feature_nodes,
                    "prompt": p.prompt,
                    "targets": ", ".join(t.token_str for t in graph.logit_targets),
                },
                metrics={
                    "n_active_features": len(graph.active_features),
                    "n_features": graph.n_features,
                    "n_edges": len(values),
                    "top_target_prob": top["probability"],
                    "peak_memory_mb": summary["peak_memory_mb"],
                    **{f"time_{k}_s": v for k, v in timings.items()},
                },
            )
        )
    return finish(context, tracker, outcomes)


@dg.asset(
    **_COMMON,
    kinds={"pytorch", "parquet"},
    deps=["attribution_graph"],
    check_specs=[tracking_check_spec("pruned_graph")],
)
def pruned_graph(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tracker: MlflowTracker
) -> dg.MaterializeResult:
    """The graph pruned by node and edge influence: tables ``pruned_nodes`` (node mask and
    cumulative influence share) and ``pruned_edges`` (kept edges), plus a picture."""
    from ct_engine.graph import prune_graph

    outcomes = []
    for key in context.partition_keys:
        p = partition_inputs(lakehouse, key)
        keys = dict(model=p.model_key, prompt=p.prompt_key)
        graph = load_graph(graph_path(p.lake, p.model_key, p.prompt_key))
        settings = p.config.pruning
        result = prune_graph(graph, settings.node_threshold, settings.edge_threshold)
        weights = result.edge_mask.values_in(graph.adjacency_matrix)
        p.lake.write_table(
            "pruned_nodes",
            [
                {"node": i, "kept": bool(k), "cumulative_influence": float(c)}
                for i, (k, c) in enumerate(
                    zip(result.node_mask.tolist(), result.cumulative_scores.tolist(), strict=True)
                )
            ],
            **keys,
        )
        p.lake.write_table(
            "pruned_edges",
            records.edges_table(result.edge_mask.rows, result.edge_mask.cols, weights),
            **keys,
        )
        picture = p.lake.file_path("plots", "pruned_graph.png", **keys)
        tokens = p.lake.read_table("graphs", **keys).column("tokens")[0].as_py()
        plot_pruned_graph(graph, result, picture, weights, title=p.prompt, tokens=tokens)
        kept_features = int(result.node_mask[: graph.n_features].sum())
        outcomes.append(
            PartitionOutcome(
                key=p.key,
                metadata={
                    "kept_features": kept_features,
                    "kept_nodes": int(result.node_mask.sum()),
                    "kept_edges": len(result.edge_mask),
                    "picture": dg.MetadataValue.path(str(picture)),
                    "pruned graph": dg.MetadataValue.md(markdown_image(picture, "pruned graph")),
                },
                params={
                    "node_threshold": settings.node_threshold,
                    "edge_threshold": settings.edge_threshold,
                },
                metrics={"kept_features": kept_features, "kept_edges": len(result.edge_mask)},
                artifacts=[picture],
            )
        )
    return finish(context, tracker, outcomes)


GOLDEN_CHECK = "golden_drift"
_GOLDEN_SEVERITY = {"warn": dg.AssetCheckSeverity.WARN, "error": dg.AssetCheckSeverity.ERROR}


def _golden_drift(p) -> tuple:
    """The ``golden_drift`` check of one partition: ``(passed, metadata, severity)``.

    Compares the partition's graph (as the lake now holds it) with its baseline in
    ``ct_assets/golden/baselines/``; thresholds in :mod:`ct_assets.lib.golden`. Passes, with a
    note, for partitions outside the golden set or without a baseline. A golden set or
    baseline that cannot be read fails the check (ERROR) rather than the asset.
    """
    from ct_assets.lib.golden import golden_check

    try:
        severity, details = golden_check(p.config, p.lake, p.key)
    except (ValueError, OSError, KeyError) as err:
        severity, details = "error", {"error": f"{type(err).__name__}: {err}"}
    metadata = {
        k: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v
        for k, v in details.items()
    }
    return severity == "pass", metadata, _GOLDEN_SEVERITY.get(severity)


@dg.asset(
    **_COMMON,
    kinds={"pytorch", "parquet"},
    deps=["pruned_graph"],
    check_specs=[
        tracking_check_spec("graph_scores"),
        dg.AssetCheckSpec(
            GOLDEN_CHECK,
            asset="graph_scores",
            description="the graph agrees with its golden baseline (ct_assets/golden/): "
            "WARN on small drift, ERROR on large; passes outside the golden set",
        ),
    ],
)
def graph_scores(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tracker: MlflowTracker
) -> dg.MaterializeResult:
    """Replacement and completeness scores of the graph, unpruned and pruned (pruned features
    folded into error nodes), and the share of influence that ends in error nodes. Table
    ``scores`` holds the latest; ``score_history`` keeps every run's."""
    from ct_engine.graph import compute_graph_scores, compute_pruned_graph_scores

    outcomes = []
    for key in context.partition_keys:
        p = partition_inputs(lakehouse, key)
        keys = dict(model=p.model_key, prompt=p.prompt_key)
        graph = load_graph(graph_path(p.lake, p.model_key, p.prompt_key))
        kept = p.lake.read_table("pruned_nodes", **keys).column("kept").to_pylist()
        node_mask = torch.tensor(kept, dtype=torch.bool)
        replacement, completeness = compute_graph_scores(graph)
        pruned_replacement, pruned_completeness = compute_pruned_graph_scores(graph, node_mask)
        nodes = p.lake.read_table("nodes", **keys)
        influence = torch.from_numpy(nodes.column("influence").to_numpy())
        non_logit = influence[: graph.logit_slice.start].sum()
        error_share = float(influence[graph.error_slice].sum() / non_logit) if non_logit else 0.0
        n_edges_kept = p.lake.read_table("pruned_edges", **keys).num_rows
        row = {
            "replacement_score": replacement,
            "completeness_score": completeness,
            "pruned_replacement_score": pruned_replacement,
            "pruned_completeness_score": pruned_completeness,
            "error_influence_share": error_share,
            "n_nodes_kept": int(node_mask.sum()),
            "n_edges_kept": n_edges_kept,
            "node_threshold": p.config.pruning.node_threshold,
            "edge_threshold": p.config.pruning.edge_threshold,
            "dagster_run_id": context.run_id,
            "created_at": datetime.now(UTC),
        }
        p.lake.write_table("score_history", [row], **keys, run=context.run_id)
        p.lake.write_table("scores", [row], **keys)
        scores = {k: v for k, v in row.items() if k.endswith(("_score", "_share"))}
        outcomes.append(
            PartitionOutcome(
                key=p.key,
                metadata=dict(scores),
                metrics=dict(scores),
                checks={GOLDEN_CHECK: _golden_drift(p)},
            )
        )
    return finish(context, tracker, outcomes, check_names=(GOLDEN_CHECK,))
