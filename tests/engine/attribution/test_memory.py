"""The memory estimate's arithmetic (``ct_engine.attribution.memory``) on tiny models."""

from __future__ import annotations

import pytest
import torch

from ct_engine.attribution import attribute
from ct_engine.attribution import memory as mem
from ct_engine.attribution.context import build_context
from tests.engine.conftest import PROMPT


@pytest.fixture(scope="module")
def llama(replacement_model):
    return replacement_model("llama", "plt_jumprelu")


def test_counts_match_attribution(llama):
    tokens = llama.ensure_tokenized(PROMPT)
    with torch.no_grad():
        ctx = build_context(llama, tokens)
    graph = attribute(PROMPT, llama, batch_size=32)
    K = len(graph.logit_targets)
    est = mem.estimate_memory(llama, PROMPT, batch_size=32, n_targets=K)
    assert est.n_active_source == "measured"
    assert est.n_active_features == ctx.n_features
    assert est.n_tokens == len(tokens)
    assert est.n_nodes == graph.adjacency_matrix.shape[0]
    assert est.adjacency_bytes == est.n_nodes**2 * 4
    assert est.n_rows == ctx.n_features + K


def test_capped_counts(llama):
    est = mem.estimate_memory(llama, PROMPT, batch_size=8, max_feature_nodes=20, n_targets=3)
    L, T = llama.n_layers, est.n_tokens
    assert est.n_nodes == 20 + (L + 1) * T + 3
    assert est.n_rows == 23
    assert est.host_rows_bytes >= 23 * (est.n_active_features + (L + 1) * T + 3) * 4
    graph = attribute(PROMPT, llama, batch_size=8, max_feature_nodes=20, max_n_logits=3)
    assert graph.adjacency_matrix.shape[0] == 20 + (L + 1) * T + len(graph.logit_targets)


def test_given_and_assumed_counts(llama):
    given = mem.estimate_memory(llama, PROMPT, batch_size=4, n_active_features=123)
    assert (given.n_active_features, given.n_active_source) == (123, "given")
    assumed = mem.estimate_memory(llama, PROMPT, batch_size=4, measure=False)
    T, L = assumed.n_tokens, llama.n_layers
    assert assumed.n_active_features == mem.DEFAULT_ASSUMED_L0 * L * (T - 1)
    assert assumed.n_active_source.startswith("assumed")


def test_peak_monotone_in_batch_size(llama):
    est = mem.estimate_memory(llama, PROMPT, batch_size=1)
    peaks = [est.at_batch_size(b).peak_bytes for b in (1, 2, 4, 8, 16, 64, 256)]
    assert peaks == sorted(peaks) and peaks[0] < peaks[-1]
    frozen = [est.at_batch_size(b).frozen_forward_bytes for b in (1, 2, 4)]
    assert frozen[1] == pytest.approx(2 * frozen[0], abs=2)
    assert frozen[2] == pytest.approx(4 * frozen[0], abs=4)


def test_dtype_override_halves_weights(llama):
    fp32 = mem.estimate_memory(llama, PROMPT, batch_size=4)
    bf16 = mem.estimate_memory(llama, PROMPT, batch_size=4, dtype=torch.bfloat16)
    assert bf16.model_bytes * 2 == pytest.approx(fp32.model_bytes, rel=1e-6)
    assert bf16.frozen_forward_bytes < fp32.frozen_forward_bytes
    assert bf16.resident_bytes == 0 and fp32.resident_bytes > 0


def test_suggestion_fits(llama):
    est = mem.estimate_memory(llama, PROMPT, batch_size=256)
    for available in (est.at_batch_size(3).additional_bytes, est.additional_bytes // 2):
        b = mem.suggest_batch_size(est, available)
        assert b >= 1 and b & (b - 1) == 0
        assert est.at_batch_size(b).additional_bytes <= available
        assert est.at_batch_size(2 * b).additional_bytes > available
    assert mem.suggest_batch_size(est, 0) == 0
    assert mem.suggest_batch_size(est, 1 << 50) >= est.n_rows


def test_check_raises_with_suggestion(llama, monkeypatch):
    est = mem.estimate_memory(llama, PROMPT, batch_size=256)
    monkeypatch.setattr(mem, "available_memory", lambda device=None: est.additional_bytes // 2)
    with pytest.raises(mem.InsufficientMemoryError, match="batch_size=") as info:
        mem.check_memory(est)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MemoryError)
    monkeypatch.setenv(mem.SKIP_CHECK_ENV, "1")
    mem.check_memory(est)  # skipped


def test_attribute_refuses_when_too_big(llama, monkeypatch, capsys):
    monkeypatch.setattr(mem, "available_memory", lambda device=None: 1024)
    with pytest.raises(ValueError, match="run out of memory"):
        attribute(PROMPT, llama, batch_size=16)
    monkeypatch.setattr(mem, "available_memory", lambda device=None: 1 << 50)
    attribute(PROMPT, llama, batch_size=16, verbose=True)
    assert "memory estimate" in capsys.readouterr().out


def test_available_memory_positive():
    assert mem.available_memory() > 0
    assert mem.host_available_memory() > 0
