"""Generation under interventions."""

from __future__ import annotations

import pytest
import torch

from ..conftest import PROMPT


@pytest.fixture(scope="module")
def model(replacement_model):
    return replacement_model("llama", "clt_skip")


def test_no_interventions_reproduce_plain_greedy_generation(model, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    tokens = model.ensure_tokenized(PROMPT)
    n_new = 6
    text, logits, acts = model.feature_intervention_generate(
        PROMPT, [], max_new_tokens=n_new, stop_at_eos=False
    )
    # Plain Hugging Face greedy generation (with its KV cache) on a fresh copy of the model.
    hf = AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama"))
    with torch.no_grad():
        expected = hf.generate(
            tokens[None],
            attention_mask=torch.ones_like(tokens[None]),
            max_new_tokens=n_new,
            do_sample=False,
            pad_token_id=model.tokenizer.pad_token_id,
            eos_token_id=None,
        )[0]
    new = logits.argmax(-1)
    assert torch.equal(torch.cat([tokens, new]), expected)
    assert text == model.tokenizer.decode(expected.tolist(), skip_special_tokens=True)
    assert text.startswith(PROMPT)
    assert logits.shape == (n_new, model.d_vocab)
    T = len(tokens)
    assert acts.shape == (model.n_layers, T + n_new - 1, model.transcoders.d_transcoder)
    # Each step's logits are the plain forward's logits on the text so far.
    plain, _ = model.get_activations(expected[:-1])
    torch.testing.assert_close(logits, plain[0, T - 1 :], atol=1e-4, rtol=1e-4)


def test_open_ended_interventions_follow_new_tokens(model):
    """Without freezing, generation equals one intervened forward over the generated text."""
    _, acts = model.get_activations(PROMPT)
    layer, pos = 1, 4
    feat = int(acts[layer, pos].argmax())
    steer = [(layer, slice(pos, None), feat, 8.0), (0, 2, 3, 1.5)]
    text, logits, gen_acts = model.feature_intervention_generate(
        PROMPT, steer, freeze_attention=False, max_new_tokens=5, stop_at_eos=False
    )
    T = len(model.ensure_tokenized(PROMPT))
    generated = torch.cat([model.ensure_tokenized(PROMPT), logits.argmax(-1)])
    full_logits, full_acts = model.feature_intervention(
        generated[:-1], steer, freeze_attention=False
    )
    torch.testing.assert_close(logits, full_logits[0, T - 1 :], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gen_acts, full_acts, atol=1e-4, rtol=1e-4)
    # The steering reached the new tokens: a closed slice (prompt only) gives other logits.
    closed = [(layer, slice(pos, T), feat, 8.0), (0, 2, 3, 1.5)]
    _, closed_logits, _ = model.feature_intervention_generate(
        PROMPT, closed, freeze_attention=False, max_new_tokens=5, stop_at_eos=False
    )
    assert torch.equal(closed_logits[0], logits[0])  # the first step is the same
    assert (closed_logits[1:] - logits[1:]).abs().max() > 1e-3


def test_freezing_applies_to_the_prompt_only(model):
    """With every layer constrained, the first step is the constrained intervention's last
    position; later steps run unfrozen from the same prompt state."""
    _, acts = model.get_activations(PROMPT)
    layer, pos = 0, 3
    feat = int(acts[layer, pos].argmax())
    items = [(layer, pos, feat, 0.0)]
    L = model.n_layers
    _, logits, _ = model.feature_intervention_generate(
        PROMPT, items, constrained_layers=range(L), max_new_tokens=3, stop_at_eos=False
    )
    first, _ = model.feature_intervention(PROMPT, items, constrained_layers=range(L))
    torch.testing.assert_close(logits[0], first[0, -1], atol=1e-5, rtol=0)


def test_sampling_is_reproducible_with_a_seed(model):
    draws = [
        model.feature_intervention_generate(
            PROMPT, [], max_new_tokens=8, do_sample=True, top_k=20, seed=7, stop_at_eos=False
        )[0]
        for _ in range(2)
    ]
    assert draws[0] == draws[1]


def test_bad_generation_arguments(model):
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.feature_intervention_generate(PROMPT, [], max_new_tokens=0)
    with pytest.raises(ValueError, match="context"):
        model.feature_intervention_generate(PROMPT, [], max_new_tokens=model.n_ctx)
    with pytest.raises(ValueError, match="one sequence at a time"):
        model.feature_intervention_generate([PROMPT, PROMPT], [])
