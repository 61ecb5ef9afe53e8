"""Every table of the lake: its partition columns and its Arrow schema, in one place.

Partition columns (``model``, ``prompt``, ``run``, ``graph``) are the Delta table's partition
values (strings; folders ``<lake>/<table>/model=<m>/prompt=<p>/``), not inside the files;
readers and the DuckDB views add them back (:mod:`ct_lake.lake`, :mod:`ct_lake.catalog`).
Node indices follow the graph's order ``[features | errors | tokens | targets]`` and edges are
stored sparsely: ``(target, source, weight)`` with no zero entries (rows are targets, as in the
adjacency matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class TableSpec:
    """A lake table: name, partition columns (in folder order) and data-file schema."""

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
        TableSpec(
            "feature_stats",
            ("model",),
            pa.schema(
                [
                    ("layer", pa.int16()),
                    ("feature", pa.int32()),
                    ("n_tokens", pa.int64()),
                    ("n_active", pa.int64()),
                    ("frequency", pa.float64()),
                    ("act_min", pa.float32()),
                    ("act_max", pa.float32()),
                    ("act_mean", pa.float32()),
                    ("quantile_levels", pa.list_(pa.float32())),
                    ("quantile_values", pa.list_(pa.float32())),
                    ("histogram_edges", pa.list_(pa.float32())),
                    ("histogram_counts", pa.list_(pa.int64())),
                    ("top_tokens", pa.list_(pa.string())),
                    ("top_token_counts", pa.list_(pa.int64())),
                    ("label", pa.string()),
                    ("label_source", pa.string()),  # auto | truth | explainer ('' unlabelled)
                    ("transcoder_id", pa.string()),
                    ("corpus", pa.string()),
                    ("created_at", _TIMESTAMP),
                ]
            ),
            "per model: every transcoder feature's activation statistics on the corpus",
        ),
        TableSpec(
            "feature_examples",
            ("model",),
            pa.schema(
                [
                    ("layer", pa.int16()),
                    ("feature", pa.int32()),
                    ("group_name", pa.string()),
                    ("group_rank", pa.int16()),  # 0: top activations, then quantile bands
                    ("rank", pa.int16()),  # within the group, largest activation first
                    ("tokens", pa.list_(pa.string())),
                    ("acts", pa.list_(pa.float32())),
                    ("max_pos", pa.int32()),
                    ("max_act", pa.float32()),
                ]
            ),
            "per model: each feature's example contexts, with its activation on every token",
        ),
        TableSpec(
            "feature_logits",
            ("model",),
            pa.schema(
                [
                    ("layer", pa.int16()),
                    ("feature", pa.int32()),
                    ("direction", pa.string()),  # top (promoted) | bottom (suppressed)
                    ("rank", pa.int16()),
                    ("token", pa.string()),
                    ("value", pa.float32()),
                ]
            ),
            "per model: the output tokens each feature's decoder promotes and suppresses most",
        ),
    ]
}


def table(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown lake table {name!r}; tables: {', '.join(TABLES)}") from None


# -- what each fact of an asset partition is for -----------------------------------------
#
# An asset writes one record per partition (``ct_lake.records.Record``); its ``facts`` are the
# partition's summary: the row of its summary table when it has one (``graphs``, ``scores``,
# ``transcoder_cache``) plus the settings and aggregates it was computed with. Each fact name
# is declared here once; ``ct_assets`` turns a record into Dagster metadata, MLflow params and
# MLflow metrics from this table alone. A fact not listed stays in the lake only.

PARAM = "param"  # a setting the result was computed with: MLflow param and Dagster metadata
METRIC = "metric"  # a measured number: MLflow metric and Dagster metadata
METADATA = "metadata"  # shown in Dagster only (a result that is text, not a number)


@dataclass(frozen=True)
class Role:
    """What a fact is for (``kind``: :data:`PARAM`, :data:`METRIC` or :data:`METADATA`).

    ``name``: the name Dagster and MLflow show when it is not the fact's own. For a mapping
    fact (``{key: value}``) it is a pattern with ``{}`` for the key: MLflow gets one entry per
    key, Dagster the mapping as JSON under the fact's name.
    """

    kind: str
    name: str | None = None


_P, _M, _D = Role(PARAM), Role(METRIC), Role(METADATA)

ROLES: dict[str, Role] = {
    # the prompt (``prompts.text``) and the model entry's settings
    "text": Role(PARAM, "prompt_text"),
    "model_name": Role(PARAM, "model"),
    "transcoders": _P,
    "scan": _P,
    "backend": _P,
    "dtype": _P,
    "batch_size": _P,
    # attribution (``graphs``)
    "max_n_logits": _P,
    "desired_logit_prob": _P,
    "max_feature_nodes": _P,
    "targets": _P,
    "n_tokens": _M,
    "n_active_features": _M,
    "n_features": _M,
    "n_nodes": _M,
    "n_edges": _M,
    "n_targets": _M,
    "top_target": _D,
    "top_target_prob": _M,
    "timings_s": Role(METRIC, "time_{}_s"),
    "total_s": _M,
    "peak_memory_mb": _M,
    # pruning and scores (``scores``)
    "node_threshold": _P,
    "edge_threshold": _P,
    "kept_features": _M,
    "kept_nodes": _M,
    "kept_edges": _M,
    "replacement_score": _M,
    "completeness_score": _M,
    "pruned_replacement_score": _M,
    "pruned_completeness_score": _M,
    "error_influence_share": _M,
    "n_nodes_kept": _M,
    "n_edges_kept": _M,
    # interventions
    "top_features": _P,
    "top_targets": _P,
    "features_ablated": _M,
    "targets_measured": _M,
    "max_direct_error": _M,
    "n_rows": _M,
    # transcoders (``transcoder_cache``, ``transcoder_quality``)
    "source": _P,
    "revision": _P,
    "kind": _P,
    "activation": _P,
    "skip_connection": _P,
    "n_layers": _P,
    "d_model": _P,
    "d_transcoder": _P,
    "eval_tokens": _P,
    "path": _D,
    "size_bytes": _M,
    "l0_total": _M,
    "kl_replaced": _M,
    "top1_agreement": _M,
    "delta_ce": _M,
    "mean_*": _M,  # per-layer metrics averaged over layers: mean_fvu_centered, mean_l0, ...
    # feature census; feature dashboards ("features" counts the features of either)
    "features": _M,
    "recurring_features": _M,
    "dead_features": _M,
    "mean_frequency": _M,
    "corpus": _P,
    "corpus_tokens": _M,
    "window": _P,
    "transcoder_id": _P,
    "labelled": Role(METRIC, "labelled_{}"),  # {label source: features labelled by it}
    "dashboards_s": _M,
}

# Tables an asset shows the first rows of in Dagster: metadata name, columns, row count.
PREVIEWS: dict[str, tuple[str, tuple[str, ...], int]] = {
    "interventions": (
        "effects",
        (
            "layer",
            "pos",
            "feature",
            "target_token",
            "predicted_effect",
            "observed_direct_effect",
            "observed_total_effect",
            "prob_before",
            "prob_after",
        ),
        50,
    ),
    "feature_census": ("top", ("layer", "feature", "n_graphs", "max_influence", "tokens"), 10),
}


def role(fact: str) -> Role | None:
    """The role of ``fact`` (an entry ``prefix*`` covers every fact starting with
    ``prefix``), or None for a lake-only fact."""
    if fact in ROLES:
        return ROLES[fact]
    return next((r for k, r in ROLES.items() if k.endswith("*") and fact.startswith(k[:-1])), None)
