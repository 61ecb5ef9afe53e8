"""Pruning and scoring streamed over small row blocks give the dense computation's results.

The real graphs these functions are for have hundreds of millions of edges and are read in
row blocks of bounded size. Here the blocks are shrunk to 23 rows so that a graph of a few
hundred nodes spans hundreds of blocks, blocks straddle layers, and the one-sweep
influence must solve rows inside a block against each other.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ct_engine.graph._edges as edges_module
from ct_engine.graph import (
    compute_graph_scores,
    compute_node_influence,
    compute_pruned_graph_scores,
    prune_graph,
    target_weights,
)
from ct_engine.graph._edges import RowBlocks
from ct_engine.graph.influence import _sweep
from tests.engine.graph.helpers import (
    graph_from_adjacency,
    load_reference,
    random_graph,
    reference_graph,
    to_layout,
)

REF = load_reference()


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of 23 rows."""
    monkeypatch.setattr(edges_module, "ROW_BLOCK_ENTRIES", 23 * 800)


def _dense_influence(A: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``w·((I - Â)⁻¹ - I)`` with dense float64 matrices."""
    M = A.double().abs()
    M = M / M.sum(1, keepdim=True).clamp(min=1e-10)
    eye = torch.eye(len(M), dtype=torch.float64)
    return w @ torch.linalg.inv(eye - M) - w


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_masks_scores_and_influence_match_recorded_results_over_small_blocks(tiny_blocks, layout):
    g = reference_graph(REF, "g800", layout)
    assert len(RowBlocks(g.adjacency_matrix).spans()) >= 25
    w = target_weights(g)
    influence = compute_node_influence(g.adjacency_matrix, w.float())
    torch.testing.assert_close(
        influence.double(), _dense_influence(g.dense_adjacency(), w), rtol=1e-5, atol=1e-7
    )
    torch.testing.assert_close(
        influence, torch.from_numpy(REF["g800/node_influence"]), rtol=1e-5, atol=1e-7
    )
    for pair in [(0.8, 0.98)]:
        node_mask, edge_mask, _ = prune_graph(g, *pair)
        tag = f"g800/prune_{pair[0]}_{pair[1]}"
        assert torch.equal(node_mask, torch.from_numpy(REF[f"{tag}/node_mask"]))
        rows = torch.from_numpy(REF["g800/rows"].astype(np.int64))
        cols = torch.from_numpy(REF["g800/cols"].astype(np.int64))
        bits = np.unpackbits(REF[f"{tag}/edge_bits"])[: len(rows)].astype(bool)
        assert torch.equal(edge_mask.rows, rows[bits]) and torch.equal(edge_mask.cols, cols[bits])
        dense = g.dense_adjacency()
        assert torch.equal(edge_mask.values_in(g.adjacency_matrix), dense[rows[bits], cols[bits]])
    scores = compute_graph_scores(g)
    assert scores == pytest.approx(tuple(REF["g800/scores"]), rel=1e-5, abs=1e-6)


def test_one_sweep_in_node_order_and_iteration_otherwise_agree(tiny_blocks):
    g = random_graph(seed=3, n_layers=5, n_pos=8, feats_per_cell=4.0)
    A, w = g.dense_adjacency(), target_weights(g)
    blocks = RowBlocks(A)
    sums = blocks.abs_row_sums()
    scale = sums.clamp(min=1e-10).reciprocal()

    def matrix(start, stop):
        return blocks.block(start, stop).abs_().mul_(scale[start:stop].unsqueeze(1))

    swept = _sweep(blocks.spans(), matrix, w, sums > 0)
    assert swept is not None  # attribution node order: one sweep
    torch.testing.assert_close(swept, _dense_influence(A, w))
    # Reversed node order: every row reads higher-numbered nodes, so the sweep refuses and
    # the series is iterated; the influence is the same, permuted.
    flip = torch.arange(g.n_nodes - 1, -1, -1)
    flipped = A[flip][:, flip]
    fb = RowBlocks(flipped)
    fsums = fb.abs_row_sums()
    fscale = fsums.clamp(min=1e-10).reciprocal()

    def fmatrix(start, stop):
        return fb.block(start, stop).abs_().mul_(fscale[start:stop].unsqueeze(1))

    assert _sweep(fb.spans(), fmatrix, w[flip], fsums > 0) is None
    torch.testing.assert_close(compute_node_influence(flipped.double(), w[flip]), swept[flip])


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_pruned_scores_equal_scores_of_the_folded_dense_graph(tiny_blocks, layout):
    g = random_graph(seed=4, n_layers=4, n_pos=8, feats_per_cell=4.0, layout=layout)
    node_mask = prune_graph(g, 0.5, 0.9).node_mask
    assert not node_mask[: g.n_features].all()
    # Fold by hand, densely: a pruned feature's column joins its error node's, its row goes.
    A = g.dense_adjacency().clone()
    feats = g.active_features[g.selected_features]
    for f in (~node_mask[: g.n_features]).nonzero().squeeze(1).tolist():
        error = g.error_node(int(feats[f, 0]), int(feats[f, 1]))
        A[:, error] += A[:, f]
        A[:, f] = 0
        A[f] = 0
    folded = graph_from_adjacency(
        A, g.n_features, g.n_layers, g.n_pos, g.logit_probabilities, g.active_features
    )
    expected = compute_graph_scores(folded)
    assert compute_pruned_graph_scores(g, node_mask) == pytest.approx(expected, rel=1e-6)
    assert compute_graph_scores(g) == pytest.approx(
        compute_graph_scores(
            graph_from_adjacency(
                to_layout(g.dense_adjacency(), "coo"),
                g.n_features,
                g.n_layers,
                g.n_pos,
                g.logit_probabilities,
                g.active_features,
            )
        ),
        rel=1e-9,
    )


def test_a_float64_dense_adjacency_is_not_changed_by_reading_it():
    g = random_graph(seed=5)
    A = g.dense_adjacency().double()
    before = A.clone()
    compute_node_influence(A, target_weights(g))
    assert torch.equal(A, before)
