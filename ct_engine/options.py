"""Names the command line and the lakehouse config accept for a model load, free of torch.

:data:`BACKENDS` are the replacement-model backends; :data:`DTYPE_NAMES` maps each accepted
dtype spelling (circuit-tracer's choices) to the torch dtype name. They live here, not in
:mod:`ct_engine.replacement.model`, so that parsers and config validation need not import
torch.
"""

from __future__ import annotations

BACKENDS = ("transformerlens", "nnsight")

DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}

# A graph's slug names its JSON file in a viewer's folder (``<slug>.json``): a plain file name.
SLUG_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"


def check_slug(slug: str) -> None:
    """Raises ``ValueError`` unless the whole of ``slug`` is a plain file name
    (:data:`SLUG_PATTERN`)."""
    import re

    if not isinstance(slug, str) or not re.fullmatch(SLUG_PATTERN, slug):
        raise ValueError(
            f"slug {slug!r} must be 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
