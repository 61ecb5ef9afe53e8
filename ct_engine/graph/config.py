"""Model metadata and logit targets stored with a graph.

:class:`ModelConfig` has the fields of circuit-tracer's ``UnifiedConfig``; :class:`LogitTarget`
those of its ``LogitTarget``. Both are plain values, safe to store as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

# Field names used by Hugging Face configs, mapped to ours (as circuit-tracer converts them).
_HF_FIELD_NAMES = {
    "num_hidden_layers": "n_layers",
    "hidden_size": "d_model",
    "head_dim": "d_head",
    "num_attention_heads": "n_heads",
    "intermediate_size": "d_mlp",
    "vocab_size": "d_vocab",
    "num_key_value_heads": "n_key_value_heads",
    "torch_dtype": "dtype",
}


@dataclass(frozen=True)
class LogitTarget:
    """One output target of a graph.

    Attributes:
        token_str: decoded token text, or the label of a custom target ("" when unknown).
        vocab_idx: vocabulary index; custom targets get virtual indices ``>= d_vocab``.
    """

    token_str: str
    vocab_idx: int


def dtype_name(dtype: Any) -> str | None:
    """Normalise a dtype given as ``torch.dtype`` or string to a name like ``"float32"``."""
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        return str(dtype).removeprefix("torch.")
    return str(dtype).removeprefix("torch.")


@dataclass
class ModelConfig:
    """The model facts a graph needs (circuit-tracer's ``UnifiedConfig`` fields).

    ``dtype`` is stored as a name such as ``"float32"`` or ``"bfloat16"`` (no ``torch.`` prefix).
    """

    n_layers: int
    d_model: int
    d_head: int
    n_heads: int
    d_mlp: int
    d_vocab: int
    tokenizer_name: str
    model_name: str
    original_architecture: str
    n_key_value_heads: int | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        self.dtype = dtype_name(self.dtype)

    def to_dict(self) -> dict[str, Any]:
        """Fields as a dict, leaving out those that are ``None`` (as circuit-tracer does)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ModelConfig:
        """Build from a dict with our field names; unknown keys are ignored.

        Hugging Face names (``num_hidden_layers``, ``hidden_size``, ...) are accepted for any
        field that is missing, and a nested ``text_config`` is merged in first, the way
        circuit-tracer converts Hugging Face and TransformerLens configs.
        """
        merged = dict(config)
        if isinstance(merged.get("text_config"), dict):
            merged |= merged["text_config"]
        for hf_name, name in _HF_FIELD_NAMES.items():
            if name not in merged and hf_name in merged:
                merged[name] = merged[hf_name]
        if "original_architecture" not in merged and merged.get("architectures"):
            merged["original_architecture"] = merged["architectures"][0]
        for name in ("tokenizer_name", "model_name"):
            if name not in merged and "name_or_path" in merged:
                merged[name] = merged["name_or_path"]
        required = [f.name for f in fields(cls) if f.name not in ("n_key_value_heads", "dtype")]
        missing = [name for name in required if name not in merged]
        if missing:
            raise ValueError(f"model config is missing {missing}")
        return cls(
            **{name: merged[name] for name in required},
            n_key_value_heads=merged.get("n_key_value_heads"),
            dtype=merged.get("dtype"),
        )
