"""Names that resolve to shipped models, and presets for the supported hub model families.

Shipped, offline:

=================  ==================================================================
name               what
=================  ==================================================================
``toy-world``      the embedded toy-world language model (``ct_engine/toyworld``)
``toy-world-plt``  its per-layer transcoders
``toy-world-clt``  its cross-layer transcoder
=================  ==================================================================

``ReplacementModel.from_pretrained("toy-world", "toy-world-clt")`` loads them offline;
:data:`TOY_WORLD_TRANSCODERS` names the set the toy world's demos use by default.

Hub presets (:data:`PRESETS`, circuit-tracer 0.5.0's supported-models table):
one :class:`Preset` per model + transcoder set, giving the Hugging Face model id, the
transcoder reference, the architecture, hooks, the backend circuit-tracer needs, the zeroed
positions and dtype advice. :func:`load_preset` loads one (needs the hub, or local overrides);
:mod:`ct_engine.replicas` builds tiny local replicas of every family in the exact file formats.

==============================  ================================================================
preset                          transcoders
==============================  ================================================================
``gemma-2-2b``                  ``gemma`` (GemmaScope PLTs, ``.npz``)
``gemma-2-2b-clt-426k``         ``mntss/clt-gemma-2-2b-426k``
``gemma-2-2b-clt-2.5m``         ``mntss/clt-gemma-2-2b-2.5M``
``llama-3.2-1b``                ``llama`` (ReLU skip PLTs)
``llama-3.2-1b-clt-524k``       ``mntss/clt-llama-3.2-1b-524k``
``qwen3-{0.6b,...,14b}``        ``mwhanna/qwen3-*-transcoders[-lowl0]``
``gpt-oss-20b-clt``             ``mntss/clt-131k``
``gemma-3-{size}-{pt,it}``      ``mwhanna/gemma-scope-2-{size}-{pt,it}/transcoder_all/...``
``gemma-3-{size}-{pt,it}-clt``  ``mwhanna/gemma-scope-2-{size}-{pt,it}/clt/...`` (270m, 1b)
==============================  ================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ct_engine.options import BACKENDS

TOY_WORLD_DIR = Path(__file__).resolve().parent / "toyworld" / "artifacts"

MODELS: dict[str, Path] = {"toy-world": TOY_WORLD_DIR / "model"}
TRANSCODERS: dict[str, Path] = {
    "toy-world-plt": TOY_WORLD_DIR / "plt",
    "toy-world-clt": TOY_WORLD_DIR / "clt",
}
# The toy world's default transcoders (``ct demo``, the ground-truth checks): the cross-layer
# transcoder, whose graphs keep the two-hop circuit and explain more of the logits
# (ct_engine/toyworld/MODEL_CARD.md).
TOY_WORLD_TRANSCODERS = "toy-world-clt"


def resolve_model(name: str) -> str:
    """The local directory of a registered model name, else ``name`` unchanged."""
    path = MODELS.get(str(name))
    if path is None:
        return str(name)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"the shipped model {name!r} is missing from {path}")
    return str(path)


def resolve_transcoders(ref):
    """The local folder of a registered transcoder name, else ``ref`` unchanged."""
    path = TRANSCODERS.get(ref) if isinstance(ref, str) else None
    if path is None:
        return ref
    if not (path / "config.yaml").exists():
        raise FileNotFoundError(f"the shipped transcoders {ref!r} are missing from {path}")
    return path


# ------------------------------------------------------------------------- zeroed positions

# Gemma-3 instruction-tuned prompts start with ``<bos><start_of_turn>user\n``.
GEMMA3_IT_PREFIX: tuple[int, ...] = (2, 105, 2364, 107)


def is_gemma3_it(model_name: str) -> bool:
    """circuit-tracer's test: the model name contains ``gemma-3`` and ends with ``-it``."""
    name = str(model_name).rstrip("/")
    return "gemma-3" in name and name.endswith("-it")


def zero_positions_for(model_name: str) -> slice:
    """Positions whose features and errors are zeroed: ``0:4`` for Gemma-3 ``-it``, else ``0:1``."""
    return slice(0, 4) if is_gemma3_it(model_name) else slice(0, 1)


def check_prompt_prefix(model_name: str, tokens: Sequence[int] | Any) -> None:
    """Raise ``ValueError`` when a Gemma-3 ``-it`` prompt does not start with
    ``[2, 105, 2364, 107]`` (nothing is prepended for those models); a no-op otherwise."""
    if not is_gemma3_it(model_name):
        return
    ids = [int(t) for t in (tokens.tolist() if hasattr(tokens, "tolist") else tokens)]
    prefix = list(GEMMA3_IT_PREFIX)
    if ids[: len(prefix)] != prefix:
        raise ValueError(
            f"Gemma-3 instruction-tuned prompts must start with {prefix} "
            f"(<bos><start_of_turn>user\\n), got {ids[: len(prefix)]}: apply the chat template "
            "(with the BOS token) before attributing"
        )


# ---------------------------------------------------------------------------------- presets

PLT, CLT = "transcoder_set", "cross_layer_transcoder"

# TransformerLens' bridge cannot boot the multimodal Gemma-3 class (its config keeps the text
# model's facts in text_config): presets of these architectures load on nnsight only.
NNSIGHT_ONLY_ARCHITECTURES = frozenset({"Gemma3ForConditionalGeneration"})


@dataclass(frozen=True)
class Preset:
    """A supported model with one of its transcoder sets.

    Attributes:
        name: preset name, e.g. ``"gemma-2-2b-clt-426k"``.
        model_id: Hugging Face model id.
        transcoders: transcoder reference (``owner/repo[/sub][@rev]`` or a shortcut).
        family: ``gemma2``, ``llama``, ``qwen3``, ``gpt_oss`` or ``gemma3``.
        architecture: the Hugging Face class of the hub model.
        model_kind: ``transcoder_set`` (PLTs) or ``cross_layer_transcoder``.
        file_format: ``gemmascope-npz``, ``circuit-tracer-plt``, ``circuit-tracer-clt``,
            ``gemmascope2-plt`` or ``gemmascope2-clt``.
        feature_input_hook, feature_output_hook: TransformerLens hook names of the config.
        activation: ``jump_relu`` or ``relu``.
        skip: whether the transcoders have a (linear / affine) skip connection.
        backend: the backend circuit-tracer needs (``transformerlens`` or ``nnsight``).
        dtype: advised dtype on an accelerator; ``dtype_note`` says why.
        n_layers, d_model: the hub model's dimensions.
        d_transcoder: features per layer when known.
        notes: provenance and caveats.
    """

    name: str
    model_id: str
    transcoders: str
    family: str
    architecture: str
    model_kind: str
    file_format: str
    feature_input_hook: str
    feature_output_hook: str
    activation: str
    skip: bool
    backend: str
    dtype: str
    dtype_note: str
    n_layers: int
    d_model: int
    d_transcoder: int | None = None
    notes: str = ""

    @property
    def zero_positions(self) -> slice:
        return zero_positions_for(self.model_id)

    @property
    def is_cross_layer(self) -> bool:
        return self.model_kind == CLT

    @property
    def hooks(self) -> tuple[str, str]:
        return self.feature_input_hook, self.feature_output_hook

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends that load this preset, its default ``backend`` first."""
        able = [
            b
            for b in BACKENDS
            if b == "nnsight" or self.architecture not in NNSIGHT_ONLY_ARCHITECTURES
        ]
        return (self.backend, *(b for b in able if b != self.backend))


_BF16 = "bfloat16"
_GEMMA_DTYPE = "bfloat16 (float16 overflows Gemma's residual stream); float32 on CPU"
_DTYPE_NOTE = "bfloat16 on an accelerator, float32 on CPU"


def _gemma2() -> list[Preset]:
    common = dict(
        model_id="google/gemma-2-2b",
        family="gemma2",
        architecture="Gemma2ForCausalLM",
        backend="transformerlens",
        dtype=_BF16,
        dtype_note=_GEMMA_DTYPE,
        n_layers=26,
        d_model=2304,
    )
    clt = dict(
        model_kind=CLT,
        file_format="circuit-tracer-clt",
        feature_input_hook="hook_resid_mid",
        feature_output_hook="hook_mlp_out",
        activation="jump_relu",
        skip=False,
        notes="CLT hooks inferred from third-party readers of the repo",
    )
    return [
        Preset(
            name="gemma-2-2b",
            transcoders="gemma",
            model_kind=PLT,
            file_format="gemmascope-npz",
            feature_input_hook="ln2.hook_normalized",
            feature_output_hook="hook_mlp_out",
            activation="jump_relu",
            skip=False,
            d_transcoder=16384,
            notes="gemma -> mwhanna/gemma-scope-transcoders: config.yaml lists hf:// .npz files "
            "of google/gemma-scope-2b-pt-transcoders (lowest L0 per layer)",
            **common,
        ),
        Preset(
            name="gemma-2-2b-clt-426k",
            transcoders="mntss/clt-gemma-2-2b-426k",
            d_transcoder=16384,
            **clt,
            **common,
        ),
        Preset(
            name="gemma-2-2b-clt-2.5m",
            transcoders="mntss/clt-gemma-2-2b-2.5M",
            d_transcoder=98304,
            **clt,
            **common,
        ),
    ]


def _llama() -> list[Preset]:
    common = dict(
        model_id="meta-llama/Llama-3.2-1B",
        family="llama",
        architecture="LlamaForCausalLM",
        backend="transformerlens",
        dtype=_BF16,
        dtype_note=_DTYPE_NOTE,
        n_layers=16,
        d_model=2048,
    )
    return [
        Preset(
            name="llama-3.2-1b",
            transcoders="llama",
            model_kind=PLT,
            file_format="circuit-tracer-plt",
            feature_input_hook="hook_resid_mid",
            feature_output_hook="mlp.hook_out",
            activation="relu",
            skip=True,
            d_transcoder=131072,
            notes="llama -> mntss/transcoder-Llama-3.2-1B: ReLU skip transcoders, "
            "layer_{i}.safetensors with W_skip",
            **common,
        ),
        Preset(
            name="llama-3.2-1b-clt-524k",
            transcoders="mntss/clt-llama-3.2-1b-524k",
            model_kind=CLT,
            file_format="circuit-tracer-clt",
            feature_input_hook="hook_resid_mid",
            feature_output_hook="hook_mlp_out",
            activation="jump_relu",
            skip=False,
            d_transcoder=32768,
            notes="CLT hooks inferred from third-party readers of the repo",
            **common,
        ),
    ]


# size -> (repo suffix, n_layers, d_model)
_QWEN3 = {
    "0.6b": ("-lowl0", 28, 1024),
    "1.7b": ("-lowl0", 28, 2048),
    "4b": ("", 36, 2560),
    "8b": ("", 36, 4096),
    "14b": ("-lowl0", 40, 5120),
}


def _qwen3() -> list[Preset]:
    return [
        Preset(
            name=f"qwen3-{size}",
            model_id=f"Qwen/Qwen3-{size.upper()}",
            transcoders=f"mwhanna/qwen3-{size}-transcoders{suffix}",
            family="qwen3",
            architecture="Qwen3ForCausalLM",
            model_kind=PLT,
            file_format="circuit-tracer-plt",
            feature_input_hook="mlp.hook_in",
            feature_output_hook="mlp.hook_out",
            activation="jump_relu",
            skip=False,
            backend="transformerlens",
            dtype=_BF16,
            dtype_note=_DTYPE_NOTE,
            n_layers=n_layers,
            d_model=d_model,
            notes="hooks implied by circuit-tracer's NNsight mapping for Qwen3; "
            "Qwen3 has no BOS: pad/eos is prepended",
        )
        for size, (suffix, n_layers, d_model) in _QWEN3.items()
    ]


def _gpt_oss() -> list[Preset]:
    return [
        Preset(
            name="gpt-oss-20b-clt",
            model_id="openai/gpt-oss-20b",
            transcoders="mntss/clt-131k",
            family="gpt_oss",
            architecture="GptOssForCausalLM",
            model_kind=CLT,
            file_format="circuit-tracer-clt",
            feature_input_hook="hook_resid_mid",
            feature_output_hook="hook_mlp_out",
            activation="jump_relu",
            skip=False,
            backend="nnsight",
            dtype=_BF16,
            dtype_note="bfloat16; the MXFP4 expert weights are dequantized on load",
            n_layers=24,
            d_model=2880,
            d_transcoder=131072,
            notes="not supported by TransformerLens' HookedTransformer: circuit-tracer uses "
            "NNsight; CLT hooks inferred",
        )
    ]


# size -> (n_layers, d_model, has CLT release)
_GEMMA3 = {
    "270m": (18, 640, True),
    "1b": (26, 1152, True),
    "4b": (34, 2560, False),
    "12b": (48, 3840, False),
    "27b": (62, 5376, False),
}
GEMMA3_PLT_SUBFOLDER = "transcoder_all/width_16k_l0_small_affine"
GEMMA3_CLT_SUBFOLDER = "clt/width_262k_l0_medium_affine"


def _gemma3() -> list[Preset]:
    presets = []
    for size, (n_layers, d_model, has_clt) in _GEMMA3.items():
        for variant in ("pt", "it"):
            repo = f"mwhanna/gemma-scope-2-{size}-{variant}"
            common = dict(
                # the 270M base model has no -pt suffix on the hub
                model_id=f"google/gemma-3-{size}"
                + ("" if (size, variant) == ("270m", "pt") else f"-{variant}"),
                family="gemma3",
                architecture=(
                    "Gemma3ForCausalLM"
                    if size in ("270m", "1b")
                    else "Gemma3ForConditionalGeneration"
                ),
                feature_input_hook="mlp.hook_in",
                feature_output_hook="hook_mlp_out",
                activation="jump_relu",
                skip=True,
                backend="nnsight",
                dtype=_BF16,
                dtype_note=_GEMMA_DTYPE,
                n_layers=n_layers,
                d_model=d_model,
            )
            note = (
                "GemmaScope-2 (google/gemma-scope-2-*) via a mwhanna config listing hf:// files; "
                "'affine' = skip connection; NNsight backend only"
            )
            presets.append(
                Preset(
                    name=f"gemma-3-{size}-{variant}",
                    transcoders=f"{repo}/{GEMMA3_PLT_SUBFOLDER}",
                    model_kind=PLT,
                    file_format="gemmascope2-plt",
                    d_transcoder=16384,
                    notes=note,
                    **common,
                )
            )
            if has_clt:
                presets.append(
                    Preset(
                        name=f"gemma-3-{size}-{variant}-clt",
                        transcoders=f"{repo}/{GEMMA3_CLT_SUBFOLDER}",
                        model_kind=CLT,
                        file_format="gemmascope2-clt",
                        notes=note + "; CLT hooks assumed equal to the PLTs'",
                        **common,
                    )
                )
    return presets


PRESETS: dict[str, Preset] = {
    p.name: p for p in _gemma2() + _llama() + _qwen3() + _gpt_oss() + _gemma3()
}


def preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name raises ``KeyError`` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(
            f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None


def load_preset(
    name: str,
    *,
    model_dir: str | Path | None = None,
    transcoder_ref: Any = None,
    **kwargs,
):
    """Load a preset's model and transcoders as a :class:`~ct_engine.ReplacementModel`.

    Args:
        model_dir: a local Hugging Face model folder to use instead of ``model_id``.
        transcoder_ref: a transcoder reference (or loaded transcoders) instead of the preset's.
        **kwargs: passed to ``ReplacementModel.from_pretrained`` (``device``, ``dtype``,
            ``cache_dir``, ...); ``backend`` defaults to the preset's.

    The model's ``zero_positions`` is set from the preset's model id (``0:4`` for Gemma-3
    ``-it``), whatever folder the model was read from.
    """
    from ct_engine.replacement import ReplacementModel

    p = preset(name)
    kwargs.setdefault("backend", p.backend)
    model = ReplacementModel.from_pretrained(
        model_dir if model_dir is not None else p.model_id,
        transcoder_ref if transcoder_ref is not None else p.transcoders,
        **kwargs,
    )
    model.zero_positions = p.zero_positions
    return model
