"""Where each TransformerLens hook point lives in a Hugging Face model, for the nnsight backend.

circuit-tracer's NNsight backend names its sites as nnsight locations: a module's
``.input`` or ``.output``, or an operation inside a module's ``forward`` reached through
``.source`` (``…source.torch_rsqrt_0.output`` is the output of the first ``torch.rsqrt`` call;
``…attention_interface_1.source.nn_functional_dropout_0`` drills into the eager attention
function that the attention module calls). This module writes those locations down per
architecture as strings relative to the decoder layer, and lists them **in execution order**:
nnsight serves values in the order the forward reaches them, so a trace must ask for them in
that order.

A location string is a dotted path from the nnsight model: attribute names, integer indices
for module lists, ``source`` to enter a forward, and a final ``input`` or ``output``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The eager attention function's probabilities after dropout (identity in eval): the
# attention-pattern freeze point. The attention module calls the interface it looks
# up as its second ``attention_interface`` operation (the first is the assignment).
_PATTERN = "self_attn.source.attention_interface_1.source.nn_functional_dropout_0.output"


def _llama_rsqrt(norm: str) -> str:
    """The ``torch.rsqrt`` inside a Llama-style RMSNorm (``x * rsqrt(mean(x²) + eps)``)."""
    return f"{norm}.source.torch_rsqrt_0.output"


def _gemma_rsqrt(norm: str) -> str:
    """The ``torch.rsqrt`` inside a Gemma RMSNorm's ``_norm`` method."""
    return f"{norm}.source.self__norm_0.source.torch_rsqrt_0.output"


@dataclass(frozen=True)
class FamilyMapping:
    """nnsight locations of one architecture.

    Attributes:
        architecture: the Hugging Face class name (``config.architectures[0]``).
        layer_sites: per-layer locations relative to ``{layers}.{l}``, in execution order.
            Each is ``(role, location)``; ``role`` is ``"pattern"`` (attention freeze point),
            ``"norm"`` (a norm-scale freeze point) or a TransformerLens hook name relative to
            the block (a transcoder input/output site).
        embed: what the embedding writes into the residual stream (Gemma's √D included: in
            Transformers 5 the scaled embedding module applies it itself).
        final_norm_scale: the final norm's scale freeze point.
        final_residual: the final-norm output (readout site of logit targets).
        flat_mlp_output: hook names whose value has the batch and position axes flattened
            into one (GPT-OSS experts output, ``(B·T, D)``).
        layers: the decoder layers' module list (``model.language_model.layers`` in the
            multimodal Gemma-3 checkpoints).
        mlp_output: the MLP module's output, one of ``layer_sites``, when it is a single
            ``(B, T, D)`` tensor that a frozen run can stand in for while the module is
            skipped; ``None`` where it is not (GPT-OSS's MLP also returns router scores).
    """

    architecture: str
    layer_sites: tuple[tuple[str, str], ...]
    embed: str = "model.embed_tokens.output"
    final_norm_scale: str = _llama_rsqrt("model.norm")
    final_residual: str = "model.norm.output"
    flat_mlp_output: frozenset[str] = field(default_factory=frozenset)
    layers: str = "model.layers"
    mlp_output: str | None = "mlp.output"

    def layer_location(self, layer: int, location: str) -> str:
        """Absolute location of a per-layer ``location`` of decoder layer ``layer``."""
        return f"{self.layers}.{layer}.{location}"

    def hook_location(self, hook: str) -> str | None:
        """Location (relative to the layer) of a TransformerLens block hook, or ``None``."""
        return dict(self.layer_sites).get(hook)

    @property
    def hooks(self) -> tuple[str, ...]:
        return tuple(role for role, _ in self.layer_sites if role not in ("pattern", "norm"))


# Llama, Qwen-3: pre-norm blocks; q_norm/k_norm of Qwen-3 only feed the frozen pattern.
_LLAMA_SITES = (
    ("norm", _llama_rsqrt("input_layernorm")),
    ("pattern", _PATTERN),
    ("hook_resid_mid", "post_attention_layernorm.input"),
    ("norm", _llama_rsqrt("post_attention_layernorm")),
    ("ln2.hook_normalized", "post_attention_layernorm.source.hidden_states_1.output"),
    ("mlp.hook_in", "post_attention_layernorm.output"),
    ("mlp.hook_out", "mlp.output"),
    ("hook_mlp_out", "mlp.output"),
)


def _gemma_sites(qk_norms: bool) -> tuple[tuple[str, str], ...]:
    """Gemma-2/3 sandwich-norm blocks (Gemma-3 adds q_norm/k_norm inside attention)."""
    qk = (
        (("norm", _gemma_rsqrt("self_attn.q_norm")), ("norm", _gemma_rsqrt("self_attn.k_norm")))
        if qk_norms
        else ()
    )
    return (
        ("norm", _gemma_rsqrt("input_layernorm")),
        *qk,
        ("pattern", _PATTERN),
        ("norm", _gemma_rsqrt("post_attention_layernorm")),
        ("hook_resid_mid", "pre_feedforward_layernorm.input"),
        ("norm", _gemma_rsqrt("pre_feedforward_layernorm")),
        ("ln2.hook_normalized", "pre_feedforward_layernorm.source.self__norm_0.output"),
        ("mlp.hook_in", "pre_feedforward_layernorm.output"),
        ("mlp.hook_out", "mlp.output"),
        ("norm", _gemma_rsqrt("post_feedforward_layernorm")),
        ("hook_mlp_out", "post_feedforward_layernorm.output"),
    )


# GPT-OSS: the MLP returns (output, router scores); the experts module's output is the MLP
# output with batch and position flattened.
_GPT_OSS_SITES = (
    ("norm", _llama_rsqrt("input_layernorm")),
    ("pattern", _PATTERN),
    ("hook_resid_mid", "post_attention_layernorm.input"),
    ("norm", _llama_rsqrt("post_attention_layernorm")),
    ("mlp.hook_in", "post_attention_layernorm.output"),
    ("mlp.hook_out", "mlp.experts.output"),
    ("hook_mlp_out", "mlp.experts.output"),
)

MAPPINGS: dict[str, FamilyMapping] = {
    m.architecture: m
    for m in (
        FamilyMapping("LlamaForCausalLM", _LLAMA_SITES),
        FamilyMapping("Qwen3ForCausalLM", _LLAMA_SITES),
        FamilyMapping(
            "Gemma2ForCausalLM",
            _gemma_sites(qk_norms=False),
            final_norm_scale=_gemma_rsqrt("model.norm"),
        ),
        FamilyMapping(
            "Gemma3ForCausalLM",
            _gemma_sites(qk_norms=True),
            final_norm_scale=_gemma_rsqrt("model.norm"),
        ),
        # The multimodal Gemma-3 checkpoints (4B, 12B, 27B): the same text model under
        # ``model.language_model`` (its embedding applies √D itself), ``lm_head`` at the top
        # . Only text prompts are traced; the vision tower never runs.
        FamilyMapping(
            "Gemma3ForConditionalGeneration",
            _gemma_sites(qk_norms=True),
            embed="model.language_model.embed_tokens.output",
            final_norm_scale=_gemma_rsqrt("model.language_model.norm"),
            final_residual="model.language_model.norm.output",
            layers="model.language_model.layers",
        ),
        FamilyMapping(
            "GptOssForCausalLM",
            _GPT_OSS_SITES,
            flat_mlp_output=frozenset({"mlp.hook_out", "hook_mlp_out"}),
            mlp_output=None,
        ),
    )
}


def mapping_for(architecture: str) -> FamilyMapping:
    """The mapping of a Hugging Face architecture name.

    Raises:
        ValueError: the architecture has no mapping.
    """
    try:
        return MAPPINGS[architecture]
    except KeyError:
        raise ValueError(
            f"the nnsight backend has no mapping for {architecture!r}; supported: "
            f"{', '.join(sorted(MAPPINGS))}"
        ) from None
