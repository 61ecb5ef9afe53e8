"""The presets table: every entry resolves, its reference parses, zeroed positions."""

from __future__ import annotations

import pytest
import torch

from ct_engine.presets import (
    GEMMA3_IT_PREFIX,
    MODELS,
    PRESETS,
    TRANSCODERS,
    check_prompt_prefix,
    preset,
    resolve_model,
    resolve_transcoders,
    zero_positions_for,
)
from ct_engine.transcoders import parse_transcoder_ref

HOOKS = {"hook_resid_mid", "ln2.hook_normalized", "mlp.hook_in", "mlp.hook_out", "hook_mlp_out"}
ARCHITECTURES = {
    "gemma2": {"Gemma2ForCausalLM"},
    "llama": {"LlamaForCausalLM"},
    "qwen3": {"Qwen3ForCausalLM"},
    "gpt_oss": {"GptOssForCausalLM"},
    "gemma3": {"Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"},
}
# (preset, repo id, subfolder) of the seed's supported-models table.
EXPECTED_REFS = [
    ("gemma-2-2b", "mwhanna/gemma-scope-transcoders", None),
    ("gemma-2-2b-clt-426k", "mntss/clt-gemma-2-2b-426k", None),
    ("gemma-2-2b-clt-2.5m", "mntss/clt-gemma-2-2b-2.5M", None),
    ("llama-3.2-1b", "mntss/transcoder-Llama-3.2-1B", None),
    ("llama-3.2-1b-clt-524k", "mntss/clt-llama-3.2-1b-524k", None),
    ("qwen3-0.6b", "mwhanna/qwen3-0.6b-transcoders-lowl0", None),
    ("qwen3-1.7b", "mwhanna/qwen3-1.7b-transcoders-lowl0", None),
    ("qwen3-4b", "mwhanna/qwen3-4b-transcoders", None),
    ("qwen3-8b", "mwhanna/qwen3-8b-transcoders", None),
    ("qwen3-14b", "mwhanna/qwen3-14b-transcoders-lowl0", None),
    ("gpt-oss-20b-clt", "mntss/clt-131k", None),
    (
        "gemma-3-1b-pt",
        "mwhanna/gemma-scope-2-1b-pt",
        "transcoder_all/width_16k_l0_small_affine",
    ),
    ("gemma-3-1b-pt-clt", "mwhanna/gemma-scope-2-1b-pt", "clt/width_262k_l0_medium_affine"),
    (
        "gemma-3-27b-it",
        "mwhanna/gemma-scope-2-27b-it",
        "transcoder_all/width_16k_l0_small_affine",
    ),
]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_resolves_and_parses(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no local folder may shadow a hub reference
    p = preset(name)
    assert p.name == name and PRESETS[name] is p
    ref = parse_transcoder_ref(p.transcoders)
    assert not ref.is_local and ref.repo_id.count("/") == 1
    assert ref.scan.startswith(ref.repo_id)
    assert p.architecture in ARCHITECTURES[p.family]
    assert p.model_kind in ("transcoder_set", "cross_layer_transcoder")
    assert p.feature_input_hook in HOOKS and p.feature_output_hook in HOOKS
    assert p.activation in ("jump_relu", "relu")
    assert p.backend in ("transformerlens", "nnsight")
    assert p.dtype in ("bfloat16", "float32") and p.dtype_note
    assert p.n_layers > 0 and p.d_model > 0
    assert p.zero_positions == zero_positions_for(p.model_id)
    if p.family == "gemma3":
        assert p.backend == "nnsight" and p.skip  # GemmaScope-2 "affine" sets, NNsight only
        assert p.file_format.startswith("gemmascope2")


def test_the_table_has_every_supported_row():
    assert len(PRESETS) == 25
    for name, repo_id, subfolder in EXPECTED_REFS:
        ref = parse_transcoder_ref(preset(name).transcoders)
        assert (ref.repo_id, ref.subfolder) == (repo_id, subfolder), name
    gemma3 = [n for n in PRESETS if n.startswith("gemma-3-") and not n.endswith("-clt")]
    assert len(gemma3) == 10  # 270m, 1b, 4b, 12b, 27b x pt, it
    assert {p.family for p in PRESETS.values()} == set(ARCHITECTURES)
    assert preset("llama-3.2-1b").skip and preset("llama-3.2-1b").activation == "relu"
    assert preset("gemma-2-2b").hooks == ("ln2.hook_normalized", "hook_mlp_out")
    assert preset("qwen3-4b").hooks == ("mlp.hook_in", "mlp.hook_out")


def test_unknown_preset_lists_the_names():
    with pytest.raises(KeyError, match="known presets: .*gemma-2-2b.*qwen3-0.6b"):
        preset("gemma-2-9b")


def test_toy_world_names_still_resolve():
    assert resolve_model("toy-world") == str(MODELS["toy-world"])
    assert resolve_transcoders("toy-world-clt") == TRANSCODERS["toy-world-clt"]
    assert resolve_model("gemma-2-2b") == "gemma-2-2b"  # presets are not model names


@pytest.mark.parametrize(
    "model_name,expected",
    [
        ("google/gemma-3-1b-it", slice(0, 4)),
        ("google/gemma-3-27b-it", slice(0, 4)),
        ("/models/google/gemma-3-270m-it/", slice(0, 4)),
        ("google/gemma-3-1b-pt", slice(0, 1)),
        ("google/gemma-2-2b-it", slice(0, 1)),
        ("google/gemma-3-1b-it-qat", slice(0, 1)),
        ("meta-llama/Llama-3.2-1B", slice(0, 1)),
    ],
)
def test_zero_positions_for(model_name, expected):
    assert zero_positions_for(model_name) == expected


def test_it_prompts_must_start_with_the_chat_prefix():
    good = [*GEMMA3_IT_PREFIX, 818, 5279]
    assert list(GEMMA3_IT_PREFIX) == [2, 105, 2364, 107]
    check_prompt_prefix("google/gemma-3-1b-it", good)
    check_prompt_prefix("google/gemma-3-1b-it", torch.tensor(good))
    check_prompt_prefix("google/gemma-3-1b-pt", [2, 818])  # base models: no constraint
    for bad in ([2, 818, 5279], [105, 2364, 107, 818], [2, 105, 2364]):
        with pytest.raises(ValueError, match=r"\[2, 105, 2364, 107\]"):
            check_prompt_prefix("google/gemma-3-1b-it", bad)
