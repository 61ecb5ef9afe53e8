"""A printable summary of an attribution graph: targets, features, scores, timings."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ct_engine.graph import Graph, compute_graph_scores, graph_node_influence, prune_graph


@dataclass(frozen=True)
class TopFeature:
    """A feature node ranked by multi-hop influence on the targets."""

    layer: int
    pos: int
    feature: int
    influence: float
    activation: float


def top_features(graph: Graph, n: int = 10) -> list[TopFeature]:
    """The ``n`` selected features with the largest node influence."""
    # in the adjacency's dtype, as the ranking has always been made (ties break alike)
    influence = graph_node_influence(graph).to(graph.adjacency_matrix.dtype)
    scores = influence[: graph.n_features].double().cpu()
    order = torch.argsort(scores, descending=True, stable=True)[:n]
    result = []
    for node in order.tolist():
        idx = int(graph.selected_features[node])
        layer, pos, feat = (int(v) for v in graph.active_features[idx])
        result.append(
            TopFeature(layer, pos, feat, float(scores[node]), float(graph.activation_values[idx]))
        )
    return result


def graph_summary(
    graph: Graph,
    tokenizer=None,
    *,
    n_top: int = 10,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
) -> str:
    """Multi-line text: prompt, targets with probabilities, node counts, pruning, scores,
    top features and per-phase timings."""
    lines = [f"prompt: {graph.input_string!r} ({graph.n_pos} tokens)"]
    targets = ", ".join(
        f"{t.token_str!r} p={float(p):.3f}"
        for t, p in zip(graph.logit_targets, graph.logit_probabilities, strict=True)
    )
    lines.append(f"targets: {targets}")
    lines.append(
        f"nodes: {graph.n_features} features (of {len(graph.active_features)} active), "
        f"{graph.n_layers * graph.n_pos} errors, {graph.n_pos} tokens, "
        f"{graph.n_logits} targets; {graph.n_nodes} in all"
    )
    pruned = prune_graph(graph, node_threshold, edge_threshold)
    kept_features = int(pruned.node_mask[: graph.n_features].sum())
    lines.append(
        f"pruned ({node_threshold}/{edge_threshold}): {kept_features} features, "
        f"{len(pruned.edge_mask)} edges kept"
    )
    replacement, completeness = compute_graph_scores(graph)
    lines.append(f"scores: replacement {replacement:.3f}, completeness {completeness:.3f}")
    lines.append("top features (layer, pos, feature): influence, activation, token")
    for f in top_features(graph, n_top):
        token = ""
        if tokenizer is not None:
            token = repr(tokenizer.decode([int(graph.input_tokens[f.pos])]))
        lines.append(
            f"  L{f.layer:<2} pos {f.pos:<3} #{f.feature:<6} {f.influence:8.4f} "
            f"{f.activation:8.3f}  {token}"
        )
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in graph.timings.items())
    total = sum(graph.timings.values())
    lines.append(f"timings: {timings} (total {total:.2f}s)")
    return "\n".join(lines)
