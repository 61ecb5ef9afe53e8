"""Replacement and completeness scores of a graph (spec §5, ``compute_graph_scores``)."""

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
    edges = normalized_edges(EdgeList.from_matrix(graph.adjacency_matrix))
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
