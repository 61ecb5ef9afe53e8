"""Node and edge influence and partial influence."""

from __future__ import annotations

import pytest
import torch

from ct_engine.graph import (
    compute_edge_influence,
    compute_influence,
    compute_node_influence,
    compute_partial_influences,
    normalize_matrix,
)
from ct_engine.graph.influence import _topological_row_coefficients, abs_row_sums
from tests.engine.graph.helpers import random_graph, to_layout, twelve_node_adjacency

LAYOUTS = ["dense", "coo", "csr"]
# Node influence of the 12-node fixture, as documented by circuit-tracer's test_graph.py.
TWELVE_NODE_INFLUENCE = [1 / 12, 1 / 3, 0, 1 / 4, 0, 0, 1 / 3, 0, 1 / 4, 1 / 4, 1 / 6, 0]


def _logit_weights(n: int = 12) -> torch.Tensor:
    w = torch.zeros(n)
    w[-1] = 1.0
    return w


@pytest.mark.parametrize("layout", LAYOUTS)
def test_twelve_node_influence(layout):
    A = to_layout(twelve_node_adjacency(), layout)
    influence = compute_node_influence(A, _logit_weights())
    assert influence.dtype == torch.float32
    torch.testing.assert_close(influence, torch.tensor(TWELVE_NODE_INFLUENCE))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_twelve_node_edge_influence_after_pruning(layout):
    # Node pruning at 0.8 drops node 0 (influence 1/12) and so the edges 0 <- 9 and 3 <- 0.
    pruned = twelve_node_adjacency()
    pruned[0, 9] = 0
    pruned[3, 0] = 0
    expected = torch.zeros(12, 12)
    expected[11, [1, 3, 6, 8]] = 1 / 4
    expected[3, [1, 6]] = 1 / 8
    expected[1, [9, 10]] = 3 / 16
    scores = compute_edge_influence(to_layout(pruned, layout), _logit_weights())
    assert scores.layout == to_layout(pruned, layout).layout
    torch.testing.assert_close(scores.to_dense(), expected)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_normalize_matrix(layout):
    A = torch.tensor([[0.0, 3.0, -1.0], [0.0, 0.0, 0.0], [2e-11, 0.0, 0.0]])
    out = normalize_matrix(to_layout(A, layout))
    assert out.layout == to_layout(A, layout).layout
    # Row sums clamp at 1e-10, so a tiny row is not scaled up to 1.
    expected = torch.tensor([[0.0, 0.75, 0.25], [0.0, 0.0, 0.0], [0.2, 0.0, 0.0]])
    torch.testing.assert_close(out.to_dense(), expected)


def test_compute_influence_equals_the_series_closed_form():
    g = random_graph(seed=1)
    A = normalize_matrix(g.adjacency_matrix).double()
    w = torch.zeros(g.n_nodes, dtype=torch.float64)
    w[g.logit_slice] = g.logit_probabilities.double()
    closed_form = w @ (torch.linalg.inv(torch.eye(g.n_nodes, dtype=torch.float64) - A)) - w
    torch.testing.assert_close(compute_influence(A, w), closed_form)


def test_compute_influence_raises_on_a_cycle():
    A = torch.zeros(3, 3)
    A[0, 1] = A[1, 0] = 1.0
    A[2, 0] = 1.0
    with pytest.raises(RuntimeError, match="converge"):
        compute_influence(A, torch.tensor([0.0, 0.0, 1.0]), max_iter=50)


def _partial_reference(rows, weights, row_nodes, n_total):
    """The definition literally: dense normalised rows, propagate prod[row_nodes] @ Â."""
    norm = rows.abs() / rows.abs().sum(1, keepdim=True).clamp(min=1e-8)
    prod = torch.zeros(n_total, dtype=rows.dtype)
    prod[-len(weights) :] = weights
    total = torch.zeros_like(prod)
    while True:
        prod = prod[row_nodes] @ norm
        if not prod.any():
            return total
        total += prod


def test_partial_influences_match_the_spec_and_full_influence():
    g = random_graph(seed=2)
    A = g.dense_adjacency()
    K = g.n_logits
    # Only the logit rows and every other feature row have been computed so far.
    row_nodes = torch.cat(
        [torch.arange(g.n_nodes - K, g.n_nodes), torch.arange(0, g.n_features, 2)]
    )
    rows = A[row_nodes]
    # Rows read only lower-numbered nodes here, so the series is summed by a triangular solve.
    weights = torch.zeros(g.n_nodes)
    weights[g.logit_slice] = g.logit_probabilities
    assert (
        _topological_row_coefficients(rows.abs(), rows.abs().sum(1), row_nodes, weights) is not None
    )
    partial = compute_partial_influences(rows, g.logit_probabilities, row_nodes.int())
    expected = _partial_reference(
        rows.double(), g.logit_probabilities.double(), row_nodes, g.n_nodes
    )
    torch.testing.assert_close(partial.double(), expected, rtol=1e-5, atol=1e-7)
    assert partial.dtype == torch.float32
    # Unexpanded features (odd indices) pass nothing on but still receive influence.
    assert partial[1 : g.n_features : 2].abs().sum() > 0

    # With every row computed, partial influence is the graph's node influence. Features read
    # from error and token nodes, which come after them and now have (empty) rows: not in
    # topological order, so this takes the iterated path.
    all_rows = torch.arange(g.n_nodes)
    assert _topological_row_coefficients(A.abs(), A.abs().sum(1), all_rows, weights) is None
    full = compute_partial_influences(A, g.logit_probabilities, all_rows)
    w = torch.zeros(g.n_nodes)
    w[g.logit_slice] = g.logit_probabilities
    torch.testing.assert_close(full, compute_node_influence(A, w), rtol=1e-5, atol=1e-7)


def test_partial_influences_fail_on_a_cycle():
    rows = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    with pytest.raises(RuntimeError, match="Failed to converge"):
        compute_partial_influences(rows, torch.tensor([1.0]), torch.tensor([0, 1, 2]), max_iter=20)


def test_partial_influences_over_many_row_blocks():
    """More rows than one block (|R| is processed in row blocks, never copied whole): the
    result equals the spec's iteration on the full normalised matrix."""
    torch.manual_seed(0)
    n, k = 3000, 3
    nodes = torch.cat([torch.arange(n - k, n), torch.randperm(n - k - 100)[:1300] + 100])
    rows = torch.zeros(len(nodes), n, dtype=torch.float64)
    for r, node in enumerate(nodes.tolist()):
        lim = min(node, n - k)  # a row reads only lower-numbered nodes
        keep = torch.rand(lim, dtype=torch.float64) < 0.3
        rows[r, :lim] = torch.randn(lim, dtype=torch.float64) * keep
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)

    normalised = rows.abs() / rows.abs().sum(1, keepdim=True).clamp(min=1e-8)
    prod = torch.zeros(n, dtype=torch.float64)
    prod[-k:] = weights
    expected = torch.zeros(n, dtype=torch.float64)
    while prod.any():
        prod = prod[nodes] @ normalised
        expected += prod
    got = compute_partial_influences(rows, weights, nodes)
    torch.testing.assert_close(got, expected, atol=1e-15, rtol=1e-12)


def test_partial_influences_take_row_sums_kept_as_rows_arrive():
    """The ranking keeps each row's |row| sum from when the row was computed; those sums,
    taken a few rows (or one row) at a time, give the ranking of a fresh computation exactly."""
    g = random_graph(seed=3)
    A = g.dense_adjacency()
    K = g.n_logits
    row_nodes = torch.cat(
        [torch.arange(g.n_nodes - K, g.n_nodes), torch.arange(0, g.n_features, 3)]
    )
    rows = A[row_nodes].contiguous()
    chunks = [1, 2, 5, 1, 64]
    kept, start = [], 0
    while start < len(rows):
        size = chunks[len(kept) % len(chunks)]
        kept.append(abs_row_sums(rows[start : start + size]))
        start += size
    sums = torch.cat(kept)
    fresh = compute_partial_influences(rows, g.logit_probabilities, row_nodes)
    cached = compute_partial_influences(rows, g.logit_probabilities, row_nodes, row_abs_sums=sums)
    assert torch.equal(cached, fresh)
    with pytest.raises(ValueError, match="row sums for"):
        compute_partial_influences(rows, g.logit_probabilities, row_nodes, row_abs_sums=sums[1:])
