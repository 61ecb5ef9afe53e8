"""Partition keys: the one place that knows how models and prompts are named in Dagster.

Model keys are short slugs (``toy-world``). Prompt keys are ``p_`` plus the first 12 hex
digits of the SHA-256 of the prompt text, so raw text (with ``|``, ``,``, newlines...) never
sits in a key; the lake's ``prompts`` table maps each key back to its text. A model × prompt
partition is the pair ``(model key, prompt key)``: the dimensions ``model`` and ``prompt``
(Dagster's ``MultiPartitionKey`` of them is built in ``ct_assets``, never by hand here).
"""

from __future__ import annotations

import hashlib
import re

MODEL_DIMENSION = "model"
PROMPT_DIMENSION = "prompt"
MODELS_PARTITIONS = "models"  # names of the two dynamic partitions definitions
PROMPTS_PARTITIONS = "prompts"

MODEL_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PROMPT_KEY = re.compile(r"^p_[0-9a-f]{12}$")


def prompt_key(text: str) -> str:
    """``p_<12 hex>`` of the exact prompt text (UTF-8)."""
    if not text or not text.strip():
        raise ValueError("the prompt is empty")
    return "p_" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def check_model_key(name: str) -> str:
    """``name`` if it is a valid model key (lowercase letters, digits, ``.``, ``_``, ``-``)."""
    if not MODEL_KEY.match(name):
        raise ValueError(
            f"model name {name!r} is not a valid key: use 1-64 lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_prompt_key(key: str) -> str:
    if not PROMPT_KEY.match(key):
        raise ValueError(f"{key!r} is not a prompt key (p_ + 12 hex digits)")
    return key


def partition_key(model: str, prompt: str) -> tuple[str, str]:
    """The validated ``(model key, prompt key)`` pair of a model × prompt partition."""
    return check_model_key(model), check_prompt_key(prompt)
