"""The nnsight backend equals the TransformerLens backend, and passes the oracle on its own.

Tiny Llama, Gemma-2 and Qwen-3 models with random transcoders (``tests/engine/conftest.py``):

* parity with TransformerLens: logits,
  transcoder activations, error vectors, and the attribution graph's active and selected
  features and adjacency, for a per-layer and a cross-layer transcoder;
* the finite-difference oracle through the nnsight backend's ``edited_run``;
* feature interventions (constrained and not) and generation give TransformerLens's logits;
* the nnsight frozen run is linear (zero Hessian), and is not without its stop-gradients;
* Gemma-3 and GPT-OSS, which only this backend maps: tiny random models built here pass the
  oracle and the Hessian check.
"""

from __future__ import annotations

import pytest
import torch

from ct_engine.attribution import attribute
from ct_engine.attribution.context import build_context
from ct_engine.replacement import ReplacementModel
from ct_engine.replacement.model import BACKENDS
from ct_engine.tiny import build_random_transcoders, build_tokenizer

from ..attribution.test_oracle import assert_oracle
from ..conftest import PROMPT
from .test_linearization import _second_derivatives

FAMILIES = ["llama", "gemma2", "qwen3"]


@pytest.fixture(scope="session")
def nnsight_model(tiny_model_dir, transcoder_dir):
    """``nnsight_model(family, kind) -> ReplacementModel`` on the nnsight backend, cached."""
    cache = {}

    def make(family: str, kind: str = "plt_jumprelu"):
        if (family, kind) not in cache:
            cache[family, kind] = ReplacementModel.from_pretrained(
                tiny_model_dir(family),
                transcoder_dir(family, kind),
                device="cpu",
                backend="nnsight",
            )
        return cache[family, kind]

    return make


def test_registered():
    assert "nnsight" in BACKENDS


@pytest.mark.parametrize("kind", ["plt_skip", "clt"])
@pytest.mark.parametrize("family", FAMILIES)
def test_same_as_transformerlens(replacement_model, nnsight_model, family, kind):
    tl, nn = replacement_model(family, kind), nnsight_model(family, kind)
    assert nn.backend == "nnsight"
    for attr in ("n_layers", "d_model", "d_vocab", "n_ctx"):
        assert getattr(nn, attr) == getattr(tl, attr), attr
    tokens = tl.ensure_tokenized(PROMPT)
    assert torch.equal(nn.ensure_tokenized(PROMPT), tokens)
    close = dict(atol=1e-4, rtol=0)

    # Clean run: logits, transcoder inputs/outputs, token vectors, activations, errors.
    a, b = tl.impl.clean_run(tokens), nn.impl.clean_run(tokens)
    torch.testing.assert_close(b.logits, a.logits, **close)
    torch.testing.assert_close(b.feature_inputs, a.feature_inputs, **close)
    torch.testing.assert_close(b.feature_outputs, a.feature_outputs, **close)
    torch.testing.assert_close(b.embeddings, a.embeddings, **close)
    _, acts_tl = tl.get_activations(tokens)
    _, acts_nn = nn.get_activations(tokens)
    torch.testing.assert_close(acts_nn, acts_tl, atol=5e-4, rtol=0)
    ctx_tl, ctx_nn = build_context(tl, tokens), build_context(nn, tokens)
    torch.testing.assert_close(ctx_nn.error_vectors, ctx_tl.error_vectors, atol=5e-4, rtol=0)

    # Attribution graph.
    g_tl = attribute(PROMPT, tl, batch_size=32)
    g_nn = attribute(PROMPT, nn, batch_size=32)
    assert torch.equal(g_nn.active_features, g_tl.active_features)
    assert torch.equal(g_nn.selected_features, g_tl.selected_features)
    assert [t.vocab_idx for t in g_nn.logit_targets] == [t.vocab_idx for t in g_tl.logit_targets]
    torch.testing.assert_close(g_nn.adjacency_matrix, g_tl.adjacency_matrix, atol=5e-4, rtol=0)
    assert g_tl.adjacency_matrix.abs().max() > 1.0  # not a trivially empty graph

    # A capped graph selects the same features greedily.
    c_tl = attribute(PROMPT, tl, batch_size=16, max_feature_nodes=30)
    c_nn = attribute(PROMPT, nn, batch_size=16, max_feature_nodes=30)
    assert torch.equal(c_nn.selected_features, c_tl.selected_features)
    torch.testing.assert_close(c_nn.adjacency_matrix, c_tl.adjacency_matrix, atol=5e-4, rtol=0)


@pytest.mark.parametrize(
    "family,kind",
    [
        ("llama", "plt_jumprelu"),
        ("llama", "clt_skip"),
        ("gemma2", "plt_skip"),
        ("gemma2", "clt"),
        ("qwen3", "plt_topk"),
        ("qwen3", "clt_skip"),
    ],
)
def test_oracle(nnsight_model, family, kind):
    model = nnsight_model(family, kind)
    graph = attribute(PROMPT, model, batch_size=32)
    assert graph.n_features == len(graph.active_features) > 100
    assert_oracle(model, graph, n_features=30)


@pytest.mark.parametrize("family,kind", [("llama", "clt_skip"), ("gemma2", "plt_jumprelu")])
def test_interventions_same_as_transformerlens(replacement_model, nnsight_model, family, kind):
    tl, nn = replacement_model(family, kind), nnsight_model(family, kind)
    _, acts = tl.get_activations(PROMPT)
    L = tl.n_layers
    feat_a = int(acts[1, 4].argmax())
    feat_b = int(acts[0, 2].argmax())
    items = [(1, 4, feat_a, 0.0), (0, 2, feat_b, 3.0)]
    close = dict(atol=1e-4, rtol=0)
    for constrained in (None, range(L)):
        for freeze in (True, False):
            logits_tl, acts_tl = tl.feature_intervention(
                PROMPT, items, constrained_layers=constrained, freeze_attention=freeze
            )
            logits_nn, acts_nn = nn.feature_intervention(
                PROMPT, items, constrained_layers=constrained, freeze_attention=freeze
            )
            torch.testing.assert_close(logits_nn, logits_tl, **close)
            torch.testing.assert_close(acts_nn, acts_tl, atol=5e-4, rtol=0)
            assert (logits_tl - tl.get_activations(PROMPT)[0]).abs().max() > 1e-3
    steer = [(1, slice(4, None), feat_a, 6.0)]
    for constrained in (None, range(L)):
        text_tl, logits_tl, _ = tl.feature_intervention_generate(
            PROMPT, steer, constrained_layers=constrained, max_new_tokens=4, stop_at_eos=False
        )
        text_nn, logits_nn, _ = nn.feature_intervention_generate(
            PROMPT, steer, constrained_layers=constrained, max_new_tokens=4, stop_at_eos=False
        )
        assert text_nn == text_tl
        torch.testing.assert_close(logits_nn, logits_tl, **close)


@pytest.mark.parametrize("family", FAMILIES)
def test_frozen_run_has_zero_hessian(nnsight_model, family):
    assert _second_derivatives(nnsight_model(family, "plt_skip")) < 1e-5


def test_without_stop_gradients_it_is_not_linear(nnsight_model, monkeypatch):
    """Negative control: with no freeze sites the same check sees curvature."""
    model = nnsight_model("gemma2", "plt_skip")
    monkeypatch.setattr(model.impl, "freeze_hooks", [])
    assert _second_derivatives(model) > 1e-3


def test_softcap_is_restored(nnsight_model):
    model = nnsight_model("gemma2", "plt_jumprelu")
    tokens = model.ensure_tokenized(PROMPT)
    capped = model.impl.clean_run(tokens).logits
    with model.zero_softcap():
        raw = model.impl.clean_run(tokens).logits
    assert raw.abs().max() > capped.abs().max()
    torch.testing.assert_close(30.0 * torch.tanh(raw / 30.0), capped, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.impl.clean_run(tokens).logits, capped)


# -- families only the nnsight backend maps -----------------------------------------------------


def _tiny_config(family: str, vocab_size: int):
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    if family == "gemma3":
        from transformers import Gemma3TextConfig

        return Gemma3TextConfig(
            **common,
            query_pre_attn_scalar=8,
            sliding_window=4,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        )
    from transformers import GptOssConfig

    return GptOssConfig(
        **common,
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
    )


@pytest.fixture(scope="module")
def extra_family_model(tmp_path_factory):
    """``extra_family_model(family, hooks, kind) -> ReplacementModel`` (nnsight backend) for
    a tiny random Gemma-3 or GPT-OSS model."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("nnsight-families")

    def make(family: str, hooks: tuple[str, str], kind: str):
        path = root / family
        if not (path / "config.json").exists():
            config = _tiny_config(family, build_tokenizer(path))
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if p.ndim == 1 and "norm" in name:
                        p.add_(0.2 * torch.randn_like(p))
                    elif p.ndim >= 2:
                        p.normal_(0.0, 1.0 / p.shape[-1] ** 0.5)
                    else:  # attention sinks, biases
                        p.normal_(0.0, 0.1)
            model.save_pretrained(path)
        tc_path = root / f"{family}-{kind}-{hooks[0]}-{hooks[1]}"
        build_random_transcoders(
            tc_path,
            n_layers=3,
            d_model=32,
            d_transcoder=128,
            feature_input_hook=hooks[0],
            feature_output_hook=hooks[1],
            seed=1,
            **(
                dict(kind="plt", activation="relu", skip=True)
                if kind == "plt_skip"
                else dict(kind="clt", activation="jump_relu")
            ),
        )
        return ReplacementModel.from_pretrained(path, tc_path, device="cpu", backend="nnsight")

    return make


@pytest.mark.parametrize(
    "family,hooks,kind",
    [
        ("gemma3", ("mlp.hook_in", "hook_mlp_out"), "plt_skip"),
        ("gemma3", ("ln2.hook_normalized", "hook_mlp_out"), "clt"),
        ("gptoss", ("mlp.hook_in", "mlp.hook_out"), "clt"),
        ("gptoss", ("hook_resid_mid", "hook_mlp_out"), "plt_skip"),
    ],
)
def test_gemma3_and_gpt_oss(extra_family_model, family, hooks, kind, monkeypatch):
    from transformers import AutoModelForCausalLM

    model = extra_family_model(family, hooks, kind)
    assert (
        model.impl.mapping.architecture
        == {
            "gemma3": "Gemma3ForCausalLM",
            "gptoss": "GptOssForCausalLM",
        }[family]
    )
    tokens = model.ensure_tokenized(PROMPT)
    plain = AutoModelForCausalLM.from_pretrained(model.model_name, attn_implementation="eager")
    with torch.no_grad():
        expected = plain(tokens[None]).logits[0]
    torch.testing.assert_close(model.impl.clean_run(tokens).logits, expected)
    # Token columns pass the oracle: Gemma-3's √D (inside its embedding module) is in the
    # token vectors exactly as in the gradient site.
    graph = attribute(PROMPT, model, batch_size=32)
    assert_oracle(model, graph, n_features=20)
    assert _second_derivatives(model, n_samples=10) < 1e-5
    monkeypatch.setattr(model.impl, "freeze_hooks", [])
    assert _second_derivatives(model, n_samples=10) > 1e-3
