"""Replacement and completeness scores."""

from __future__ import annotations

import pytest
import torch

from ct_engine.graph import compute_graph_scores, compute_pruned_graph_scores
from tests.engine.graph.helpers import graph_from_adjacency, random_graph, to_layout


def _nine_node_adjacency() -> torch.Tensor:
    """circuit-tracer's ``test_compute_graph_scores`` graph.

    Features 0-1, errors 2-5 (L = 2, T = 2), tokens 6-7, logit 8; tokens feed features
    (0.8) and errors (0.2); features feed the logit (0.5 each), error 2 too (0.1).
    """
    A = torch.zeros(9, 9)
    A[0, 6] = A[1, 7] = 0.8
    A[8, 0] = A[8, 1] = 0.5
    A[2, 6] = A[3, 7] = 0.2
    A[8, 2] = 0.1
    return A


@pytest.mark.parametrize("layout", ["dense", "coo", "csr"])
def test_nine_node_scores_exact(layout):
    # Influence: features 5/11 each, error 2 1/11, token 6 6/11, token 7 5/11.
    # replacement = 1 / (1 + 1/11) = 11/12; completeness = (3 - 1/11) / 3 = 32/33.
    g = graph_from_adjacency(
        to_layout(_nine_node_adjacency(), layout), 2, 2, 2, torch.tensor([1.0])
    )
    replacement, completeness = compute_graph_scores(g)
    assert replacement == pytest.approx(11 / 12, rel=1e-6)
    assert completeness == pytest.approx(32 / 33, rel=1e-6)


def test_no_error_mass_gives_replacement_one():
    A = _nine_node_adjacency()
    A[:, 2:6] = 0  # nothing reads from error nodes
    g = graph_from_adjacency(A, 2, 2, 2, torch.tensor([1.0]))
    assert compute_graph_scores(g) == (1.0, 1.0)


def test_only_error_mass():
    A = torch.zeros(9, 9)
    A[8, 2] = 1.0  # the logit reads only from an error node
    g = graph_from_adjacency(A, 2, 2, 2, torch.tensor([1.0]))
    # The logit is fully explained by an error (0 complete, weight 1); the error node has no
    # inputs and counts as complete (weight = its influence 1): completeness 1/2.
    assert compute_graph_scores(g) == (0.0, 0.5)


@pytest.mark.parametrize("seed", range(5))
def test_scores_lie_in_the_unit_interval(seed):
    replacement, completeness = compute_graph_scores(random_graph(seed=seed))
    assert 0.0 <= replacement <= 1.0
    assert 0.0 <= completeness <= 1.0


def test_pruned_scores_fold_pruned_features_into_errors():
    g = graph_from_adjacency(_nine_node_adjacency(), 2, 2, 2, torch.tensor([1.0]))
    keep_all = torch.ones(9, dtype=torch.bool)
    assert compute_pruned_graph_scores(g, keep_all) == pytest.approx(compute_graph_scores(g))
    # Prune feature 1 (layer 0, pos 0): its 0.5 into the logit joins error node 2 (0.1 -> 0.6).
    # The logit then reads f0 5/11 and e2 6/11; token 6 gets all the token influence (1).
    # replacement = 1 / (1 + 6/11) = 11/17; completeness = (5/11 + 5/11 + 6/11 + 1) / 3 = 9/11.
    mask = keep_all.clone()
    mask[1] = False
    replacement, completeness = compute_pruned_graph_scores(g, mask)
    assert replacement == pytest.approx(11 / 17, rel=1e-6)
    assert completeness == pytest.approx(9 / 11, rel=1e-6)
