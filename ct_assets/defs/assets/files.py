"""Viewer JSON files for every graph (circuit-tracer / Neuronpedia schema)."""

import fcntl
import json
from collections.abc import Iterator

import dagster as dg

from ct_assets.defs.partitions import model_prompt_partitions
from ct_assets.lib.context import graph_partitions, read_graph
from ct_assets.lib.graph_cache import pruned
from ct_assets.lib.profiles import CPU_QUEUE, step_tags
from ct_assets.lib.resources import LakehouseResource
from ct_assets.lib.steps import Result, report, tracking_check_spec
from ct_assets.lib.tracking import MlflowTracker
from ct_engine.graph.files import METADATA_FILE
from ct_lake import records
from ct_lake.paths import GRAPH_FILES, graph_slug

LOCKS = "locks"  # the lake's file kind of lock files


def _json_bytes(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def upsert_index(lake, model: str, entry: dict) -> None:
    """Insert or replace ``entry`` (by slug) in the model's ``graph-metadata.json``.

    Parallel steps update the same index: an ``fcntl`` lock on the lake's local lock file
    ``files/locks/graph_files-model=<m>.lock`` (as the viewer's annotations do) serializes
    the read-modify-write between processes of one machine. Writers on several machines
    sharing an object-storage lake are not serialized."""
    lock_path = lake.file_path(LOCKS, f"{GRAPH_FILES}-model={model}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        index = {"graphs": []}
        if lake.has_file(GRAPH_FILES, METADATA_FILE, model=model):
            index = json.loads(lake.read_bytes(GRAPH_FILES, METADATA_FILE, model=model))
        graphs = [g for g in index.get("graphs", []) if g.get("slug") != entry["slug"]]
        lake.write_file(
            GRAPH_FILES, METADATA_FILE, _json_bytes({"graphs": [*graphs, entry]}), model=model
        )


@dg.asset(
    partitions_def=model_prompt_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="graphs",
    op_tags=step_tags(CPU_QUEUE),
    kinds={"json"},
    deps=["attribution_graph"],
    check_specs=[tracking_check_spec("graph_files")],
)
def graph_files(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tracker: MlflowTracker
) -> Iterator[dg.MaterializeResult]:
    """``<slug>.json`` for the viewer, pruned with the configured thresholds, plus the slug's
    entry in the model's ``graph-metadata.json`` (updated under a file lock, as parallel steps
    share it)."""
    from transformers import AutoTokenizer

    from ct_engine.graph.files import graph_document
    from ct_engine.presets import resolve_model

    results = []
    tokenizers: dict[str, object] = {}  # a range run covers many prompts of one model
    for p in graph_partitions(context, lakehouse):
        graph = read_graph(p.lake, p.keys)
        if p.entry.model not in tokenizers:
            tokenizers[p.entry.model] = AutoTokenizer.from_pretrained(resolve_model(p.entry.model))
        tokenizer = tokenizers[p.entry.model]
        slug = graph_slug(p.keys["model"], p.keys["prompt"])
        document = graph_document(
            graph,
            slug,
            tokenizer=tokenizer,
            scan=graph.scan if graph.scan is not None else p.entry.transcoders,
            node_threshold=p.config.pruning.node_threshold,
            edge_threshold=p.config.pruning.edge_threshold,
            pruned=pruned(graph, p.config.pruning.node_threshold, p.config.pruning.edge_threshold),
        )
        data = _json_bytes(document)
        record = records.Record(
            keys=p.keys,
            facts={"size_bytes": len(data)},
            files=[
                records.FileOut(
                    GRAPH_FILES,
                    f"{slug}.json",
                    data,
                    label="path",
                    artifact=True,
                    keys={"model": p.keys["model"]},
                )
            ],
        )
        records.store(p.lake, record)
        upsert_index(p.lake, p.keys["model"], document["metadata"])
        results.append(Result(p.key, record, text=p.text))
    yield from report(context, lakehouse, tracker, results)
