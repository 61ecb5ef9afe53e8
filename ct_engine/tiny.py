"""Tiny Hugging Face models and random transcoders, built on disk.

Tests, the demo and the benchmarks need real model directories without a network. These
builders write a small Hugging Face model (Llama, Gemma-2 or Qwen-3 architecture) with a
word-level tokenizer, and random transcoders in circuit-tracer's on-disk formats, so that the
same loading code paths run as for hub models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

FAMILIES = ("llama", "gemma2", "qwen3")

# Input/output hooks of the real transcoder releases for each family.
FAMILY_HOOKS = {
    "llama": ("hook_resid_mid", "mlp.hook_out"),
    "gemma2": ("ln2.hook_normalized", "hook_mlp_out"),
    "qwen3": ("mlp.hook_in", "mlp.hook_out"),
}

_WORDS = (
    "the a of in is was to and that it for on as with by at from capital city country "
    "state river language people lives speaks where which who what when fact Mira Tom Ana "
    "Paris Berlin Rome Austin Dallas Texas France Germany Italy Spain small big opposite "
    "north south east west one two three four five six seven eight nine ten ( ) . , : ; ?"
).split()


@dataclass(frozen=True)
class TinyModelSpec:
    family: str = "llama"
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    d_mlp: int = 128
    max_position_embeddings: int = 512
    seed: int = 0


def build_tokenizer(directory: Path, extra_vocab: int = 0) -> int:
    """Write a word-level tokenizer (BOS/EOS/PAD/UNK specials) to ``directory``; return its size."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from ct_engine.toyworld.tokenizer import save_tokenizer

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    words = list(dict.fromkeys(_WORDS))
    words += [f"w{i}" for i in range(extra_vocab)]
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    save_tokenizer(tok, directory)
    return len(vocab)


def _hf_config(spec: TinyModelSpec, vocab_size: int):
    common = dict(
        vocab_size=vocab_size,
        hidden_size=spec.d_model,
        intermediate_size=spec.d_mlp,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_kv_heads,
        head_dim=spec.d_model // spec.n_heads,
        max_position_embeddings=spec.max_position_embeddings,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    if spec.family == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common, tie_word_embeddings=False)
    if spec.family == "gemma2":
        from transformers import Gemma2Config

        return Gemma2Config(
            **common,
            query_pre_attn_scalar=spec.d_model // spec.n_heads,
            sliding_window=spec.max_position_embeddings,
            final_logit_softcapping=30.0,
            attn_logit_softcapping=50.0,
            hidden_activation="gelu_pytorch_tanh",
        )
    if spec.family == "qwen3":
        from transformers import Qwen3Config

        return Qwen3Config(**common, tie_word_embeddings=False)
    raise ValueError(f"unknown family {spec.family!r}; expected one of {FAMILIES}")


def build_tiny_model(directory: str | Path, spec: TinyModelSpec | None = None) -> Path:
    """Write a randomly initialised Hugging Face causal LM and its tokenizer to ``directory``.

    Weights are drawn with the model's own initialiser from ``spec.seed``; norm gains are
    perturbed away from 1 so that a missing norm gain would show up in tests.
    """
    from transformers import AutoModelForCausalLM

    spec = spec or TinyModelSpec()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_size = build_tokenizer(directory)
    config = _hf_config(spec, vocab_size)
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
            elif p.ndim == 2:
                p.normal_(0.0, 1.0 / p.shape[1] ** 0.5)
        if hasattr(model, "lm_head"):
            model.lm_head.weight.mul_(4.0)
    model.save_pretrained(directory, safe_serialization=True)
    (directory / "tiny_spec.json").write_text(json.dumps(spec.__dict__, indent=2))
    return directory


def build_random_transcoders(
    directory: str | Path,
    *,
    n_layers: int,
    d_model: int,
    d_transcoder: int,
    kind: str = "plt",
    activation: str = "jump_relu",
    skip: bool = False,
    k: int = 8,
    feature_input_hook: str = "mlp.hook_in",
    feature_output_hook: str = "mlp.hook_out",
    seed: int = 0,
    threshold_scale: float = 1.0,
    model_name: str | None = None,
) -> Path:
    """Write random transcoders in circuit-tracer's on-disk format plus ``config.yaml``.

    ``kind`` is ``"plt"`` (``layer_{i}.safetensors``) or ``"clt"`` (``W_enc_{i}``/``W_dec_{i}``
    files). ``activation`` is ``"relu"``, ``"jump_relu"`` or ``"topk"`` (PLT only). Encoder rows
    are scaled so that pre-activations are O(1); JumpReLU thresholds are uniform in
    ``[0, threshold_scale)`` so that a fair share of features is active.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.rand(*shape, generator=g) * 2 - 1) * scale

    F, D, L = d_transcoder, d_model, n_layers
    config: dict = {
        "model_kind": "transcoder_set" if kind == "plt" else "cross_layer_transcoder",
        "feature_input_hook": feature_input_hook,
        "feature_output_hook": feature_output_hook,
    }
    if model_name:
        config["model_name"] = model_name
    if kind == "plt":
        for layer in range(L):
            tensors = {
                "W_enc": rand(F, D, scale=3.0 / D**0.5),
                "b_enc": rand(F, scale=0.1),
                "W_dec": rand(F, D, scale=1.0 / F**0.5),
                "b_dec": rand(D, scale=0.1),
            }
            if activation == "jump_relu":
                tensors["activation_function.threshold"] = (
                    torch.rand(F, generator=g) * threshold_scale
                )
            if skip:
                tensors["W_skip"] = rand(D, D, scale=0.5 / D**0.5)
            save_file(tensors, str(directory / f"layer_{layer}.safetensors"))
        if activation in ("relu", "topk"):
            config["activation"] = activation
        if activation == "topk":
            config["k"] = int(k)
    elif kind == "clt":
        if activation not in ("relu", "jump_relu"):
            raise ValueError("cross-layer transcoders support relu and jump_relu only")
        for layer in range(L):
            enc = {
                f"W_enc_{layer}": rand(F, D, scale=3.0 / D**0.5),
                f"b_enc_{layer}": rand(F, scale=0.1),
                f"b_dec_{layer}": rand(D, scale=0.1),
            }
            if activation == "jump_relu":
                enc[f"threshold_{layer}"] = torch.rand(F, generator=g) * threshold_scale
            if skip:
                enc[f"W_skip_{layer}"] = rand(D, D, scale=0.5 / D**0.5)
            save_file(enc, str(directory / f"W_enc_{layer}.safetensors"))
            dec = {f"W_dec_{layer}": rand(F, L - layer, D, scale=1.0 / F**0.5)}
            save_file(dec, str(directory / f"W_dec_{layer}.safetensors"))
    else:
        raise ValueError(f"unknown transcoder kind {kind!r}; expected 'plt' or 'clt'")
    # config.yaml last: a folder without it is an incomplete write.
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory
