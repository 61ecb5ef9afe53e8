"""The frozen model is linear: its Hessian vanishes.

The readout (the top logit's demeaned direction at the last position) is differentiated twice
with respect to the embedding output and every MLP output of the frozen forward. A missing
stop-gradient (an attention pattern, a norm scale, an MLP nonlinearity) makes second
derivatives nonzero; the negative control removes the freezes and sees exactly that.
"""

from __future__ import annotations

import pytest
import torch

from ..conftest import PROMPT


def _second_derivatives(model, n_samples: int = 20) -> float:
    """Largest |∂²r/∂u∂v| over sampled first-derivative entries of the frozen readout r."""
    impl = model.impl
    tokens = model.ensure_tokenized(PROMPT)
    frozen = impl.frozen_run(tokens[None])
    logits = impl.clean_run(tokens).logits[-1]
    unembed = impl.unembedding
    top = int(logits.argmax())
    direction = unembed[:, top] - unembed.mean(1)
    sites = [frozen.embeddings] + list(frozen.feature_outputs)
    with torch.enable_grad():
        readout = frozen.final_residual[0, -1] @ direction
        grads = torch.autograd.grad(readout, sites, create_graph=True, allow_unused=True)
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for grad in grads:
        if grad is None or not grad.requires_grad:
            continue  # the first derivative is a constant: exactly linear
        flat = grad.reshape(-1)
        for i in torch.randint(len(flat), (n_samples,), generator=g).tolist():
            second = torch.autograd.grad(flat[i], sites, retain_graph=True, allow_unused=True)
            worst = max(worst, max(float(s.abs().max()) for s in second if s is not None))
    return worst


@pytest.mark.parametrize("kind", ["plt_jumprelu", "plt_skip", "clt_skip"])
@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_frozen_model_has_zero_hessian(replacement_model, family, kind):
    assert _second_derivatives(replacement_model(family, kind)) < 1e-5


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_unfrozen_model_is_not_linear(replacement_model, family, monkeypatch):
    """Negative control: without the stop-gradients the same check fails."""
    model = replacement_model(family, "plt_skip")
    monkeypatch.setattr(model.impl, "freeze_hooks", [])
    assert _second_derivatives(model) > 1e-3
