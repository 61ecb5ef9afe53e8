"""Pruning: thresholds, invariants, the edge mask and corner cases."""

from __future__ import annotations

import pytest
import torch

from ct_engine.graph import (
    EdgeMask,
    compute_node_influence,
    find_threshold,
    prune_graph,
    target_weights,
)
from ct_engine.graph._edges import EdgeList
from ct_engine.graph.influence import edge_scores_from_edges
from tests.engine.graph.helpers import random_graph, twelve_node_graph

LAYOUTS = ["dense", "coo", "csr"]


def _edge_set(mask: EdgeMask) -> set[tuple[int, int]]:
    return set(zip(mask.rows.tolist(), mask.cols.tolist(), strict=True))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_twelve_node_prune_defaults(layout):
    g = twelve_node_graph(layout)
    node_mask, edge_mask, cumulative = prune_graph(g)
    # Influence ≥ 1/4 carries 85 % ≥ 80 %; the three 1/4-ties are all kept, node 0 (1/12) goes.
    assert node_mask.nonzero().flatten().tolist() == [1, 3, 6, 8, 9, 10, 11]
    assert _edge_set(edge_mask) == {
        (11, 1), (11, 3), (11, 6), (11, 8), (3, 1), (3, 6), (1, 9), (1, 10)
    }  # fmt: skip
    assert not edge_mask.includes_zero_entries
    # Descending influence 1/3, 1/3, 1/4 ×3, 1/6, 1/12 of a total 5/3; ties in node order.
    expected = torch.zeros(12)
    for node, share in {1: 0.2, 6: 0.4, 3: 0.55, 8: 0.7, 9: 0.85, 10: 0.95, 0: 1.0}.items():
        expected[node] = share
    expected[[2, 4, 5, 7, 11]] = 1.0
    torch.testing.assert_close(cumulative, expected)


def test_twelve_node_cleanup_is_iterated():
    # At edge threshold 0.5 only the four logit edges (score 1/4 each) survive. Feature 1
    # then has no kept input and goes, and so does feature 3; errors 6 and 8 keep their
    # logit edges.
    node_mask, edge_mask, _ = prune_graph(twelve_node_graph(), 0.8, 0.5)
    assert node_mask.nonzero().flatten().tolist() == [6, 8, 9, 10, 11]
    assert _edge_set(edge_mask) == {(11, 6), (11, 8)}


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan"), "0.5x"])
def test_thresholds_outside_unit_interval_raise(bad):
    g = twelve_node_graph()
    with pytest.raises(ValueError, match="node_threshold"):
        prune_graph(g, node_threshold=bad)
    with pytest.raises(ValueError, match="edge_threshold"):
        prune_graph(g, edge_threshold=bad)


def test_find_threshold_keeps_the_smallest_top_set():
    scores = torch.tensor([1.0, 4.0, 0.0, 2.0, 1.0])  # total 8
    assert find_threshold(scores, 0.5) == 4.0  # 4 alone is 50 %
    assert find_threshold(scores, 0.51) == 2.0  # 4 + 2 = 75 %
    assert find_threshold(scores, 0.8) == 1.0  # both 1s are kept (ties)
    assert find_threshold(scores, 0.0) == 4.0
    assert find_threshold(scores, 1.0) == 1.0  # every positive score, not the zero
    assert find_threshold(torch.zeros(4), 0.8) == 0.0  # no mass: keep everything


def _check_invariants(g, node_mask, edge_mask):
    n_fe = g.token_slice.start  # features and errors
    S = g.n_features
    assert node_mask[g.token_slice.start :].all(), "tokens and logits are always kept"
    rows, cols = edge_mask.rows, edge_mask.cols
    assert (node_mask[rows] & node_mask[cols]).all(), "kept edges join kept nodes"
    has_out = torch.zeros(g.n_nodes, dtype=torch.bool)
    has_out[cols] = True
    has_in = torch.zeros(g.n_nodes, dtype=torch.bool)
    has_in[rows] = True
    assert (has_out[:n_fe] | ~node_mask[:n_fe]).all(), "kept features/errors have an out-edge"
    assert (has_in[:S] | ~node_mask[:S]).all(), "kept features have an in-edge"
    assert (g.dense_adjacency()[rows, cols] != 0).all(), "kept edges are real edges"
    keys = rows * g.n_nodes + cols
    assert (keys[1:] > keys[:-1]).all(), "edges are listed in row-major order"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("thresholds", [(0.8, 0.98), (0.5, 0.9), (0.3, 0.5), (1.0, 1.0)])
def test_pruning_invariants(seed, thresholds):
    g = random_graph(seed=seed, n_layers=5, n_pos=7)
    node_mask, edge_mask, cumulative = prune_graph(g, *thresholds)
    _check_invariants(g, node_mask, edge_mask)
    assert node_mask.dtype == torch.bool and node_mask.shape == (g.n_nodes,)
    assert ((cumulative >= 0) & (cumulative <= 1 + 1e-6)).all()


def test_pruning_is_monotone_in_the_edge_threshold():
    g = random_graph(seed=4, n_layers=5, n_pos=7)
    previous = None
    for edge_threshold in [0.0, 0.3, 0.6, 0.9, 0.95, 0.99, 1.0]:
        node_mask, edge_mask, _ = prune_graph(g, 0.8, edge_threshold)
        if previous is not None:
            assert (previous[0] & ~node_mask).sum() == 0
            assert previous[1] <= _edge_set(edge_mask)
        previous = node_mask, _edge_set(edge_mask)


def test_node_selection_is_monotone_in_the_node_threshold():
    g = random_graph(seed=5)
    influence = compute_node_influence(g.adjacency_matrix, target_weights(g).float())
    previous = torch.zeros(g.n_nodes, dtype=torch.bool)
    for node_threshold in [0.0, 0.2, 0.5, 0.8, 0.9, 0.99, 1.0]:
        selected = influence >= find_threshold(influence, node_threshold)
        assert (previous & ~selected).sum() == 0
        previous = selected


def test_threshold_one_keeps_every_node_and_edge_with_influence():
    # Deliberate deviation, pinned here: circuit-tracer's τ = 1 cut depends on float32
    # rounding (it may drop the smallest positive scores or keep the whole N×N mask); ours
    # keeps exactly the items with a positive score.
    g = random_graph(seed=6, n_layers=5, n_pos=7)
    influence = compute_node_influence(g.adjacency_matrix, target_weights(g).float())
    node_mask, edge_mask, _ = prune_graph(g, 1.0, 1.0)
    assert node_mask[influence > 0].all()
    assert not node_mask[: g.token_slice.start][influence[: g.token_slice.start] == 0].any()
    edges = EdgeList.from_matrix(g.adjacency_matrix)
    kept_nodes = node_mask[edges.rows] & node_mask[edges.cols]
    scores = edge_scores_from_edges(edges.select(kept_nodes), target_weights(g))
    positive = scores.select(scores.values > 0)
    assert _edge_set(edge_mask) == set(
        zip(positive.rows.tolist(), positive.cols.tolist(), strict=True)
    )
    assert not edge_mask.includes_zero_entries


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_sparse_and_dense_adjacency_prune_identically(layout):
    dense = prune_graph(random_graph(seed=7))
    sparse = prune_graph(random_graph(seed=7, layout=layout))
    assert torch.equal(dense.node_mask, sparse.node_mask)
    assert torch.equal(dense.edge_mask.rows, sparse.edge_mask.rows)
    assert torch.equal(dense.edge_mask.cols, sparse.edge_mask.cols)
    assert torch.equal(dense.cumulative_scores, sparse.cumulative_scores)


def test_zero_tail_keeps_every_entry_like_circuit_tracer():
    # No target weight ⇒ every score is 0: the cut lands in the zero tail, threshold 0.
    g = random_graph(seed=8)
    g.logit_probabilities = torch.zeros_like(g.logit_probabilities)
    node_mask, edge_mask, cumulative = prune_graph(g)
    assert node_mask.all()
    assert edge_mask.includes_zero_entries
    assert edge_mask.dense().all()
    # The listed edges are the real (nonzero) edges of the node-pruned graph.
    rows, cols, _ = g.nonzero_edges()
    assert torch.equal(edge_mask.rows, rows) and torch.equal(edge_mask.cols, cols)
    assert (cumulative == 0).all()  # circuit-tracer's 0/0 gives NaN here


def test_edge_mask_accessors():
    g = twelve_node_graph()
    _, mask, _ = prune_graph(g)
    dense = mask.dense()
    assert dense.shape == (12, 12) and int(dense.sum()) == len(mask) == 8
    assert dense[11, 1] and dense[1, 9] and not dense[0, 9]
    sparse = mask.to_sparse_coo()
    assert torch.equal(sparse.to_dense(), dense)
    assert mask.values_in(g.adjacency_matrix).tolist() == [10.0] * 8
    assert mask.values_in(g.adjacency_matrix.to_sparse_csr()).tolist() == [10.0] * 8
