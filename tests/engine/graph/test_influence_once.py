"""Node influence is computed once per graph: pruning and the full graph's scores (and the
lake's node table) share it, a graph read back from storage can be given the influence stored
with it (same masks and scores, bit for bit), and a changed adjacency is never answered from the
memo."""

from __future__ import annotations

import pytest
import torch

from ct_engine.graph import (
    compute_graph_scores,
    compute_node_influence,
    graph_node_influence,
    prune_graph,
    remember_node_influence,
    target_weights,
)
from ct_engine.graph._edges import RowBlocks
from ct_engine.graph.pruning import INFLUENCE_COUNTS
from ct_engine.graph.scores import _scores
from tests.engine.graph.helpers import random_graph


def _fresh_copy(graph):
    """The same graph in new tensors: nothing it computes can come from a memo."""
    from dataclasses import fields, replace

    tensors = {
        f.name: getattr(graph, f.name).clone()
        for f in fields(graph)
        if isinstance(getattr(graph, f.name), torch.Tensor)
    }
    return replace(graph, **tensors)


@pytest.mark.parametrize("layout", ["dense", "coo", "csr"])
def test_pruning_and_scores_compute_influence_once_and_agree_with_a_fresh_computation(layout):
    graph = random_graph(seed=3, layout=layout)
    before = dict(INFLUENCE_COUNTS)

    pruned = prune_graph(graph, 0.8, 0.98)
    scores = compute_graph_scores(graph)
    influence = graph_node_influence(graph)

    assert INFLUENCE_COUNTS["computed"] - before["computed"] == 1
    assert INFLUENCE_COUNTS["reused"] - before["reused"] == 2
    # the float64 influence the lake stored before the memo: a double copy of the adjacency
    expected = compute_node_influence(graph.adjacency_matrix.double(), target_weights(graph))
    assert torch.equal(influence, expected)
    # the scores' own two passes (row sums and influence) give the same numbers exactly
    assert _scores(graph, RowBlocks(graph.adjacency_matrix)) == scores
    fresh = _fresh_copy(graph)
    again = prune_graph(fresh, 0.8, 0.98)
    assert torch.equal(again.node_mask, pruned.node_mask)
    assert torch.equal(again.edge_mask.rows, pruned.edge_mask.rows)
    assert torch.equal(again.edge_mask.cols, pruned.edge_mask.cols)


def test_a_changed_adjacency_or_target_is_computed_again():
    graph = random_graph(seed=4)
    first = graph_node_influence(graph).clone()

    graph.adjacency_matrix[graph.logit_slice.start, 0] += 5.0  # in place: a new version
    changed = graph_node_influence(graph)
    assert torch.equal(changed, graph_node_influence(_fresh_copy(graph)))
    assert not torch.equal(changed, first)

    graph.adjacency_matrix = graph.adjacency_matrix.clone() * 2  # a new tensor
    assert torch.equal(graph_node_influence(graph), graph_node_influence(_fresh_copy(graph)))

    graph.logit_probabilities = graph.logit_probabilities.flip(0)  # other target weights
    assert torch.equal(graph_node_influence(graph), graph_node_influence(_fresh_copy(graph)))


def _read_again(graph, tmp_path):
    """The graph saved and read back: a new object, as a range run gets when the graph cache
    let the graph go."""
    from ct_engine.graph import Graph

    path = tmp_path / "g.safetensors"
    graph.save(path)
    return Graph.load(path)


@pytest.mark.parametrize("layout", ["dense", "coo", "csr"])
def test_a_remembered_influence_gives_the_masks_and_scores_of_a_computed_one(layout, tmp_path):
    graph = random_graph(seed=5, layout=layout)
    influence = graph_node_influence(graph).clone()
    pruned = prune_graph(graph, 0.8, 0.98)
    scores = compute_graph_scores(graph)

    again = _read_again(graph, tmp_path)
    before = dict(INFLUENCE_COUNTS)
    remember_node_influence(again, influence)
    seeded = prune_graph(again, 0.8, 0.98)
    seeded_scores = compute_graph_scores(again)

    assert INFLUENCE_COUNTS["computed"] - before["computed"] == 0
    assert INFLUENCE_COUNTS["remembered"] - before["remembered"] == 1
    assert INFLUENCE_COUNTS["reused"] - before["reused"] == 2
    assert torch.equal(seeded.node_mask, pruned.node_mask)
    assert torch.equal(seeded.edge_mask.rows, pruned.edge_mask.rows)
    assert torch.equal(seeded.edge_mask.cols, pruned.edge_mask.cols)
    assert torch.equal(seeded.cumulative_scores, pruned.cumulative_scores)
    assert seeded_scores == scores
    # and a fresh computation on the graph read back agrees bit for bit
    assert torch.equal(graph_node_influence(_fresh_copy(again)), influence)


def test_a_remembered_influence_must_be_float64_of_every_node():
    graph = random_graph(seed=6)
    influence = graph_node_influence(_fresh_copy(graph))
    with pytest.raises(ValueError, match="float64"):
        remember_node_influence(graph, influence.float())
    with pytest.raises(ValueError, match="float64"):
        remember_node_influence(graph, influence[:-1])


def test_a_remembered_influence_is_not_used_once_the_adjacency_changes():
    graph = random_graph(seed=7)
    remember_node_influence(graph, torch.zeros(graph.n_nodes, dtype=torch.float64))
    assert not graph_node_influence(graph).any()  # taken as given: the caller vouches for it

    graph.adjacency_matrix[graph.logit_slice.start, 0] += 5.0  # in place: a new version
    assert torch.equal(graph_node_influence(graph), graph_node_influence(_fresh_copy(graph)))
