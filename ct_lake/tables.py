"""Every table of the lake: its partition columns and its Arrow schema, in one place.

Partition columns (``model``, ``prompt``, ``run``) live in the hive path
(``<lake>/<table>/model=<m>/prompt=<p>/data.parquet``), not inside the files; DuckDB adds
them back (``hive_partitioning``). Node indices follow the graph's order
``[features | errors | tokens | targets]`` and edges are stored sparsely: ``(target, source,
weight)`` with no zero entries (rows are targets, as in the adjacency matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class TableSpec:
    """A lake table: name, hive partition columns (in path order) and file schema."""

    name: str
    partitions: tuple[str, ...]
    schema: pa.Schema
    description: str


MODEL_PROMPT = ("model", "prompt")
_TIMESTAMP = pa.timestamp("us", tz="UTC")

_SCORE_FIELDS = [
    ("replacement_score", pa.float64()),
    ("completeness_score", pa.float64()),
    ("pruned_replacement_score", pa.float64()),
    ("pruned_completeness_score", pa.float64()),
    ("error_influence_share", pa.float64()),
    ("n_nodes_kept", pa.int32()),
    ("n_edges_kept", pa.int64()),
    ("node_threshold", pa.float64()),
    ("edge_threshold", pa.float64()),
    ("dagster_run_id", pa.string()),
    ("created_at", _TIMESTAMP),
]

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in [
        TableSpec(
            "prompts",
            ("prompt",),
            pa.schema(
                [("text", pa.string()), ("n_chars", pa.int32()), ("registered_at", _TIMESTAMP)]
            ),
            "prompt key -> prompt text",
        ),
        TableSpec(
            "transcoder_cache",
            ("model",),
            pa.schema(
                [
                    ("source", pa.string()),
                    ("revision", pa.string()),
                    ("path", pa.string()),
                    ("kind", pa.string()),
                    ("activation", pa.string()),
                    ("skip_connection", pa.bool_()),
                    ("n_layers", pa.int32()),
                    ("d_model", pa.int32()),
                    ("d_transcoder", pa.int32()),
                    ("size_bytes", pa.int64()),
                    ("created_at", _TIMESTAMP),
                ]
            ),
            "one row per model: the cached transcoder set",
        ),
        TableSpec(
            "transcoder_quality",
            ("model",),
            pa.schema([("layer", pa.string()), ("metric", pa.string()), ("value", pa.float64())]),
            "per-layer (and 'mean' / 'model') transcoder metrics, long format",
        ),
        TableSpec(
            "graphs",
            MODEL_PROMPT,
            pa.schema(
                [
                    ("model_name", pa.string()),
                    ("transcoders", pa.string()),
                    ("scan", pa.string()),
                    ("backend", pa.string()),
                    ("dtype", pa.string()),
                    ("n_tokens", pa.int32()),
                    ("tokens", pa.list_(pa.string())),
                    ("token_ids", pa.list_(pa.int32())),
                    ("n_active_features", pa.int64()),
                    ("n_features", pa.int32()),
                    ("n_nodes", pa.int32()),
                    ("n_edges", pa.int64()),
                    ("n_targets", pa.int32()),
                    ("top_target", pa.string()),
                    ("top_target_prob", pa.float64()),
                    ("max_feature_nodes", pa.int64()),
                    ("batch_size", pa.int32()),
                    ("timings_s", pa.map_(pa.string(), pa.float64())),
                    ("total_s", pa.float64()),
                    ("peak_memory_mb", pa.float64()),
                    ("dagster_run_id", pa.string()),
                    ("code_version", pa.string()),
                    ("created_at", _TIMESTAMP),
                ]
            ),
            "one row per attribution graph: sizes, top target, timings",
        ),
        TableSpec(
            "nodes",
            MODEL_PROMPT,
            pa.schema(
                [
                    ("node", pa.int32()),
                    ("kind", pa.string()),  # feature | error | token | logit
                    ("layer", pa.int16()),
                    ("pos", pa.int32()),
                    ("feature", pa.int32()),
                    ("token_id", pa.int32()),
                    ("token", pa.string()),
                    ("activation", pa.float32()),
                    ("influence", pa.float64()),
                    ("logit_prob", pa.float64()),
                ]
            ),
            "every node of the graph, in adjacency order",
        ),
        TableSpec(
            "edges",
            MODEL_PROMPT,
            pa.schema([("target", pa.int32()), ("source", pa.int32()), ("weight", pa.float32())]),
            "nonzero adjacency entries: the direct effect of source on target",
        ),
        TableSpec(
            "logit_targets",
            MODEL_PROMPT,
            pa.schema(
                [
                    ("rank", pa.int16()),
                    ("node", pa.int32()),
                    ("vocab_idx", pa.int32()),
                    ("token", pa.string()),
                    ("probability", pa.float64()),
                ]
            ),
            "the attribution targets, most probable first",
        ),
        TableSpec(
            "active_features",
            MODEL_PROMPT,
            pa.schema(
                [
                    ("layer", pa.int16()),
                    ("pos", pa.int32()),
                    ("feature", pa.int32()),
                    ("activation", pa.float32()),
                    ("node", pa.int32()),  # null when not selected into the graph
                ]
            ),
            "every active transcoder feature of the prompt",
        ),
        TableSpec(
            "pruned_nodes",
            MODEL_PROMPT,
            pa.schema(
                [("node", pa.int32()), ("kept", pa.bool_()), ("cumulative_influence", pa.float32())]
            ),
            "node mask and cumulative influence share of the pruned graph",
        ),
        TableSpec(
            "pruned_edges",
            MODEL_PROMPT,
            pa.schema([("target", pa.int32()), ("source", pa.int32()), ("weight", pa.float32())]),
            "edges kept by pruning",
        ),
        TableSpec("scores", MODEL_PROMPT, pa.schema(_SCORE_FIELDS), "graph scores, latest"),
        TableSpec(
            "score_history",
            ("model", "prompt", "run"),
            pa.schema(_SCORE_FIELDS),
            "graph scores of every materialization (append-only, one file per run)",
        ),
        TableSpec(
            "interventions",
            MODEL_PROMPT,
            pa.schema(
                [
                    ("node", pa.int32()),
                    ("layer", pa.int16()),
                    ("pos", pa.int32()),
                    ("feature", pa.int32()),
                    ("activation", pa.float64()),
                    ("target_rank", pa.int16()),
                    ("target_token", pa.string()),
                    ("target_vocab_idx", pa.int32()),
                    ("predicted_effect", pa.float64()),
                    ("observed_direct_effect", pa.float64()),
                    ("observed_total_effect", pa.float64()),
                    ("prob_before", pa.float64()),
                    ("prob_after", pa.float64()),
                ]
            ),
            "ablate each top feature: predicted (adjacency) vs observed effects on targets",
        ),
        TableSpec(
            "annotations",
            ("graph",),
            pa.schema(
                [
                    ("id", pa.string()),
                    ("author", pa.string()),
                    ("created_at", _TIMESTAMP),
                    ("kind", pa.string()),  # label | supernode | note
                    ("node_ids", pa.list_(pa.string())),
                    ("text", pa.string()),
                ]
            ),
            "viewer annotations: labels, supernodes and notes on a graph's nodes",
        ),
        TableSpec(
            "feature_census",
            ("model",),
            pa.schema(
                [
                    ("layer", pa.int16()),
                    ("feature", pa.int32()),
                    ("n_graphs", pa.int32()),
                    ("n_nodes", pa.int32()),
                    ("mean_influence", pa.float64()),
                    ("max_influence", pa.float64()),
                    ("tokens", pa.list_(pa.string())),
                ]
            ),
            "per model: each feature's appearances across graphs",
        ),
    ]
}


def table(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown lake table {name!r}; tables: {', '.join(TABLES)}") from None
