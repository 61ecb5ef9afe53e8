"""Frozen runs skip the MLP modules and stand in their clean outputs.

In the replacement model an MLP's output is a constant (gradients cross the MLP only through
the transcoder's skip path), so a frozen forward need not run the MLPs: ``frozen_run(tokens,
mlp_outputs=clean.mlp_outputs)`` returns the clean values in their place. Checked on both
backends and on a pre-norm (Llama, Qwen-3) and a sandwich-norm (Gemma-2, whose transcoders write
after the post-MLP norm) family: the MLP's own layers are never called, and every gradient
attribution reads equals the one of a frozen run that computes the MLPs.
"""

from __future__ import annotations

import pytest
import torch

from ct_engine.replacement.nnsight_mapping import mapping_for

from ..conftest import PROMPT
from .test_nnsight_backend import nnsight_model  # noqa: F401 (fixture)

CASES = [
    ("llama", "plt_jumprelu"),
    ("llama", "clt_skip"),
    ("gemma2", "plt_skip"),
    ("qwen3", "plt_topk"),
]


def _model(request, backend, family, kind):
    fixture = "replacement_model" if backend == "transformerlens" else "nnsight_model"
    return request.getfixturevalue(fixture)(family, kind)


def _mlp_layers(model) -> list[torch.nn.Module]:
    """The submodules of every layer's Hugging Face MLP (its projections)."""
    layers = model.impl.hf_model.model.layers
    if model.backend == "transformerlens":  # the bridge stands in each MLP's wrapper
        mlps = [block.mlp.original_component for block in model.impl.bridge.blocks]
    else:
        mlps = [layer.mlp for layer in layers]
    return [sub for mlp in mlps for sub in mlp.modules() if sub is not mlp]


def _readout_gradients(frozen, direction: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of one logit direction per batch row at every write site."""
    sites = [frozen.embeddings] + list(frozen.feature_outputs)
    readout = (frozen.final_residual[:, -1] @ direction).sum()
    return torch.autograd.grad(readout, sites, retain_graph=True, allow_unused=True)


@pytest.mark.parametrize("family,kind", CASES)
@pytest.mark.parametrize("backend", ["transformerlens", "nnsight"])
def test_skipped_mlps_give_the_same_gradients(request, backend, family, kind):
    model = _model(request, backend, family, kind)
    impl = model.impl
    tokens = model.ensure_tokenized(PROMPT)
    clean = impl.clean_run(tokens)
    L, T, D = clean.feature_outputs.shape
    assert clean.mlp_outputs is not None and clean.mlp_outputs.shape == (L, T, D)
    if model.feature_output_hook == "mlp.hook_out":  # the MLP's own output
        torch.testing.assert_close(clean.mlp_outputs, clean.feature_outputs, atol=0, rtol=0)

    calls = []
    handles = [m.register_forward_hook(lambda *_: calls.append(1)) for m in _mlp_layers(model)]
    try:
        batch = tokens[None, :-2].expand(3, -1)  # a prefix, as prefix buckets run
        full = impl.frozen_run(batch)
        n_full = len(calls)
        skipped = impl.frozen_run(batch, mlp_outputs=clean.mlp_outputs)
        n_skipped = len(calls) - n_full
    finally:
        for handle in handles:
            handle.remove()
    assert n_full >= 2 * L and n_skipped == 0

    direction = impl.unembedding[:, int(clean.logits[-3].argmax())]
    torch.testing.assert_close(skipped.final_residual, full.final_residual, atol=1e-5, rtol=0)
    for got, want in zip(
        _readout_gradients(skipped, direction), _readout_gradients(full, direction), strict=True
    ):
        assert (got is None) == (want is None)
        if want is not None:
            assert want.abs().max() > 0
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_mlps_returning_more_than_a_tensor_are_not_skipped():
    """GPT-OSS's MLP also returns router scores: the nnsight backend runs it."""
    assert mapping_for("GptOssForCausalLM").mlp_output is None
    assert mapping_for("LlamaForCausalLM").mlp_output == "mlp.output"
