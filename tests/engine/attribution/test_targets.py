"""The four target forms agree with each other and with the frozen model."""

from __future__ import annotations

import pytest
import torch

from ct_engine.attribution import CustomTarget, attribute
from ct_engine.attribution.oracle import check_edges

from ..conftest import PROMPT


@pytest.fixture(scope="module")
def model(replacement_model):
    return replacement_model("gemma2", "plt_jumprelu")


@pytest.fixture(scope="module")
def salient(model):
    return attribute(PROMPT, model, batch_size=64, max_n_logits=4, desired_logit_prob=0.99)


def test_salient_rule(model, salient):
    tokens = model.ensure_tokenized(PROMPT)
    probs = torch.softmax(model.impl.clean_run(tokens).logits[-1], -1)
    top = probs.topk(4)
    k = len(salient.logit_targets)
    # The smallest prefix reaching the threshold, capped at max_n_logits.
    cum = top.values.cumsum(0)
    expected = min(int((cum < 0.99).sum()) + 1, 4)
    assert k == expected
    assert [t.vocab_idx for t in salient.logit_targets] == top.indices[:k].tolist()
    torch.testing.assert_close(salient.logit_probabilities, top.values[:k])


def test_salient_strings_ids_and_custom_targets_give_the_same_rows(model, salient):
    ids = [t.vocab_idx for t in salient.logit_targets]
    strings = [model.tokenizer.decode([i]) for i in ids]
    unembed = model.impl.unembedding
    customs = [
        CustomTarget(s, float(p), unembed[:, i] - unembed.mean(1))
        for s, p, i in zip(strings, salient.logit_probabilities, ids, strict=True)
    ]
    by_ids = attribute(PROMPT, model, attribution_targets=torch.tensor(ids), batch_size=64)
    by_strings = attribute(PROMPT, model, attribution_targets=strings, batch_size=64)
    by_custom = attribute(PROMPT, model, attribution_targets=customs, batch_size=64)
    for other in (by_ids, by_strings, by_custom):
        torch.testing.assert_close(
            other.adjacency_matrix, salient.adjacency_matrix, atol=1e-5, rtol=1e-4
        )
        torch.testing.assert_close(other.logit_probabilities, salient.logit_probabilities)
    assert [t.token_str for t in by_strings.logit_targets] == strings
    # Custom targets get virtual ids after the vocabulary.
    assert [t.vocab_idx for t in by_custom.logit_targets] == [
        model.d_vocab + i for i in range(len(ids))
    ]


def test_logit_difference_target_matches_frozen_model(model):
    """A custom ``logit(Austin) − logit(Dallas)`` direction: doubling features changes the
    difference by the target row (checked in the frozen model)."""
    tok = model.tokenizer
    austin, dallas = (tok.encode(w, add_special_tokens=False)[0] for w in ("Austin", "Dallas"))
    unembed = model.impl.unembedding
    diff = CustomTarget("Austin-Dallas", 1.0, unembed[:, austin] - unembed[:, dallas])
    graph = attribute(PROMPT, model, attribution_targets=[diff], batch_size=64)
    assert graph.meta["custom_target_vectors"][0] == pytest.approx(diff.vec.tolist())
    checks = check_edges(model, graph, n_features=20)
    for c in checks:
        torch.testing.assert_close(c.observed_logits, c.predicted_logits, atol=2e-4, rtol=1e-3)
    assert max(float(c.predicted_logits.abs().max()) for c in checks) > 1e-2
