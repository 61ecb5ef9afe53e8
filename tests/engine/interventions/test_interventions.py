"""Feature interventions on tiny models.

The central check is the oracle through the public API: with every layer constrained, setting
a feature to twice its pre-activation changes each selected feature's pre-activation and each
target's demeaned logit by the graph's adjacency column. The other tests pin down the
semantics a researcher relies on: absolute values, cross-layer decoders, propagation through
the same forward, and clear errors.
"""

from __future__ import annotations

import pytest
import torch

from ct_engine.attribution import attribute
from ct_engine.replacement.edits import Patch, Pins

from ..conftest import PROMPT, TRANSCODER_KINDS

FEATURE_TOL = dict(atol=5e-4, rtol=1e-5)
LOGIT_TOL = dict(atol=1e-5, rtol=1e-3)


def demeaned(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    last = logits[0, -1].double()
    return last[ids] - last.mean()


@pytest.mark.parametrize(
    "family,kind",
    [("llama", kind) for kind in sorted(TRANSCODER_KINDS)]
    + [("gemma2", "plt_jumprelu"), ("gemma2", "clt_skip"), ("qwen3", "plt_skip")],
)
def test_doubling_a_feature_under_full_constraint_moves_targets_by_its_column(
    replacement_model, family, kind
):
    model = replacement_model(family, kind)
    L = model.n_layers
    with model.zero_softcap():
        graph = attribute(PROMPT, model, batch_size=64)
        adjacency = graph.dense_adjacency()
        S, K = graph.n_features, len(graph.logit_targets)
        selected = graph.active_features[graph.selected_features]
        layers, positions, feats = selected.unbind(1)
        ids = torch.tensor([t.vocab_idx for t in graph.logit_targets])
        logits0, pre0 = model.get_activations(PROMPT, apply_activation_function=False)
        base_features = pre0[layers, positions, feats].double()
        base_logits = demeaned(logits0, ids)
        nodes = torch.randperm(S, generator=torch.Generator().manual_seed(0))[:25].tolist()
        moved = 0
        for node in nodes:
            layer, pos, feat = (int(v) for v in selected[node])
            value = 2 * pre0[layer, pos, feat]
            logits, pre = model.feature_intervention(
                PROMPT,
                [(layer, pos, feat, value)],
                constrained_layers=range(L),
                apply_activation_function=False,
            )
            observed = (pre[layers, positions, feats].double() - base_features).float()
            torch.testing.assert_close(observed, adjacency[:S, node], **FEATURE_TOL)
            observed_logits = (demeaned(logits, ids) - base_logits).float()
            torch.testing.assert_close(observed_logits, adjacency[-K:, node], **LOGIT_TOL)
            moved += int(adjacency[:S, node].abs().max() > 1e-3)
        assert moved > len(nodes) // 3  # the columns are not all empty


def _active_feature(model, layer=None, pos=-1):
    """(layer, pos, feature, activation) of the strongest active feature."""
    _, acts = model.get_activations(PROMPT)
    layer = model.n_layers - 1 if layer is None else layer
    pos = pos % acts.shape[1]
    feat = int(acts[layer, pos].argmax())
    return layer, pos, feat, float(acts[layer, pos, feat])


def _patched_logits(model, output_deltas, *, freeze_attention=False):
    """Logits with ``output_deltas (L, T, D)`` added to MLP outputs, patterns optionally pinned."""
    tokens = model.ensure_tokenized(PROMPT)
    patch = Patch(model.transcoders, output_deltas=output_deltas)
    pins = None
    if freeze_attention:
        pins = Pins(model.impl.capture_freeze_state(tokens), attention=True, norms=False)
    return model.impl.edited_run(tokens[None], patch, pins)


def test_values_are_absolute_activations(replacement_model):
    model = replacement_model("llama", "plt_jumprelu")
    layer, pos, feat, act = _active_feature(model)
    clean, _ = model.get_activations(PROMPT)
    same, _ = model.feature_intervention(PROMPT, [(layer, pos, feat, act)])
    torch.testing.assert_close(same, clean, atol=1e-5, rtol=0)
    # Setting it to 3.5 adds (3.5 − a)·W_dec at its layer and position, nothing else.
    value = 3.5
    logits, _ = model.feature_intervention(
        PROMPT, [(layer, pos, feat, value)], freeze_attention=False
    )
    deltas = torch.zeros(model.n_layers, len(model.ensure_tokenized(PROMPT)), model.d_model)
    vec = model.transcoders.decoder_vectors(layer, torch.tensor([feat]))[0]
    deltas[layer, pos] = (value - act) * vec
    torch.testing.assert_close(logits, _patched_logits(model, deltas), atol=1e-5, rtol=0)
    assert (logits - clean).abs().max() > 1e-3


def test_cross_layer_deltas_reach_every_later_layer(replacement_model):
    model = replacement_model("llama", "clt")
    layer, pos, feat, act = _active_feature(model, layer=0, pos=3)
    logits, _ = model.feature_intervention(PROMPT, [(layer, pos, feat, 0.0)])
    vecs = model.transcoders.decoder_vectors(0, torch.tensor([feat]))[0]  # (L, D)
    T = len(model.ensure_tokenized(PROMPT))
    every = torch.zeros(model.n_layers, T, model.d_model)
    every[:, pos] = -act * vecs
    expected = _patched_logits(model, every, freeze_attention=True)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    own_only = torch.zeros_like(every)
    own_only[0, pos] = -act * vecs[0]
    assert (logits - _patched_logits(model, own_only, freeze_attention=True)).abs().max() > 1e-3
    # freeze_attention matters: without pinned patterns the result differs.
    assert (logits - _patched_logits(model, every)).abs().max() > 1e-3


def test_unconstrained_deltas_are_measured_in_the_intervened_forward(replacement_model):
    """A later layer's Δ uses the activation that the earlier intervention produced."""
    model = replacement_model("llama", "plt_skip")
    first = (0, 4, _active_feature(model, layer=0, pos=4)[2], 6.0)
    layer, pos, feat, _ = _active_feature(model, layer=1, pos=-1)
    _, after_first = model.feature_intervention(PROMPT, [first], freeze_attention=False)
    shifted = float(after_first[layer, pos, feat])
    logits, _ = model.feature_intervention(
        PROMPT, [first, (layer, pos, feat, 0.0)], freeze_attention=False
    )
    _, clean = model.get_activations(PROMPT)
    assert abs(shifted - float(clean[layer, pos, feat])) > 1e-3  # the first one mattered
    T = len(model.ensure_tokenized(PROMPT))
    deltas = torch.zeros(model.n_layers, T, model.d_model)
    tc = model.transcoders
    deltas[0, 4] = (6.0 - float(clean[0, 4, first[2]])) * tc.decoder_vectors(
        0, torch.tensor([first[2]])
    )[0]
    deltas[layer, pos] = -shifted * tc.decoder_vectors(layer, torch.tensor([feat]))[0]
    torch.testing.assert_close(logits, _patched_logits(model, deltas), atol=1e-5, rtol=0)


def test_return_activations_and_sparse_do_not_change_logits(replacement_model):
    model = replacement_model("gemma2", "clt_skip")
    layer, pos, feat, act = _active_feature(model, layer=1)
    interventions = [(layer, pos, feat, 2 * act), (0, slice(2, None), [1, 5], 0.5)]
    results = {}
    for return_activations in (True, False):
        for sparse in (True, False):
            results[return_activations, sparse] = model.feature_intervention(
                PROMPT, interventions, return_activations=return_activations, sparse=sparse
            )
    reference, dense = results[True, False]
    for (return_activations, sparse), (logits, acts) in results.items():
        assert torch.equal(logits, reference)
        if not return_activations:
            assert acts is None
        elif sparse:
            assert acts.is_sparse and acts.is_coalesced()
            assert torch.equal(acts.to_dense(), dense)
    assert dense.shape == (model.n_layers, logits.shape[1], model.transcoders.d_transcoder)
    assert (dense[:, 0] == 0).all()


def test_batched_activations_zero_position_zero_of_every_row(replacement_model):
    model = replacement_model("llama", "plt_jumprelu")
    prompts = ["the capital of Texas is Austin", "the river of France is Paris"]
    logits, acts = model.get_activations(prompts)
    assert logits.shape[0] == acts.shape[0] == 2
    for row, prompt in enumerate(prompts):
        single_logits, single_acts = model.get_activations(prompt)
        torch.testing.assert_close(logits[row], single_logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(acts[row], single_acts, atol=1e-5, rtol=1e-5)
        assert (acts[row, :, 0] == 0).all() and acts[row, :, 1:].abs().sum() > 0
    with pytest.raises(ValueError, match="same number of tokens"):
        model.get_activations(["the capital of Texas", "the capital of Texas is Austin"])


def test_out_of_range_and_batched_interventions_are_refused(replacement_model):
    model = replacement_model("llama", "plt_jumprelu")
    L, F = model.n_layers, model.transcoders.d_transcoder
    T = len(model.ensure_tokenized(PROMPT))
    bad = {
        "layer 3 is out of range": (L, 1, 0, 1.0),
        "layer -1 is out of range": (-1, 1, 0, 1.0),
        f"position {T} is out of range": (0, T, 0, 1.0),
        f"position {-T - 1} is out of range": (0, -T - 1, 0, 1.0),
        f"feature {F} is out of range": (0, 1, F, 1.0),
        "not finite": (0, 1, 0, float("nan")),
        f"slice start {T + 2} is out of range": (0, slice(T + 2, T + 4), 0, 1.0),
        "selects no position": (0, slice(4, 2), 0, 1.0),
        "do not fit": (0, slice(1, 3), [0, 1], torch.ones(3)),
    }
    for message, item in bad.items():
        with pytest.raises(ValueError, match=message):
            model.feature_intervention(PROMPT, [item])
    with pytest.raises(ValueError, match="outside constrained_layers"):
        model.feature_intervention(PROMPT, [(2, 1, 0, 1.0)], constrained_layers=range(2))
    with pytest.raises(ValueError, match="one sequence at a time"):
        model.feature_intervention([PROMPT, PROMPT], [(0, 1, 0, 1.0)])


def test_last_entry_wins_for_a_repeated_feature(replacement_model):
    model = replacement_model("llama", "plt_jumprelu")
    layer, pos, feat, _ = _active_feature(model)
    once, _ = model.feature_intervention(PROMPT, [(layer, pos, feat, 1.0)])
    twice, _ = model.feature_intervention(
        PROMPT, [(layer, pos, feat, 9.0), (layer, pos, feat, 1.0)]
    )
    assert torch.equal(once, twice)
