"""Replacement and completeness scores of a graph."""

from __future__ import annotations

import torch

from ct_engine.graph._edges import EdgeList
from ct_engine.graph.graph import Graph
from ct_engine.graph.influence import influence_from_edges, normalized_edges
from ct_engine.graph.pruning import target_weights


def compute_graph_scores(graph: Graph) -> tuple[float, float]:
    """How much of the logits' attribution the graph explains without error nodes.

    With ``Â`` the row-normalised ``|A|``, ``infl`` the node influence and ``w`` the target
    weights (all on the unpruned graph):

    * **replacement score** ``= Σ infl[tokens] / (Σ infl[tokens] + Σ infl[errors])``: the share
      of end-to-end (logit → source) mass that ends in token embeddings rather than errors;
    * **completeness score** ``= Σ_j (1 − Σ_{e∈errors} Â[j, e])·(infl[j] + w[j]) /
      Σ_j (infl[j] + w[j])``: the influence-weighted share of each node's normalised input that
      does not come from error nodes (nodes without inputs count as complete).

    Args:
        graph: dense or sparse adjacency.

    Returns:
        ``(replacement_score, completeness_score)``, each in ``[0, 1]``; the replacement
        score is NaN when no mass reaches any token or error node (``0/0``, as circuit-tracer).
    """
    return _scores(graph, EdgeList.from_matrix(graph.adjacency_matrix))


def compute_pruned_graph_scores(graph: Graph, node_mask: torch.Tensor) -> tuple[float, float]:
    """Replacement and completeness of the pruned graph.

    Every pruned feature is folded into the error node at its ``(layer, pos)``: its column
    (its effects on other nodes) is added to that error node's column and its row (its inputs)
    is dropped. Error, token and logit nodes stay. The scores are then those of
    :func:`compute_graph_scores` on that graph, so they fall as pruning moves mass into errors
    (as EleutherAI's attribute scores pruned graphs).

    Args:
        graph: the unpruned graph.
        node_mask: ``(N,)`` bool, e.g. ``prune_graph(graph).node_mask``; only its feature
            entries matter.
    """
    edges = EdgeList.from_matrix(graph.adjacency_matrix)
    n_features = graph.n_features
    node_mask = node_mask.to(edges.rows.device)
    pruned_feature = torch.zeros(graph.n_nodes, dtype=torch.bool, device=edges.rows.device)
    pruned_feature[:n_features] = ~node_mask[:n_features]
    edges = edges.select(~pruned_feature[edges.rows])
    # The error node at each feature's (layer, pos): errors are ordered layer-major.
    layers, positions = graph.active_features[graph.selected_features][:, :2].unbind(1)
    error_of = (graph.error_slice.start + layers * graph.n_pos + positions).to(edges.cols)
    cols = edges.cols.clone()
    moved = pruned_feature[cols]
    cols[moved] = error_of[cols[moved]]
    # Every index is a node of the graph (an edge's own or an error node), so torch's checks
    # would only cost time.
    merged = torch.sparse_coo_tensor(
        torch.stack([edges.rows, cols]),
        edges.values,
        (graph.n_nodes, graph.n_nodes),
        check_invariants=False,
    ).coalesce()  # sums the columns that now land on the same error node
    return _scores(graph, EdgeList.from_matrix(merged))


def _scores(graph: Graph, edges: EdgeList) -> tuple[float, float]:
    edges = normalized_edges(edges)
    weights = target_weights(graph).to(edges.values.device)
    influence = influence_from_edges(edges, weights)

    errors, tokens = graph.error_slice, graph.token_slice
    token_mass = influence[tokens].sum()
    error_mass = influence[errors].sum()
    replacement = token_mass / (token_mass + error_mass)

    from_error = (edges.cols >= errors.start) & (edges.cols < errors.stop)
    error_share = torch.zeros_like(influence).index_add_(
        0, edges.rows[from_error], edges.values[from_error]
    )
    output_mass = influence + weights
    completeness = ((1 - error_share) * output_mass).sum() / output_mass.sum()
    return float(replacement), float(completeness)
