"""Engine results as lake rows: graphs, pruning, scores and interventions.

Columns follow :mod:`ct_lake.tables`. Node and edge tables are built column-wise (Arrow
arrays from tensors), so graphs with tens of thousands of nodes and millions of edges convert
in seconds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from ct_engine.graph import Graph, compute_node_influence, target_weights
from ct_lake.tables import table


def _arrow(name: str, columns: dict[str, object]) -> pa.Table:
    schema = table(name).schema
    return pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in schema}, schema=schema)


def _masked(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(values, mask=~valid)


def node_influence(graph: Graph) -> torch.Tensor:
    """``(N,)`` float64 influence of every node on the weighted targets."""
    weights = target_weights(graph)
    return compute_node_influence(graph.adjacency_matrix.double(), weights).cpu()


def nodes_table(graph: Graph, tokenizer, influence: torch.Tensor) -> pa.Table:
    """One row per node, in adjacency order."""
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
    tokens = graph.input_tokens.cpu().numpy().astype(np.int32)
    pos[S + L * T : S + L * T + T] = np.arange(T)
    token_id[S + L * T : S + L * T + T] = tokens
    vocab = np.array([t.vocab_idx for t in graph.logit_targets], dtype=np.int32)
    layer[N - K :], pos[N - K :], token_id[N - K :] = L, T - 1, vocab
    words = [tokenizer.decode([int(t)]) for t in tokens]
    text = [None] * (S + L * T) + words + [t.token_str for t in graph.logit_targets]
    probs = np.full(N, np.nan)
    probs[N - K :] = graph.logit_probabilities.double().cpu().numpy()
    is_feature, is_logit = kind == "feature", kind == "logit"
    return _arrow(
        "nodes",
        {
            "node": np.arange(N, dtype=np.int32),
            "kind": kind,
            "layer": _masked(layer, kind != "token"),
            "pos": pos,
            "feature": _masked(feature, is_feature),
            "token_id": _masked(token_id, (kind == "token") | is_logit),
            "token": text,
            "activation": _masked(activation, is_feature),
            "influence": influence.numpy(),
            "logit_prob": _masked(probs, is_logit),
        },
    )


def edges_table(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor) -> pa.Table:
    return _arrow(
        "edges",
        {
            "target": rows.cpu().numpy().astype(np.int32),
            "source": cols.cpu().numpy().astype(np.int32),
            "weight": values.float().cpu().numpy(),
        },
    )


def logit_targets_rows(graph: Graph) -> list[dict]:
    order = torch.argsort(graph.logit_probabilities, descending=True)
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
