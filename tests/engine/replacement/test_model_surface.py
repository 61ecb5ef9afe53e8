"""circuit-tracer's ``ReplacementModel`` surface, on both backends (tiny Llama, random PLT):

* ``from_pretrained_and_transcoders`` builds the same model as ``from_pretrained`` around
  transcoders loaded first;
* the notebook surface (``to_tokens``, ``to_str_tokens``, ``to_string``, ``generate``, ``W_U``,
  the feature hooks) gives the same answers on both backends;
* ``run_with_cache`` comes from the TransformerLens bridge, ``trace`` from nnsight, and each
  fails on the other backend naming what to use instead;
* ``feature_intervention_generate`` takes circuit-tracer's keyword arguments.
"""

from __future__ import annotations

import pytest
import torch

from ct_engine.replacement import ReplacementModel
from ct_engine.transcoders import load_transcoders

from ..conftest import PROMPT

BACKENDS = ["transformerlens", "nnsight"]


@pytest.fixture(scope="module")
def models(tiny_model_dir, transcoder_dir):
    """``models[backend]``: the tiny Llama built by ``from_pretrained_and_transcoders``."""
    return {
        backend: ReplacementModel.from_pretrained_and_transcoders(
            tiny_model_dir("llama"),
            load_transcoders(transcoder_dir("llama", "plt_jumprelu")),
            backend,
            "cpu",
            torch.float32,
        )
        for backend in BACKENDS
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_from_pretrained_and_transcoders_equals_from_pretrained(
    models, backend, tiny_model_dir, transcoder_dir
):
    model = models[backend]
    assert model.backend == backend and model.transcoders.n_layers == model.n_layers
    loaded_by_name = ReplacementModel.from_pretrained(
        tiny_model_dir("llama"), transcoder_dir("llama", "plt_jumprelu"), backend, "cpu"
    )
    logits, acts = model.get_activations(PROMPT)
    ref_logits, ref_acts = loaded_by_name.get_activations(PROMPT)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(acts, ref_acts)


def test_from_pretrained_and_transcoders_wants_loaded_transcoders(tiny_model_dir, transcoder_dir):
    with pytest.raises(TypeError, match="from_pretrained"):
        ReplacementModel.from_pretrained_and_transcoders(
            tiny_model_dir("llama"), str(transcoder_dir("llama", "plt_jumprelu"))
        )


def test_the_notebook_surface_is_the_same_on_both_backends(models):
    tl, nn = models["transformerlens"], models["nnsight"]
    for model in (tl, nn):
        tokens = model.to_tokens(PROMPT)
        assert tokens.shape == (1, len(model.ensure_tokenized(PROMPT)))
        assert torch.equal(tokens[0], model.ensure_tokenized(PROMPT))
        assert int(tokens[0, 0]) in model.tokenizer.all_special_ids
        bare = model.to_tokens(PROMPT, prepend_bos=False)
        assert torch.equal(bare[0], tokens[0, 1:])
        pieces = model.to_str_tokens(PROMPT)
        assert pieces[1:] == PROMPT.split()  # the tiny tokenizer has one token per word
        assert model.to_str_tokens(tokens) == pieces
        assert model.to_string(bare[0]).strip() == PROMPT
        assert [s.strip() for s in model.to_string(bare)] == [PROMPT]
        assert model.W_U.shape == (model.cfg.d_model, model.cfg.d_vocab)
        weight = model.impl.hf_model.get_output_embeddings().weight
        assert torch.equal(model.W_U, weight.T)
        assert model.feature_input_hook == model.transcoders.feature_input_hook
        assert model.feature_output_hook == model.transcoders.feature_output_hook
    text = tl.generate(PROMPT, max_new_tokens=4, stop_at_eos=False)
    assert text.startswith(PROMPT) and len(text) > len(PROMPT)
    assert nn.generate(PROMPT, max_new_tokens=4, stop_at_eos=False) == text
    plain, _, _ = tl.feature_intervention_generate(PROMPT, [], max_new_tokens=4, stop_at_eos=False)
    assert plain == text


def test_run_with_cache_comes_from_the_transformerlens_bridge(models):
    tl = models["transformerlens"]
    tokens = tl.to_tokens(PROMPT)
    logits, cache = tl.run_with_cache(tokens, prepend_bos=False)
    clean = tl.impl.clean_run(tokens[0])
    torch.testing.assert_close(logits[0], clean.logits)
    hook = f"blocks.1.{tl.feature_input_hook}"
    torch.testing.assert_close(cache[hook][0], clean.feature_inputs[1])
    assert type(tl.impl.model).__name__ == "TransformerBridge"


def test_trace_comes_from_nnsight(models):
    nn = models["nnsight"]
    tokens = nn.to_tokens(PROMPT)
    out = []
    with nn.trace(tokens, use_cache=False):
        out.append(nn.impl.model.output.logits)
    torch.testing.assert_close(out[0][0], nn.impl.clean_run(tokens[0]).logits)
    assert type(nn.impl.model).__name__ == "NNsight"


def test_what_a_backend_lacks_fails_naming_the_alternative(models):
    tl, nn = models["transformerlens"], models["nnsight"]
    with pytest.raises(AttributeError, match="runs on the nnsight backend.*get_activations"):
        _ = nn.run_with_cache
    with pytest.raises(AttributeError, match="runs on the transformerlens backend.*hooks"):
        _ = tl.trace
    for model in (tl, nn):
        with pytest.raises(AttributeError, match=r"no attribute 'W_Q'.*model\.impl\.model"):
            _ = model.W_Q
        assert not hasattr(model, "no_such_thing")


@pytest.mark.parametrize("backend", BACKENDS)
def test_generation_takes_circuit_tracers_keyword_arguments(models, backend):
    model = models[backend]
    kw = dict(max_new_tokens=4, stop_at_eos=False)
    text, logits, _ = model.feature_intervention_generate(PROMPT, [], **kw)
    for extra in (
        dict(use_past_kv_cache=True),
        dict(use_past_kv_cache=False),
        dict(verbose=True),
        dict(prepend_bos=True, padding_side="right"),
    ):
        again, again_logits, _ = model.feature_intervention_generate(PROMPT, [], **kw, **extra)
        assert again == text
        torch.testing.assert_close(again_logits, logits)
    # The first greedy token as end of sequence: generation stops after it.
    first = int(logits[0].argmax())
    _, stopped, _ = model.feature_intervention_generate(
        PROMPT, [], max_new_tokens=4, eos_token_id=[first]
    )
    assert stopped.shape[0] == 1
    # A huge frequency penalty forbids, when sampling, every token already in the sequence
    # (this seed's plain draw repeats a prompt token).
    prompt = model.to_tokens(PROMPT)[0].tolist()
    for penalty, repeats in ((0.0, True), (1e6, False)):
        sampled, _, _ = model.feature_intervention_generate(
            PROMPT, [], do_sample=True, seed=2, freq_penalty=penalty, **kw
        )
        tokens = model.to_tokens(sampled)[0].tolist()
        new = tokens[len(prompt) :]  # decoded without special tokens
        assert tokens[: len(prompt)] == prompt and new
        assert (len(set(new)) < len(new) or bool(set(new) & set(prompt))) == repeats
    with pytest.raises(TypeError):
        model.feature_intervention_generate(PROMPT, [], no_such_argument=1)
