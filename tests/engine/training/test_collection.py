"""Activation collection equals the backend's clean run at every position ≥ 1."""

from __future__ import annotations

import torch

from ct_engine.training import collect_activations, tokenize_texts

from .conftest import synthetic_texts


def _sorted_rows(t: torch.Tensor) -> torch.Tensor:
    flat = t.reshape(len(t), -1)
    return flat[torch.argsort(flat[:, 0])]


def test_collection_matches_clean_run(hooked_llama):
    texts = synthetic_texts(6, seed=3)
    data = collect_activations(hooked_llama, texts, holdout_fraction=0.0, seed=0)
    xs, ys = [], []
    for tokens in tokenize_texts(hooked_llama, texts):
        run = hooked_llama.impl.clean_run(tokens)
        xs.append(run.feature_inputs[:, 1:].transpose(0, 1))
        ys.append(run.feature_outputs[:, 1:].transpose(0, 1))
    x, y = torch.cat(xs), torch.cat(ys)
    assert data.x.shape == x.shape and x.shape[1:] == (3, 32)
    assert data.x.dtype == torch.float32 and len(data.x_holdout) == 0
    torch.testing.assert_close(_sorted_rows(data.x), _sorted_rows(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_sorted_rows(data.y), _sorted_rows(y), atol=1e-5, rtol=1e-5)


def test_collection_holdout_cap_and_seed(hooked_llama):
    texts = synthetic_texts(40, seed=4)
    a = collect_activations(hooked_llama, texts, max_tokens=100, holdout_fraction=0.1, seed=1)
    b = collect_activations(hooked_llama, texts, max_tokens=100, holdout_fraction=0.1, seed=1)
    assert len(a.x) == 100 and 0 < len(a.x_holdout) <= 10
    assert 1 <= a.n_holdout_documents <= 4  # 4 held out, cut to 10 positions
    assert torch.equal(a.x, b.x) and torch.equal(a.y_holdout, b.y_holdout)
