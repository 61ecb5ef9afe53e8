"""Replica folders: model architectures, the Gemma-3 chat tokens, and ``local_hub``."""

from __future__ import annotations

import json

import pytest

from ct_engine.presets import GEMMA3_IT_PREFIX, check_prompt_prefix, preset, zero_positions_for
from ct_engine.replicas import local_hub
from ct_engine.transcoders import load_transcoders


@pytest.mark.parametrize(
    "name", ["gemma-2-2b", "llama-3.2-1b", "qwen3-0.6b", "gpt-oss-20b-clt", "gemma-3-1b-it"]
)
def test_replica_model_has_the_preset_architecture(name, replica):
    p = preset(name)
    r = replica(name)
    config = json.loads((r.model_dir / "config.json").read_text())
    expected = p.architecture.replace("Gemma3ForConditionalGeneration", "Gemma3ForCausalLM")
    assert config["architectures"] == [expected]
    assert r.model_dir.name == p.model_id.split("/")[1]
    assert zero_positions_for(str(r.model_dir)) == p.zero_positions


def test_gemma3_it_replica_has_the_chat_tokens(replica):
    from transformers import AutoTokenizer

    r = replica("gemma-3-1b-it")
    assert "gemma-3" in r.model_dir.name and r.model_dir.name.endswith("-it")
    tok = AutoTokenizer.from_pretrained(r.model_dir)
    assert tok.convert_tokens_to_ids(["<bos>", "<start_of_turn>", "user", "\n"]) == list(
        GEMMA3_IT_PREFIX
    )
    chat = [{"role": "user", "content": "the capital of Texas is"}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)["input_ids"]
    check_prompt_prefix(str(r.model_dir), ids)
    assert ids[-2:] == [tok.convert_tokens_to_ids("model"), 107]
    plain = tok("the capital", add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError):
        check_prompt_prefix(str(r.model_dir), [tok.bos_token_id, *plain])


def test_local_hub_serves_a_replica(replica, monkeypatch, tmp_path):
    monkeypatch.setenv("CT_CACHE_DIR", str(tmp_path / "cache"))
    r = replica("gemma-3-270m-it-clt")
    with local_hub(r.hub_root) as calls:
        tc = load_transcoders(r.transcoder_ref)
    assert tc.skip_connection and tc.n_layers == 2
    assert calls[0][:3] == (
        "file",
        "mwhanna/gemma-scope-2-270m-it",
        "clt/width_262k_l0_medium_affine/config.yaml",
    )
    assert {c[1] for c in calls[1:]} == {"google/gemma-scope-2-270m-it"}
