"""Engine results as lake records: one :class:`Record` per asset partition.

A record holds everything an asset partition writes: the rows of each table, the files, and
its ``facts`` (the partition's summary, whose roles ``ct_lake.tables.ROLES`` declares).
:func:`store` writes it; ``ct_assets`` derives Dagster metadata and MLflow params and metrics
from it. Columns follow :mod:`ct_lake.tables`. Node and edge tables are built column-wise
(Arrow arrays from tensors), so graphs with tens of thousands of nodes and millions of edges
convert in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ct_lake.paths import FEATURE_DIR, FEATURE_FILES, GRAPH_FILE, GRAPHS, PLOTS, TRANSCODER_DIR
from ct_lake.tables import table

if TYPE_CHECKING:  # the engine loads only when a graph or dashboards are converted
    from ct_engine.features import FeatureDashboards
    from ct_engine.graph import Graph

# A torch tensor of the engine's: records only call its methods (``.cpu().numpy()``), so the
# lake never imports torch itself.
Tensor = Any

Rows = Sequence[Mapping[str, Any]] | pa.Table


@dataclass
class FileOut:
    """A file (or, with ``tree``, a folder) of a record, stored at
    ``<lake>/files/<kind>/model=<m>[/prompt=<p>]/<name>``.

    ``label``: its name in Dagster metadata; ``image``: alt text to show it inline (PNG);
    ``artifact``: also logged to MLflow.
    """

    kind: str
    name: str
    source: Path | bytes
    label: str
    image: str | None = None
    artifact: bool = False
    tree: bool = False
    keys: dict[str, str] | None = None  # the file's partition, when not the record's


@dataclass
class TableOut:
    """One table partition of a record: ``rows`` replace the partition ``keys`` + ``extra``."""

    name: str
    rows: Rows
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Record:
    """One asset partition's result, as the lake stores it.

    ``keys``: the partition (``{"model": m}`` or ``{"model": m, "prompt": p}``); ``tables``:
    written in order (the summary table last: its row marks a complete partition); ``files``:
    written before the tables; ``facts``: the partition's summary (``{fact: value}``; roles in
    ``ct_lake.tables.ROLES``).
    """

    keys: dict[str, str]
    facts: dict[str, Any]
    tables: list[TableOut] = field(default_factory=list)
    files: list[FileOut] = field(default_factory=list)


def store(lake, record: Record) -> dict[str, str]:
    """Write the record's files, then its tables, to ``lake`` (a :class:`ct_lake.lake.Lake`);
    return ``{file label: uri}``. Each file and each table partition is replaced atomically;
    the summary table comes last, so a partition whose summary row exists is complete."""
    where = {}
    for out in record.files:
        keys = record.keys if out.keys is None else out.keys
        write = lake.write_tree if out.tree else lake.write_file
        where[out.label] = write(out.kind, out.name, out.source, **keys)
    for out in record.tables:
        lake.write_table(out.name, out.rows, **record.keys, **out.extra)
    return where


def _now() -> datetime:
    return datetime.now(UTC)


def _arrow(name: str, columns: dict[str, object]) -> pa.Table:
    schema = table(name).schema
    return pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in schema}, schema=schema)


def _masked(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(values, mask=~valid)


def node_influence(graph: Graph) -> Tensor:
    """``(N,)`` float64 influence of every node on the weighted targets (computed once per
    graph: pruning and the scores reuse it)."""
    from ct_engine.graph import graph_node_influence

    return graph_node_influence(graph).cpu()


def _node_columns(graph: Graph) -> dict[str, object]:
    """The ``nodes`` columns that say which node each row is: all but ``token`` (text) and
    ``influence``, in adjacency order."""
    S, L, T, K = graph.n_features, graph.n_layers, graph.n_pos, graph.n_logits
    N = graph.n_nodes
    kind = np.array(["feature"] * S + ["error"] * (L * T) + ["token"] * T + ["logit"] * K)
    layer = np.full(N, -1, dtype=np.int16)
    pos = np.zeros(N, dtype=np.int32)
    feature = np.full(N, -1, dtype=np.int32)
    token_id = np.full(N, -1, dtype=np.int32)
    activation = np.zeros(N, dtype=np.float32)
    selected = graph.active_features[graph.selected_features].cpu().numpy()
    layer[:S], pos[:S], feature[:S] = selected[:, 0], selected[:, 1], selected[:, 2]
    activation[:S] = graph.activation_values[graph.selected_features].float().cpu().numpy()
    err = np.arange(L * T)
    layer[S : S + L * T], pos[S : S + L * T] = err // T, err % T
    pos[S + L * T : S + L * T + T] = np.arange(T)
    token_id[S + L * T : S + L * T + T] = graph.input_tokens.cpu().numpy().astype(np.int32)
    vocab = np.array([t.vocab_idx for t in graph.logit_targets], dtype=np.int32)
    layer[N - K :], pos[N - K :], token_id[N - K :] = L, T - 1, vocab
    probs = np.full(N, np.nan)
    probs[N - K :] = graph.logit_probabilities.double().cpu().numpy()
    is_feature, is_logit = kind == "feature", kind == "logit"
    return {
        "node": np.arange(N, dtype=np.int32),
        "kind": kind,
        "layer": _masked(layer, kind != "token"),
        "pos": pos,
        "feature": _masked(feature, is_feature),
        "token_id": _masked(token_id, (kind == "token") | is_logit),
        "activation": _masked(activation, is_feature),
        "logit_prob": _masked(probs, is_logit),
    }


def nodes_table(graph: Graph, tokenizer, influence: Tensor) -> pa.Table:
    """One row per node, in adjacency order; ``influence``: ``(N,)`` float64."""
    words = [tokenizer.decode([int(t)]) for t in graph.input_tokens]
    n_inner = graph.n_features + graph.n_layers * graph.n_pos  # features, then error nodes
    text = [None] * n_inner + words + [t.token_str for t in graph.logit_targets]
    columns = {**_node_columns(graph), "token": text, "influence": influence.numpy()}
    return _arrow("nodes", columns)


def stored_node_influence(lake, keys: dict[str, str], graph: Graph) -> np.ndarray | None:
    """``(N,)`` float64: the influence column of the partition's ``nodes`` table, in node
    order, when that table was written for ``graph``; else None.

    The table was written with the graph file (``attribution_graph``), but a partition
    rewritten halfway (the file replaced, the tables not yet) would pair a graph with another
    graph's rows: every column that identifies the nodes must equal the graph's own (feature
    ids and activations, tokens, logit targets and probabilities), else None (compute it).
    """
    try:
        stored = lake.read_table("nodes", **keys)
    except FileNotFoundError:
        return None
    if stored.num_rows != graph.n_nodes:
        return None
    schema = table("nodes").schema
    for name, values in _node_columns(graph).items():
        expected = pa.array(values, type=schema.field(name).type)
        if not stored.column(name).combine_chunks().equals(expected):
            return None
    influence = stored.column("influence")
    if influence.type != pa.float64() or influence.null_count:
        return None
    # a writable copy: torch warns on wrapping Arrow's read-only buffers
    return np.array(influence.to_numpy(), dtype=np.float64)


def seed_node_influence(lake, keys: dict[str, str], graph: Graph) -> bool:
    """Give ``graph`` (just read from the partition's graph file) the node influence its
    ``nodes`` table stored (:func:`stored_node_influence`), so that pruning, the scores and the
    node ranks do not compute it again; False when the table is not this graph's."""
    influence = stored_node_influence(lake, keys, graph)
    if influence is None:
        return False
    from ct_engine.graph import remember_node_influence

    remember_node_influence(graph, influence)
    return True


def edges_table(rows: Tensor, cols: Tensor, values: Tensor) -> pa.Table:
    return _arrow(
        "edges",
        {
            "target": rows.cpu().numpy().astype(np.int32),
            "source": cols.cpu().numpy().astype(np.int32),
            "weight": values.float().cpu().numpy(),
        },
    )


def logit_targets_rows(graph: Graph) -> list[dict]:
    order = graph.logit_probabilities.argsort(descending=True)
    return [
        {
            "rank": rank,
            "node": graph.logit_node(int(k)),
            "vocab_idx": graph.logit_targets[int(k)].vocab_idx,
            "token": graph.logit_targets[int(k)].token_str,
            "probability": float(graph.logit_probabilities[int(k)]),
        }
        for rank, k in enumerate(order)
    ]


def active_features_table(graph: Graph) -> pa.Table:
    active = graph.active_features.cpu().numpy()
    node = np.full(len(active), -1, dtype=np.int32)
    node[graph.selected_features.cpu().numpy()] = np.arange(graph.n_features, dtype=np.int32)
    return _arrow(
        "active_features",
        {
            "layer": active[:, 0].astype(np.int16),
            "pos": active[:, 1].astype(np.int32),
            "feature": active[:, 2].astype(np.int32),
            "activation": graph.activation_values.float().cpu().numpy(),
            "node": _masked(node, node >= 0),
        },
    )


# -- the record of each asset ------------------------------------------------------------


def attribution_record(
    keys: dict[str, str],
    graph: Graph,
    tokenizer,
    graph_file: Path,
    *,
    text: str,
    entry,
    settings,
    backend: str,
    timings: dict[str, float],
    peak_memory_mb: float,
    run_id: str,
    code_version: str,
) -> Record:
    """``attribution_graph``: tables ``nodes``, ``edges``, ``logit_targets``,
    ``active_features`` and the ``graphs`` summary row; the graph saved at ``graph_file``.

    ``entry``: the config's ``ModelEntry``; ``settings``: its ``AttributionSettings``;
    ``timings``: seconds per phase (model load included)."""
    from ct_engine.transcoders.refs import scan_name  # the engine's package imports torch

    influence = node_influence(graph)
    rows, cols, values = graph.nonzero_edges()
    targets = logit_targets_rows(graph)
    scans = [graph.scan] if isinstance(graph.scan, str) else list(graph.scan or [])
    summary = {
        "model_name": entry.model,
        "transcoders": entry.transcoders,
        "scan": ",".join(scan_name(s) or "" for s in scans) or None,  # names, never local paths
        "backend": backend,
        "dtype": entry.dtype,
        "n_tokens": graph.n_pos,
        "tokens": [tokenizer.decode([int(t)]) for t in graph.input_tokens],
        "token_ids": graph.input_tokens.tolist(),
        "n_active_features": len(graph.active_features),
        "n_features": graph.n_features,
        "n_nodes": graph.n_nodes,
        "n_edges": len(values),
        "n_targets": graph.n_logits,
        "top_target": targets[0]["token"],
        "top_target_prob": targets[0]["probability"],
        "max_feature_nodes": settings.max_feature_nodes,
        "batch_size": entry.batch_size,
        "timings_s": list(timings.items()),
        "total_s": sum(timings.values()),
        "peak_memory_mb": peak_memory_mb,
        "dagster_run_id": run_id,
        "code_version": code_version,
        "created_at": _now(),
    }
    return Record(
        keys=keys,
        facts={
            "text": text,
            **summary,
            "max_n_logits": settings.max_n_logits,
            "desired_logit_prob": settings.desired_logit_prob,
            "targets": [t["token"] for t in targets],
        },
        tables=[
            TableOut("nodes", nodes_table(graph, tokenizer, influence)),
            TableOut("edges", edges_table(rows, cols, values)),
            TableOut("logit_targets", targets),
            TableOut("active_features", active_features_table(graph)),
            TableOut("graphs", [summary]),
        ],
        files=[FileOut(GRAPHS, GRAPH_FILE, graph_file, label="graph_file")],
    )


def pruned_record(
    keys: dict[str, str], graph: Graph, pruned, weights: Tensor, settings, picture: Path
) -> Record:
    """``pruned_graph``: tables ``pruned_nodes`` and ``pruned_edges``, and the picture.

    ``pruned``: ``prune_graph``'s result; ``weights``: the kept edges' weights, in
    ``pruned.edge_mask`` order; ``settings``: the config's ``PruningSettings``."""
    mask, cumulative = pruned.node_mask, pruned.cumulative_scores
    nodes = pa.table(
        {
            "node": np.arange(len(mask), dtype=np.int32),
            "kept": mask.cpu().numpy().astype(bool),
            "cumulative_influence": cumulative.float().cpu().numpy(),
        }
    )
    return Record(
        keys=keys,
        facts={
            "node_threshold": settings.node_threshold,
            "edge_threshold": settings.edge_threshold,
            "kept_features": int(mask[: graph.n_features].sum()),
            "kept_nodes": int(mask.sum()),
            "kept_edges": len(pruned.edge_mask),
        },
        tables=[
            TableOut("pruned_nodes", nodes),
            TableOut(
                "pruned_edges",
                edges_table(pruned.edge_mask.rows, pruned.edge_mask.cols, weights),
            ),
        ],
        files=[
            FileOut(
                PLOTS, "pruned_graph.png", picture, "picture", image="pruned graph", artifact=True
            )
        ],
    )


def scores_record(
    keys: dict[str, str],
    graph: Graph,
    scores: tuple[float, float, float, float],
    influence: np.ndarray,
    node_mask: np.ndarray,
    n_edges_kept: int,
    settings,
    run_id: str,
) -> Record:
    """``graph_scores``: ``score_history`` (one partition per run) and the ``scores`` row.

    ``scores``: replacement, completeness, pruned replacement, pruned completeness;
    ``influence``: the ``nodes`` table's influence column; ``node_mask``: ``pruned_nodes.kept``;
    ``settings``: the pruning settings the mask was made with."""
    non_logit = float(influence[: graph.logit_slice.start].sum())
    errors = float(influence[graph.error_slice].sum())
    row = {
        "replacement_score": scores[0],
        "completeness_score": scores[1],
        "pruned_replacement_score": scores[2],
        "pruned_completeness_score": scores[3],
        "error_influence_share": errors / non_logit if non_logit else 0.0,
        "n_nodes_kept": int(node_mask.sum()),
        "n_edges_kept": n_edges_kept,
        "node_threshold": settings.node_threshold,
        "edge_threshold": settings.edge_threshold,
        "dagster_run_id": run_id,
        "created_at": _now(),
    }
    return Record(
        keys=keys,
        facts=dict(row),
        tables=[TableOut("score_history", [row], {"run": run_id}), TableOut("scores", [row])],
    )


def interventions_record(
    keys: dict[str, str], rows: list[dict], settings, max_direct_error: float
) -> Record:
    """``intervention_results``: the ``interventions`` rows (one per feature × target);
    ``settings``: the config's ``InterventionSettings``."""
    return Record(
        keys=keys,
        facts={
            "top_features": settings.top_features,
            "top_targets": settings.top_targets,
            "features_ablated": len({r["node"] for r in rows}),
            "targets_measured": len({r["target_rank"] for r in rows}),
            "max_direct_error": max_direct_error + 0.0,
            "n_rows": len(rows),
        },
        tables=[TableOut("interventions", rows)],
    )


def transcoder_cache_record(
    keys: dict[str, str], transcoders, ref, folder: Path, uri: str
) -> Record:
    """``transcoder_cache``: the converted set (``folder``, stored at ``uri``) and its row.

    ``transcoders``: the loaded set; ``ref``: its parsed ``TranscoderRef``."""
    row = {
        "source": str(ref),
        "revision": ref.revision or ("local" if ref.is_local else "main"),
        "path": uri,
        "kind": "clt" if transcoders.is_cross_layer else "plt",
        "activation": transcoders.activation_name,
        "skip_connection": transcoders.skip_connection,
        "n_layers": transcoders.n_layers,
        "d_model": transcoders.d_model,
        "d_transcoder": transcoders.d_transcoder,
        "size_bytes": sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()),
        "created_at": _now(),
    }
    return Record(
        keys=keys,
        facts=dict(row),
        tables=[TableOut("transcoder_cache", [row])],
        files=[FileOut(TRANSCODER_DIR, "set", folder, label="set", tree=True)],
    )


def transcoder_quality_record(
    keys: dict[str, str], metrics, transcoders: str, picture: Path
) -> Record:
    """``transcoder_quality``: per-layer metrics in long format, the per-layer plot.

    ``metrics``: ``ct_engine.metrics.TranscoderMetrics``; ``transcoders``: the set evaluated."""
    whole = {
        name: float(getattr(metrics, name))
        for name in ("kl_replaced", "top1_agreement", "delta_ce", "l0_total")
    }
    rows = [
        {"layer": str(r["layer"]), "metric": name, "value": float(value)}
        for r in metrics.to_rows()
        for name, value in r.items()
        if name != "layer"
    ]
    rows += [{"layer": "model", "metric": k, "value": v} for k, v in whole.items()]
    return Record(
        keys=keys,
        facts={
            "transcoders": transcoders,
            "eval_tokens": metrics.n_tokens,
            "n_tokens": metrics.n_tokens,
            **whole,
            **{f"mean_{k}": float(v) for k, v in metrics.mean.items()},
        },
        tables=[TableOut("transcoder_quality", rows)],
        files=[
            FileOut(
                PLOTS,
                "transcoder_quality.png",
                picture,
                "plot",
                image="per-layer metrics",
                artifact=True,
            )
        ],
    )


def census_record(keys: dict[str, str], census: pa.Table) -> Record:
    """``feature_census``: the census rows of a model (most recurring features first)."""
    recurring = int((census.column("n_graphs").to_numpy() > 1).sum()) if census.num_rows else 0
    return Record(
        keys=keys,
        facts={"features": census.num_rows, "recurring_features": recurring},
        tables=[TableOut("feature_census", census)],
    )


# -- feature dashboards ------------------------------------------------------------------


class _Lists:
    """A list column built from Python values: flat values plus one length per row, turned
    into one Arrow array at the end (no pyarrow call per row)."""

    def __init__(self) -> None:
        self.values: list = []
        self.lengths: list[int] = []

    def add(self, values) -> None:
        self.values.extend(values)
        self.lengths.append(len(values))

    def array(self, type_: pa.ListType) -> pa.Array:
        offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=offsets[1:])
        if offsets[-1] > np.iinfo(np.int32).max:  # a list column's offsets are int32
            raise ValueError(
                f"{offsets[-1]:,} list values in one column: more than one table write holds"
            )
        return pa.ListArray.from_arrays(
            pa.array(offsets.astype(np.int32)), pa.array(self.values, type=type_.value_type)
        )


def _columns_table(name: str, columns: dict[str, object]) -> pa.Table:
    """Table ``name`` from arrays (Arrow arrays kept, anything else converted to the column's
    type); columns in schema order."""
    schema = table(name).schema
    arrays = [
        columns[f.name]
        if isinstance(columns[f.name], pa.Array)
        else pa.array(columns[f.name], f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


class _FeatureColumns:
    """The columns of ``feature_stats``, ``feature_examples`` and ``feature_logits``, filled
    one card at a time (:meth:`add`) and turned into tables once (:meth:`tables`)."""

    _STATS = ("n_active", "frequency", "act_min", "act_max", "act_mean", "label", "source")
    _STAT_LISTS = (
        "quantile_levels",
        "quantile_values",
        "histogram_edges",
        "histogram_counts",
        "top_tokens",
        "top_token_counts",
    )

    def __init__(self) -> None:
        self.stats: dict[str, list] = {k: [] for k in self._STATS}
        self.stat_lists = {k: _Lists() for k in self._STAT_LISTS}
        self.seen: list[tuple[int, int]] = []
        self.ex: dict[str, list] = {
            k: [] for k in ("layer", "feature", "group_name", "group_rank", "rank", "pos", "act")
        }
        self.ex_tokens, self.ex_acts = _Lists(), _Lists()
        self.lg: dict[str, list] = {
            k: [] for k in ("layer", "feature", "direction", "rank", "token", "value")
        }

    def add(self, card) -> None:
        self.seen.append((card.layer, card.feature))
        stats = self.stats
        stats["n_active"].append(card.n_active)
        stats["frequency"].append(card.frequency)
        stats["act_min"].append(card.act_min)
        stats["act_max"].append(card.act_max)
        stats["act_mean"].append(card.act_mean)
        stats["label"].append(card.label)
        stats["source"].append(card.label_source)
        lists = self.stat_lists
        lists["quantile_levels"].add(card.quantile_levels)
        lists["quantile_values"].add(card.quantile_values)
        lists["histogram_edges"].add(card.histogram_edges)
        lists["histogram_counts"].add(card.histogram_counts)
        lists["top_tokens"].add([token for token, _ in card.top_tokens])
        lists["top_token_counts"].add([count for _, count in card.top_tokens])
        ex = self.ex
        for group_rank, group in enumerate(card.groups):
            for rank, example in enumerate(group.examples):
                ex["layer"].append(card.layer)
                ex["feature"].append(card.feature)
                ex["group_name"].append(group.name)
                ex["group_rank"].append(group_rank)
                ex["rank"].append(rank)
                ex["pos"].append(example.max_pos)
                ex["act"].append(example.max_act)
                self.ex_tokens.add(example.tokens)
                self.ex_acts.add(example.acts)
        lg = self.lg
        for direction, pairs in (("top", card.top_logits), ("bottom", card.bottom_logits)):
            for rank, (token, value) in enumerate(pairs):
                lg["layer"].append(card.layer)
                lg["feature"].append(card.feature)
                lg["direction"].append(direction)
                lg["rank"].append(rank)
                lg["token"].append(token)
                lg["value"].append(value)

    def tables(self, dashboards: FeatureDashboards) -> tuple[pa.Table, pa.Table, pa.Table]:
        n = len(self.seen)
        where = np.array(self.seen, dtype=np.int64).reshape(-1, 2)
        stats_types = table("feature_stats").schema
        stats = _columns_table(
            "feature_stats",
            {
                "layer": where[:, 0].astype(np.int16),
                "feature": where[:, 1].astype(np.int32),
                "n_tokens": np.full(n, dashboards.n_tokens, dtype=np.int64),
                "n_active": self.stats["n_active"],
                "frequency": self.stats["frequency"],
                "act_min": self.stats["act_min"],
                "act_max": self.stats["act_max"],
                "act_mean": self.stats["act_mean"],
                **{k: v.array(stats_types.field(k).type) for k, v in self.stat_lists.items()},
                "label": self.stats["label"],
                "label_source": self.stats["source"],
                "transcoder_id": [dashboards.transcoder_id] * n,
                "corpus": [dashboards.corpus] * n,
                "created_at": [_now()] * n,
            },
        )
        example_types = table("feature_examples").schema
        examples = _columns_table(
            "feature_examples",
            {
                "layer": self.ex["layer"],
                "feature": self.ex["feature"],
                "group_name": self.ex["group_name"],
                "group_rank": self.ex["group_rank"],
                "rank": self.ex["rank"],
                "tokens": self.ex_tokens.array(example_types.field("tokens").type),
                "acts": self.ex_acts.array(example_types.field("acts").type),
                "max_pos": self.ex["pos"],
                "max_act": self.ex["act"],
            },
        )
        return stats, examples, _columns_table("feature_logits", self.lg)


def feature_tables(dashboards: FeatureDashboards) -> tuple[pa.Table, pa.Table, pa.Table]:
    """``(feature_stats, feature_examples, feature_logits)`` of every card of ``dashboards``:
    ``L × F`` stats rows, one examples row per example of each group, ``2n`` logit rows per
    feature (one pass over :meth:`FeatureDashboards.cards`)."""
    columns = _FeatureColumns()
    for card in dashboards.cards():
        columns.add(card)
    return columns.tables(dashboards)


def features_record(keys: dict[str, str], dashboards: FeatureDashboards, files_dir: Path) -> Record:
    """``feature_dashboards``: tables ``feature_examples``, ``feature_logits`` and the
    ``feature_stats`` summary (one row per feature), and circuit-tracer's feature files,
    written to ``files_dir`` (a scratch folder) and stored as the tree
    ``files/features/model=<m>/features/``."""
    from ct_engine.features.files import write_feature_files

    columns = _FeatureColumns()
    write_feature_files(dashboards, files_dir, on_card=columns.add)
    stats, examples, logits = columns.tables(dashboards)
    n_active = dashboards.n_active
    sources = dashboards.label_sources.ravel().tolist()
    labelled = {source: sources.count(source) for source in dict.fromkeys(sources) if source}
    return Record(
        keys=keys,
        facts={
            "model_name": dashboards.model_name,
            "transcoder_id": dashboards.transcoder_id,
            "corpus": dashboards.corpus,
            "window": dashboards.window,
            "corpus_tokens": dashboards.n_tokens,
            "features": int(n_active.size),
            "dead_features": int((n_active == 0).sum()),
            "mean_frequency": float(dashboards.frequency.mean()),
            "labelled": labelled,
            "dashboards_s": float(dashboards.seconds),
        },
        tables=[
            TableOut("feature_examples", examples),
            TableOut("feature_logits", logits),
            TableOut("feature_stats", stats),
        ],
        files=[FileOut(FEATURE_FILES, FEATURE_DIR, files_dir, label="feature_files", tree=True)],
    )
