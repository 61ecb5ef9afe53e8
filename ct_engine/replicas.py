"""Tiny local replicas of every preset family, laid out like the hub repos they stand in for.

:func:`build_replica` writes, for a preset name of :data:`ct_engine.presets.PRESETS`:

* a small Hugging Face model of the preset's architecture (``Gemma2ForCausalLM``,
  ``LlamaForCausalLM``, ``Qwen3ForCausalLM``, ``GptOssForCausalLM``, ``Gemma3ForCausalLM``,
  and for Gemma-3 4B/12B/27B the multimodal ``Gemma3ForConditionalGeneration``: the tiny
  text model plus a one-layer SigLIP vision tower) with random weights and a word-level
  tokenizer, in ``<root>/models/<model_id>`` (so a Gemma-3 ``-it`` replica lives in a folder
  whose name ends with ``-it``); the Gemma-3 tokenizer has the chat tokens at their real ids
  (``<bos>`` 2, ``<start_of_turn>`` 105, ``\\n`` 107, ``user`` 2364) and a chat template;
* random transcoders in that repo's exact on-disk format, config keys and hooks, under
  ``<root>/hub/<owner>/<repo>/...`` — one folder per hub repo involved (GemmaScope and
  GemmaScope-2 configs list ``hf://google/...`` files of a second repo).

Serve ``<root>/hub`` as the hub with :func:`local_hub` (or the tests' monkeypatching) and the
preset's own transcoder reference loads through the normal download path.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

from ct_engine.presets import PRESETS, Preset, preset
from ct_engine.tiny import build_random_transcoders, build_tokenizer

# Real Gemma-3 ids of the tokens an instruction-tuned prompt starts with.
GEMMA3_SPECIAL_IDS = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
GEMMA3_CHAT_IDS = {"<start_of_turn>": 105, "<end_of_turn>": 106, "\n": 107, "user": 2364}
GEMMA3_VOCAB = 2400
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ message['role'] }}\n"
    "{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
_GEMMA3_WORDS = (
    "the a of in is was to and that it for on as with by at from capital city country state "
    "river language people lives speaks where which who what when fact Mira Tom Ana Paris Berlin "
    "Rome Austin Dallas Texas France Germany Italy Spain small big opposite north south east "
    "west one two three four five six seven eight nine ten model ( ) . , : ; ?"
).split()


@dataclass(frozen=True)
class ReplicaSpec:
    """Dimensions of a replica (the same for every family)."""

    n_layers: int = 2
    d_model: int = 32
    n_heads: int = 4
    n_kv_heads: int = 2
    d_mlp: int = 64
    d_transcoder: int = 128
    seed: int = 0


@dataclass(frozen=True)
class Replica:
    """A built replica: the model folder, the hub root, and the preset it replicates."""

    preset: Preset
    model_dir: Path
    hub_root: Path

    @property
    def transcoder_ref(self) -> str:
        return self.preset.transcoders

    def repo_dir(self, repo_id: str) -> Path:
        return self.hub_root / repo_id


# ------------------------------------------------------------------------------- tokenizers


def build_gemma3_tokenizer(directory: Path) -> int:
    """A word-level tokenizer with Gemma-3's special and chat token ids; returns its size."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {**GEMMA3_SPECIAL_IDS, **GEMMA3_CHAT_IDS}
    taken = set(vocab.values())
    free = (i for i in range(GEMMA3_VOCAB) if i not in taken)
    for word in dict.fromkeys(_GEMMA3_WORDS):
        if word not in vocab:
            vocab[word] = next(free)
    for i in free:
        vocab[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.add_special_tokens(
        [AddedToken(t, special=True) for t in (*GEMMA3_SPECIAL_IDS, "<start_of_turn>")]
        + [AddedToken("<end_of_turn>", special=True)]
    )
    tok.add_tokens([AddedToken("\n", normalized=False)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.chat_template = GEMMA3_CHAT_TEMPLATE
    fast.save_pretrained(directory)
    return GEMMA3_VOCAB


# ----------------------------------------------------------------------------------- models


def _hf_config(family: str, spec: ReplicaSpec, vocab_size: int, special_ids: dict[str, int]):
    common = dict(
        vocab_size=vocab_size,
        hidden_size=spec.d_model,
        intermediate_size=spec.d_mlp,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_kv_heads,
        head_dim=spec.d_model // spec.n_heads,
        max_position_embeddings=256,
        **special_ids,
    )
    if family == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common, tie_word_embeddings=False)
    if family == "qwen3":
        from transformers import Qwen3Config

        return Qwen3Config(**common, tie_word_embeddings=False)
    if family == "gemma2":
        from transformers import Gemma2Config

        return Gemma2Config(
            **common,
            query_pre_attn_scalar=spec.d_model // spec.n_heads,
            sliding_window=256,
            final_logit_softcapping=30.0,
            attn_logit_softcapping=50.0,
            hidden_activation="gelu_pytorch_tanh",
        )
    if family == "gemma3":
        from transformers import Gemma3TextConfig

        return Gemma3TextConfig(
            **common,
            query_pre_attn_scalar=spec.d_model // spec.n_heads,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention"] * (spec.n_layers // 2)
            + ["sliding_attention"] * (spec.n_layers % 2),
            hidden_activation="gelu_pytorch_tanh",
        )
    if family == "gpt_oss":
        from transformers import GptOssConfig

        common["intermediate_size"] = spec.d_model
        return GptOssConfig(
            **common,
            num_local_experts=4,
            num_experts_per_tok=2,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention"] * (spec.n_layers // 2)
            + ["sliding_attention"] * (spec.n_layers % 2),
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False,
        )
    raise ValueError(f"no replica for family {family!r}")


def _gemma3_multimodal_config(text_config):
    """A ``Gemma3Config`` around ``text_config`` with a tiny SigLIP vision tower (one layer,
    28-pixel images of 2x2 patches, 4 soft tokens per image)."""
    from transformers import Gemma3Config, SiglipVisionConfig

    vision = SiglipVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
        vision_use_head=False,
    )
    return Gemma3Config(
        text_config=text_config,
        vision_config=vision,
        mm_tokens_per_image=4,
        boi_token_index=text_config.vocab_size - 3,
        eoi_token_index=text_config.vocab_size - 2,
        image_token_index=text_config.vocab_size - 1,
        pad_token_id=text_config.pad_token_id,
        bos_token_id=text_config.bos_token_id,
        eos_token_id=text_config.eos_token_id,
    )


def build_replica_model(
    directory: str | Path,
    family: str,
    spec: ReplicaSpec | None = None,
    architecture: str | None = None,
) -> Path:
    """Write a random Hugging Face causal LM of ``family`` with its tokenizer to ``directory``.

    ``architecture="Gemma3ForConditionalGeneration"`` (family ``gemma3``) wraps the text model
    in the multimodal class the Gemma-3 4B/12B/27B checkpoints use. Norm gains are perturbed
    away from their init so that a missing gain shows up in tests.
    """
    from transformers import AutoModelForCausalLM

    spec = spec or ReplicaSpec()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if family == "gemma3":
        vocab_size = build_gemma3_tokenizer(directory)
        special = dict(pad_token_id=0, eos_token_id=1, bos_token_id=2)
    else:
        vocab_size = build_tokenizer(directory)
        special = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config = _hf_config(family, spec, vocab_size, special)
    multimodal = architecture == "Gemma3ForConditionalGeneration"
    if multimodal:
        if family != "gemma3":
            raise ValueError(f"{architecture} replicas are Gemma-3 only, not {family!r}")
        config = _gemma3_multimodal_config(config)
    torch.manual_seed(spec.seed)
    if multimodal:
        from transformers import Gemma3ForConditionalGeneration

        model = Gemma3ForConditionalGeneration._from_config(config, attn_implementation="eager")
    else:
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
            elif p.ndim == 2 and "router" not in name:
                p.normal_(0.0, 1.0 / p.shape[1] ** 0.5)
            elif p.ndim == 3:  # stacked experts
                p.normal_(0.0, 1.0 / min(p.shape[1:]) ** 0.5)
            elif "router" in name:
                p.normal_(0.0, 1.0)
        if getattr(model, "lm_head", None) is not None and not config.tie_word_embeddings:
            model.lm_head.weight.mul_(4.0)
    model.save_pretrained(directory)
    (directory / "replica_spec.json").write_text(
        json.dumps(
            {"family": family, "architecture": type(model).__name__, **spec.__dict__}, indent=2
        )
    )
    return directory


# ------------------------------------------------------------------------------ transcoders


def _rand(g: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.rand(*shape, generator=g) * 2 - 1) * scale


def _write_config(directory: Path, config: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _split_ref(ref: str) -> tuple[str, str | None]:
    from ct_engine.transcoders.refs import parse_transcoder_ref

    parsed = parse_transcoder_ref(ref)
    if parsed.is_local:
        raise ValueError(f"{ref!r} is not a hub reference")
    return parsed.repo_id, parsed.subfolder


def _base_config(p: Preset) -> dict:
    return {
        "model_kind": p.model_kind,
        "model_name": p.model_id,
        "feature_input_hook": p.feature_input_hook,
        "feature_output_hook": p.feature_output_hook,
    }


def write_gemmascope_npz(hub_root: Path, p: Preset, spec: ReplicaSpec, g: torch.Generator) -> None:
    """``mwhanna/gemma-scope-transcoders/config.yaml`` listing GemmaScope ``.npz`` files of
    ``google/gemma-scope-2b-pt-transcoders`` (``layer_{i}/width_16k/average_l0_{n}``)."""
    source = "google/gemma-scope-2b-pt-transcoders"
    D, F = spec.d_model, spec.d_transcoder
    files = []
    for i in range(spec.n_layers):
        rel = f"layer_{i}/width_16k/average_l0_{10 + 7 * i}/params.npz"
        path = hub_root / source / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            W_enc=_rand(g, D, F, scale=3 / D**0.5).numpy(),
            W_dec=_rand(g, F, D, scale=1 / F**0.5).numpy(),
            b_enc=_rand(g, F, scale=0.1).numpy(),
            b_dec=_rand(g, D, scale=0.1).numpy(),
            threshold=torch.rand(F, generator=g).numpy(),
        )
        files.append(f"hf://{source}/{rel}")
    repo, sub = _split_ref(p.transcoders)
    _write_config(hub_root / repo / (sub or ""), {**_base_config(p), "transcoders": files})


def write_gemmascope2(hub_root: Path, p: Preset, spec: ReplicaSpec, g: torch.Generator) -> None:
    """``mwhanna/gemma-scope-2-*/<sub>/config.yaml`` listing GemmaScope-2 safetensors of
    ``google/gemma-scope-2-*``: PLT ``transcoder_all/layer_{i}_<width>/params.safetensors``,
    CLT ``clt/<width>/params_layer_{i}.safetensors`` (``w_dec (F, L, D)``)."""
    repo, sub = _split_ref(p.transcoders)
    source = "google/" + repo.split("/", 1)[1]
    D, F, L = spec.d_model, spec.d_transcoder, spec.n_layers
    files = []
    for i in range(L):
        if p.is_cross_layer:
            rel = f"{sub}/params_layer_{i}.safetensors"
            w_dec = _rand(g, F, L, D, scale=1 / F**0.5)
        else:
            folder, width = sub.rsplit("/", 1)
            rel = f"{folder}/layer_{i}_{width}/params.safetensors"
            w_dec = _rand(g, F, D, scale=1 / F**0.5)
        tensors = {
            "w_enc": _rand(g, D, F, scale=3 / D**0.5),
            "w_dec": w_dec,
            "b_enc": _rand(g, F, scale=0.1),
            "b_dec": _rand(g, D, scale=0.1),
            "threshold": torch.rand(F, generator=g),
        }
        if p.skip:
            tensors["affine_skip_connection"] = _rand(g, D, D, scale=0.5 / D**0.5)
        path = hub_root / source / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path))
        files.append(f"hf://{source}/{rel}")
    _write_config(hub_root / repo / sub, {**_base_config(p), "transcoders": files})


def write_circuit_tracer(hub_root: Path, p: Preset, spec: ReplicaSpec, seed: int) -> None:
    """circuit-tracer's own layout in the repo folder: PLT ``layer_{i}.safetensors`` (with
    ``W_skip`` for skip transcoders), CLT ``W_enc_{i}`` / ``W_dec_{i}.safetensors``."""
    repo, sub = _split_ref(p.transcoders)
    build_random_transcoders(
        hub_root / repo / (sub or ""),
        n_layers=spec.n_layers,
        d_model=spec.d_model,
        d_transcoder=spec.d_transcoder,
        kind="clt" if p.is_cross_layer else "plt",
        activation=p.activation,
        skip=p.skip,
        feature_input_hook=p.feature_input_hook,
        feature_output_hook=p.feature_output_hook,
        seed=seed,
        model_name=p.model_id,
    )


def write_replica_transcoders(hub_root: str | Path, name: str, spec: ReplicaSpec | None = None):
    """Write preset ``name``'s transcoders under ``hub_root`` in its repo's exact format."""
    spec = spec or ReplicaSpec()
    p = preset(name)
    hub_root = Path(hub_root)
    seed = (spec.seed + zlib.crc32(name.encode())) % 10_000
    g = torch.Generator().manual_seed(seed)
    if p.file_format == "gemmascope-npz":
        write_gemmascope_npz(hub_root, p, spec, g)
    elif p.file_format.startswith("gemmascope2"):
        write_gemmascope2(hub_root, p, spec, g)
    elif p.file_format.startswith("circuit-tracer"):
        write_circuit_tracer(hub_root, p, spec, seed)
    else:
        raise ValueError(f"no writer for format {p.file_format!r}")
    return hub_root


def build_replica(name: str, root: str | Path, spec: ReplicaSpec | None = None) -> Replica:
    """Build preset ``name``'s replica under ``root`` (model and hub folders are reused when
    already complete, so several presets of one model share it)."""
    spec = spec or ReplicaSpec()
    p = preset(name)
    root = Path(root)
    model_dir = root / "models" / p.model_id
    if not (model_dir / "config.json").exists():
        build_replica_model(model_dir, p.family, spec, architecture=p.architecture)
    hub_root = root / "hub"
    repo, sub = _split_ref(p.transcoders)
    if not (hub_root / repo / (sub or "") / "config.yaml").exists():
        write_replica_transcoders(hub_root, name, spec)
    return Replica(preset=p, model_dir=model_dir, hub_root=hub_root)


def replica_presets() -> list[str]:
    """Every preset name (each one can be replicated)."""
    return list(PRESETS)


# ---------------------------------------------------------------------------------- the hub


@contextlib.contextmanager
def local_hub(hub_root: str | Path) -> Iterator[list[tuple]]:
    """Serve ``huggingface_hub`` downloads from ``hub_root/<owner>/<repo>`` (revisions ignored).

    Patches ``huggingface_hub.hf_hub_download`` and ``snapshot_download`` (which the transcoder
    loader looks up at call time); yields the list of calls made.
    """
    import huggingface_hub

    root = Path(hub_root)
    calls: list[tuple] = []

    def hf_hub_download(repo_id, filename, *, revision=None, **kwargs):
        calls.append(("file", repo_id, filename, revision))
        path = root / repo_id / filename
        if not path.is_file():
            raise huggingface_hub.errors.LocalEntryNotFoundError(f"{repo_id}/{filename}")
        return str(path)

    def snapshot_download(repo_id, *, revision=None, allow_patterns=None, **kwargs):
        calls.append(("snapshot", repo_id, tuple(allow_patterns or ()), revision))
        return str(root / repo_id)

    saved = (huggingface_hub.hf_hub_download, huggingface_hub.snapshot_download)
    huggingface_hub.hf_hub_download = hf_hub_download
    huggingface_hub.snapshot_download = snapshot_download
    try:
        yield calls
    finally:
        huggingface_hub.hf_hub_download, huggingface_hub.snapshot_download = saved
