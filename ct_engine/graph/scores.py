"""Replacement and completeness scores of a graph."""

from __future__ import annotations

import torch

from ct_engine.graph._edges import RowBlocks
from ct_engine.graph.graph import Graph
from ct_engine.graph.influence import NORM_EPS, influence_from_blocks
from ct_engine.graph.pruning import graph_node_influence, target_weights


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
    influence = graph_node_influence(graph)  # shared with pruning and the lake
    return _scores(graph, RowBlocks(graph.adjacency_matrix), influence)


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
    A = graph.adjacency_matrix
    n_features = graph.n_features
    device = A.device
    pruned = torch.zeros(graph.n_nodes, dtype=torch.bool, device=device)
    pruned[:n_features] = ~node_mask.to(device)[:n_features]
    moved = pruned.nonzero().squeeze(1)
    # The error node at each feature's (layer, pos): errors are ordered layer-major.
    layers, positions = graph.active_features[graph.selected_features][:, :2].unbind(1)
    error_of = (graph.error_slice.start + layers * graph.n_pos + positions).to(device)[moved]

    def fold(start: int, stop: int, block: torch.Tensor) -> torch.Tensor:
        block[pruned[start:stop]] = 0  # a pruned feature's inputs are dropped
        block.index_add_(1, error_of, block[:, moved])  # its effects go to its error node
        block[:, moved] = 0
        return block

    return _scores(graph, RowBlocks(A, block_map=fold))


def _scores(
    graph: Graph, blocks: RowBlocks, influence: torch.Tensor | None = None
) -> tuple[float, float]:
    """Scores of the matrix ``blocks`` reads; ``influence``: its node influence if already
    computed (then one pass over the matrix instead of two)."""
    weights = target_weights(graph).to(blocks.device)
    errors, tokens = graph.error_slice, graph.token_slice
    # One pass for the row sums and each row's input from error nodes, one for influence.
    sums = torch.zeros(blocks.n, dtype=torch.float64, device=blocks.device)
    from_errors = torch.zeros_like(sums)
    for start, stop, block in blocks:
        block.abs_()
        sums[start:stop] = block.sum(1)
        from_errors[start:stop] = block[:, errors].sum(1)
    scale = sums.clamp(min=NORM_EPS).reciprocal()
    if influence is None:
        influence = influence_from_blocks(blocks, weights, row_scale=scale, row_sums=sums)

    token_mass = influence[tokens].sum()
    error_mass = influence[errors].sum()
    replacement = token_mass / (token_mass + error_mass)

    error_share = from_errors * scale
    output_mass = influence + weights
    completeness = ((1 - error_share) * output_mass).sum() / output_mass.sum()
    return float(replacement), float(completeness)
