"""The finite-difference oracle on tiny Gemma-2 and Llama models.

Under full freezing the model is linear, so adding a source's vector once more (doubling an
error, a token embedding, or a feature's activation) must change every selected feature's
pre-activation and every target's demeaned logit by exactly the adjacency column.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from ct_engine.attribution import attribute
from ct_engine.attribution.oracle import check_edges

from ..conftest import PROMPT, TRANSCODER_KINDS

# Tolerances of circuit-tracer's own oracle tests, float32.
TOL = {
    "error": dict(atol=1e-3, rtol=1e-3),
    "token": dict(atol=1e-3, rtol=1e-3),
    "feature": dict(atol=5e-4, rtol=1e-5),
}
LOGIT_TOL = dict(atol=1e-5, rtol=1e-3)


def assert_oracle(model, graph, n_features=50):
    checks = check_edges(model, graph, n_features=n_features)
    kinds = {c.kind for c in checks}
    assert kinds == {"error", "token", "feature"}
    L, T = model.n_layers, len(graph.input_tokens)
    assert sum(c.kind == "error" for c in checks) == L * (T - 1)
    assert sum(c.kind == "token" for c in checks) == T - 1
    assert sum(c.kind == "feature" for c in checks) == min(n_features, graph.n_features)
    nonzero = 0
    for c in checks:
        torch.testing.assert_close(
            c.observed_features, c.predicted_features, **TOL[c.kind], msg=f"{c.kind} {c.node}"
        )
        torch.testing.assert_close(
            c.observed_logits, c.predicted_logits, **LOGIT_TOL, msg=f"{c.kind} {c.node} logits"
        )
        nonzero += int(c.predicted_features.abs().max() > 1e-3)
    # The check is not vacuous: most columns carry real effects.
    assert nonzero > len(checks) // 2


@pytest.mark.parametrize("kind", sorted(TRANSCODER_KINDS))
@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_every_edge_equals_the_frozen_model_effect(replacement_model, family, kind):
    model = replacement_model(family, kind)
    graph = attribute(PROMPT, model, batch_size=32)
    assert graph.n_features == len(graph.active_features) > 100
    assert_oracle(model, graph)


@pytest.mark.parametrize("kind", ["plt_jumprelu", "clt_skip"])
def test_oracle_on_qwen3(replacement_model, kind):
    model = replacement_model("qwen3", kind)
    assert_oracle(model, attribute(PROMPT, model, batch_size=32))


def test_capped_rows_are_the_uncapped_rows(replacement_model):
    """Greedy selection changes which rows exist, never their values."""
    model = replacement_model("gemma2", "plt_skip")
    full = attribute(PROMPT, model, batch_size=64)
    capped = attribute(PROMPT, model, batch_size=16, max_feature_nodes=40, update_interval=1)
    sel = capped.selected_features
    assert len(sel) == 40 and torch.all(sel[1:] > sel[:-1])
    S, n_src = len(sel), capped.n_nodes - capped.n_logits
    columns = torch.cat([sel, torch.arange(full.n_features, full.n_nodes - full.n_logits)])
    expected_features = full.adjacency_matrix[sel][:, columns]
    torch.testing.assert_close(capped.adjacency_matrix[:S, :n_src], expected_features)
    torch.testing.assert_close(
        capped.adjacency_matrix[-capped.n_logits :, :n_src],
        full.adjacency_matrix[-full.n_logits :][:, columns],
    )
    # Greedy by influence: the kept features carry more logit attribution than the rest.
    logit_mass = full.adjacency_matrix[-full.n_logits :, : full.n_features].abs().sum(0)
    dropped = torch.ones(full.n_features, dtype=torch.bool)
    dropped[sel] = False
    assert logit_mass[sel].mean() > 3 * logit_mass[dropped].mean()


def test_structural_zeros(replacement_model):
    """Sources never feed targets before them: no edges from later positions, none from
    same-or-later layers for per-layer features, empty error/token rows and logit columns."""
    model = replacement_model("llama", "plt_jumprelu")
    graph = attribute(PROMPT, model, batch_size=64)
    A = graph.adjacency_matrix
    S = graph.n_features
    layers, positions = graph.active_features[graph.selected_features, :2].T
    assert A[S : graph.n_nodes - graph.n_logits].abs().sum() == 0
    assert A[:, graph.n_nodes - graph.n_logits :].abs().sum() == 0
    later_pos = positions[None, :] > positions[:, None]
    same_or_later_layer = layers[None, :] >= layers[:, None]
    assert A[:S, :S][later_pos | same_or_later_layer].abs().sum() == 0
    assert (A[:S, :S] != 0).float().mean() > 0.1


def test_oracle_on_a_capped_graph(replacement_model):
    """With ``max_feature_nodes``, the kept rows are still exact effects."""
    model = replacement_model("llama", "clt_skip")
    graph = attribute(PROMPT, model, batch_size=16, max_feature_nodes=60)
    assert graph.n_features == 60
    assert_oracle(model, graph, n_features=60)


def test_oracle_catches_a_wrong_edge(replacement_model):
    """A corrupted adjacency entry is caught: the oracle can fail."""
    model = replacement_model("llama", "plt_jumprelu")
    graph = attribute(PROMPT, model, batch_size=32)
    node = graph.error_node(0, 3)
    graph.adjacency_matrix[-1, node] += 0.01
    with pytest.raises(AssertionError):
        assert_oracle(model, graph, n_features=1)


LONG_PROMPT = " ".join(
    "the capital of the country where Mira lives is Paris and Tom speaks".split() * 3
)


def test_prefix_buckets_give_the_full_prompt_rows(replacement_model, monkeypatch):
    """Rows computed on prompt prefixes (long prompts) equal rows on the whole prompt, and
    pass the oracle."""
    # The submodule, not the function that ct_engine.attribution re-exports under its name.
    attribute_module = importlib.import_module("ct_engine.attribution.attribute")
    model = replacement_model("llama", "plt_skip")
    tokens = model.ensure_tokenized(LONG_PROMPT)
    assert len(attribute_module.prefix_lengths(len(tokens))) == 4
    bucketed = attribute(LONG_PROMPT, model, batch_size=64)
    monkeypatch.setattr(attribute_module, "prefix_lengths", lambda n_pos: [n_pos])
    whole = attribute(LONG_PROMPT, model, batch_size=64)
    torch.testing.assert_close(bucketed.adjacency_matrix, whole.adjacency_matrix)
    assert_oracle(model, bucketed, n_features=30)
