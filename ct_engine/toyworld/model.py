"""The toy world model: a small Hugging Face ``LlamaForCausalLM``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ct_engine.toyworld.tokenizer import BOS_ID, EOS_ID, PAD_ID


@dataclass(frozen=True)
class ModelSpec:
    """Llama hyper-parameters (untied embeddings, no dropout, no biases)."""

    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int = 4
    d_mlp: int = 384
    max_position_embeddings: int = 128


def llama_config(spec: ModelSpec, vocab_size: int):
    """The ``LlamaConfig`` of ``spec`` with the toy tokenizer's special ids."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.d_model,
        intermediate_size=spec.d_mlp,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_kv_heads,
        head_dim=spec.d_model // spec.n_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=False,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )


def build_model(spec: ModelSpec, vocab_size: int, seed: int):
    """A freshly initialised ``LlamaForCausalLM`` (eager attention), weights drawn from ``seed``."""
    from transformers import AutoModelForCausalLM

    config = llama_config(spec, vocab_size)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, attn_implementation="eager")


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
