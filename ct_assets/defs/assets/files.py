"""Viewer JSON files for every graph (circuit-tracer / Neuronpedia schema)."""

import fcntl

import dagster as dg

from ct_assets.defs.partitions import model_prompt_partitions
from ct_assets.lib.context import partition_inputs
from ct_assets.lib.resources import LakehouseResource
from ct_assets.lib.steps import PartitionOutcome, finish, tracking_check_spec
from ct_assets.lib.tracking import MlflowTracker
from ct_lake.graph_cache import load_graph
from ct_lake.paths import graph_files_dir, graph_path, graph_slug


@dg.asset(
    partitions_def=model_prompt_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="graphs",
    kinds={"json"},
    deps=["attribution_graph"],
    check_specs=[tracking_check_spec("graph_files")],
)
def graph_files(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tracker: MlflowTracker
) -> dg.MaterializeResult:
    """``<slug>.json`` for the viewer, pruned with the configured thresholds, plus the slug's
    entry in the model's ``graph-metadata.json`` (updated under a file lock, as parallel steps
    share it)."""
    from transformers import AutoTokenizer

    from ct_engine.graph.files import create_graph_files
    from ct_engine.presets import resolve_model

    outcomes = []
    for key in context.partition_keys:
        p = partition_inputs(lakehouse, key)
        graph = load_graph(graph_path(p.lake, p.model_key, p.prompt_key))
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(p.entry.model))
        out_dir = graph_files_dir(p.lake, p.model_key)
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = create_graph_files(
                graph,
                graph_slug(p.model_key, p.prompt_key),
                out_dir,
                p.config.pruning.node_threshold,
                p.config.pruning.edge_threshold,
                tokenizer=tokenizer,
                scan=graph.scan if graph.scan is not None else p.entry.transcoders,
            )
        size = path.stat().st_size
        outcomes.append(
            PartitionOutcome(
                key=p.key,
                metadata={"path": dg.MetadataValue.path(str(path)), "size_bytes": size},
                metrics={"size_bytes": size},
                artifacts=[path],
            )
        )
    return finish(context, tracker, outcomes)
