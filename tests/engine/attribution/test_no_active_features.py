"""A prompt where no transcoder feature fires still gives a valid graph (tokens, errors and
logits only) that prunes, scores, saves and loads."""

from __future__ import annotations

import pytest
import torch

from ct_engine.attribution import attribute
from ct_engine.graph import Graph, compute_graph_scores, prune_graph
from ct_engine.replacement import ReplacementModel
from ct_engine.tiny import FAMILY_HOOKS, build_random_transcoders

from ..conftest import PROMPT, TINY


@pytest.fixture(scope="module")
def silent_model(tiny_model_dir, tmp_path_factory):
    """The tiny Llama with JumpReLU thresholds far above any pre-activation."""
    spec = TINY["llama"]
    path = build_random_transcoders(
        tmp_path_factory.mktemp("silent") / "plt",
        n_layers=spec.n_layers,
        d_model=spec.d_model,
        d_transcoder=4 * spec.d_model,
        feature_input_hook=FAMILY_HOOKS["llama"][0],
        feature_output_hook=FAMILY_HOOKS["llama"][1],
        threshold_scale=1e6,
        seed=3,
    )
    return ReplacementModel.from_pretrained(tiny_model_dir("llama"), path, device="cpu")


@pytest.mark.parametrize("prompt", [PROMPT, "the"])
def test_no_active_feature_gives_a_valid_graph(silent_model, prompt, tmp_path):
    graph = attribute(prompt, silent_model, max_n_logits=3)
    assert graph.n_features == 0 and len(graph.active_features) == 0
    T, L = graph.n_pos, graph.n_layers
    assert graph.n_nodes == L * T + T + graph.n_logits
    # the logits are still explained, by errors and tokens
    logit_rows = graph.adjacency_matrix[graph.logit_slice]
    assert logit_rows.abs().sum() > 0
    assert torch.isfinite(graph.adjacency_matrix).all()
    pruned = prune_graph(graph, 0.8, 0.98)
    assert pruned.node_mask[graph.logit_slice].all()
    replacement, completeness = compute_graph_scores(graph)
    assert 0 <= replacement <= 1 and 0 <= completeness <= 1
    graph.to_pt(tmp_path / "g.pt")
    again = Graph.from_pt(tmp_path / "g.pt")
    assert again.n_features == 0
    assert torch.equal(again.adjacency_matrix, graph.adjacency_matrix)
