"""Hook names: the one place that knows how TransformerLens names a hook point.

Transcoder configs name their input and output sites with TransformerLens hook names relative
to a block (``"mlp.hook_in"``, ``"hook_resid_mid"``, ``"ln2.hook_normalized"``,
``"hook_mlp_out"``, ...). Everything else in the engine goes through these helpers.
"""

from __future__ import annotations

EMBED_HOOK = "hook_embed"
FINAL_NORM_SCALE_HOOK = "ln_final.hook_scale"
FINAL_NORM_OUT_HOOK = "ln_final.hook_out"

# Every norm inside a block whose scale is frozen (stop-gradient) in the replacement model.
# ``ln1_post``/``ln2_post`` exist only for sandwich-norm families such as Gemma-2.
BLOCK_NORMS = ("ln1", "ln2", "ln1_post", "ln2_post")


def block_hook(layer: int, hook: str) -> str:
    """Full name of a per-block hook, e.g. ``block_hook(3, "mlp.hook_in")``."""
    return f"blocks.{layer}.{hook}"


def attention_pattern_hook(layer: int) -> str:
    return block_hook(layer, "attn.hook_pattern")


def norm_scale_hook(layer: int, norm: str) -> str:
    return block_hook(layer, f"{norm}.hook_scale")


# Hooks transcoders commonly read or write, suggested when a config names one a model lacks.
COMMON_TRANSCODER_HOOKS = (
    "hook_resid_mid",
    "ln2.hook_normalized",
    "mlp.hook_in",
    "mlp.hook_out",
    "hook_mlp_out",
)


def unknown_hook_message(hook: str, model: str, available: list[str]) -> str:
    """Says that the transcoders' ``hook`` is not one of ``model``'s block hooks
    (``available``, relative to a block), with the nearest names or the common ones."""
    import difflib

    start = f"the transcoders use hook {hook!r}, which this model ({model}) does not have"
    if len(available) <= 8:
        return f"{start}; its hooks: {', '.join(available)}"
    near = difflib.get_close_matches(hook, available, n=3, cutoff=0.6)
    near = near or [h for h in COMMON_TRANSCODER_HOOKS if h in available]
    return f"{start}; its hooks include {', '.join(near)}"
