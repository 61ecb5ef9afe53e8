"""Each family's replica loads as a ReplacementModel through its preset, attributes, and every
checked edge equals the frozen model's finite-difference effect.

Every replica runs on both backends: TransformerLens (``TransformerBridge`` boots all five
architectures, GPT-OSS and Gemma-3 included) and nnsight, except the multimodal
``Gemma3ForConditionalGeneration`` (Gemma-3 4B/12B/27B), which runs on nnsight only.
"""

from __future__ import annotations

import pytest
import torch

from ct_engine.attribution import attribute
from ct_engine.attribution.oracle import check_edges
from ct_engine.presets import GEMMA3_IT_PREFIX, PRESETS, load_preset, preset
from ct_engine.replacement.model import BACKENDS
from ct_engine.transcoders import parse_transcoder_ref

# Tolerances of circuit-tracer's own oracle tests, float32 (as tests/engine/attribution).
TOL = {
    "error": dict(atol=1e-3, rtol=1e-3),
    "token": dict(atol=1e-3, rtol=1e-3),
    "feature": dict(atol=5e-4, rtol=1e-5),
}
LOGIT_TOL = dict(atol=1e-5, rtol=1e-3)
PROMPT = "the capital of Texas is Austin and the"

# One preset per family and transcoder format.
FAMILY_PRESETS = [
    "gemma-2-2b",  # GemmaScope .npz PLTs, ln2.hook_normalized -> hook_mlp_out
    "gemma-2-2b-clt-426k",  # circuit-tracer CLT
    "llama-3.2-1b",  # ReLU skip PLTs, hook_resid_mid -> mlp.hook_out
    "llama-3.2-1b-clt-524k",
    "qwen3-0.6b",  # JumpReLU PLTs, mlp.hook_in -> mlp.hook_out
    "gpt-oss-20b-clt",  # CLT on a mixture-of-experts MLP
    "gemma-3-1b-pt",  # GemmaScope-2 affine PLTs
    "gemma-3-1b-it-clt",  # GemmaScope-2 affine CLT, instruction-tuned: zeroes 0:4
    "gemma-3-4b-pt",  # multimodal Gemma3ForConditionalGeneration, text-only prompt
]
# The TransformerLens backend cannot boot the multimodal Gemma-3 class (its config keeps the
# text model's facts in text_config); circuit-tracer runs it on NNsight only.
NNSIGHT_ONLY = {"gemma-3-4b-pt"}


def _cases():
    for name in FAMILY_PRESETS:
        for backend in ("transformerlens", "nnsight"):
            if name in NNSIGHT_ONLY and backend != "nnsight":
                continue
            marks = []
            if backend not in BACKENDS:
                marks.append(
                    pytest.mark.xfail(
                        raises=ValueError,
                        strict=True,
                        reason=f"the {backend} backend is not in ReplacementModel yet",
                    )
                )
            yield pytest.param(name, backend, id=f"{name}-{backend}", marks=marks)


def _prompt(model, name: str):
    if not preset(name).model_id.endswith("-it"):
        return PROMPT
    chat = [{"role": "user", "content": "the capital of Texas is"}]
    ids = model.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert list(ids[:4]) == list(GEMMA3_IT_PREFIX)
    return torch.tensor(ids)


@pytest.mark.parametrize("name,backend", list(_cases()))
def test_replica_attributes_and_passes_the_oracle(name, backend, replica, hub):
    p = preset(name)
    r = replica(name)
    model = load_preset(name, model_dir=r.model_dir, backend=backend, device="cpu")
    assert model.backend == backend
    assert model.cfg.original_architecture == p.architecture
    assert model.scan == parse_transcoder_ref(p.transcoders).scan  # loaded via the (fake) hub
    assert model.skip_transcoder == p.skip
    assert model.zero_positions == p.zero_positions

    graph = attribute(_prompt(model, name), model, batch_size=32)
    z = p.zero_positions.stop
    T, L = len(graph.input_tokens), model.n_layers
    positions = graph.active_features[:, 1]
    assert graph.n_features > 50 and int(positions.min()) >= z

    checks = check_edges(model, graph, n_features=30)
    assert sum(c.kind == "error" for c in checks) == L * (T - z)
    assert sum(c.kind == "token" for c in checks) == T - z
    assert sum(c.kind == "feature" for c in checks) == min(30, graph.n_features)
    nonzero = 0
    for c in checks:
        torch.testing.assert_close(
            c.observed_features, c.predicted_features, **TOL[c.kind], msg=f"{c.kind} {c.node}"
        )
        torch.testing.assert_close(
            c.observed_logits, c.predicted_logits, **LOGIT_TOL, msg=f"{c.kind} {c.node} logits"
        )
        nonzero += int(c.predicted_features.abs().max() > 1e-3)
    assert nonzero > len(checks) // 2


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_loads_its_replica(name, replica, hub):
    """Every row of the supported-models table: its replica loads on the preset's backend,
    with the preset's hooks and zero positions, and runs a forward pass."""
    p = preset(name)
    model = load_preset(name, model_dir=replica(name).model_dir, device="cpu")
    assert model.backend == p.backend
    tc = model.transcoders
    assert (tc.feature_input_hook, tc.feature_output_hook) == (
        p.feature_input_hook,
        p.feature_output_hook,
    )
    assert model.zero_positions == p.zero_positions
    logits, acts = model.get_activations(_prompt(model, name))
    assert torch.isfinite(logits).all() and acts.shape[0] == model.n_layers
    assert (acts[:, : p.zero_positions.stop] == 0).all()
