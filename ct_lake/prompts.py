"""Registering prompts: the lake's ``prompts`` table plus the Dagster dynamic partitions.

All three ways in (a prompts file picked up by a sensor, ``ct prompts add``, and the
``register_prompt`` job in the Dagster UI) end here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from ct_lake.config import LakehouseConfig
from ct_lake.keys import MODELS_PARTITIONS, PROMPTS_PARTITIONS, partition_key, prompt_key
from ct_lake.lake import Lake

MAX_PROMPT_CHARS = 20_000


@dataclass(frozen=True)
class Registered:
    """What a registration added: prompt keys (new or not) and model × prompt partitions."""

    prompts: dict[str, str]  # key -> text
    models: list[str]
    new_prompts: list[str]

    @property
    def partitions(self) -> list[tuple[str, str]]:
        """Every ``(model key, prompt key)`` pair, model-major."""
        return [partition_key(m, p) for m in self.models for p in self.prompts]


def check_prompt(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the prompt is empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt has {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")
    return text


def register_prompts(
    config: LakehouseConfig, texts: Iterable[str], models: Iterable[str], instance=None
) -> Registered:
    """Write each prompt's row to the lake (idempotent) and add the partitions to Dagster.

    Args:
        texts: prompt texts (exact: whitespace matters for the key).
        models: model names from the config (validated).
        instance: a ``DagsterInstance``; None writes the lake only.
    """
    models = list(dict.fromkeys(models))
    for name in models:
        config.model(name)
    lake = Lake(config.lake)
    prompts: dict[str, str] = {}
    new = []
    for text in texts:
        key = prompt_key(check_prompt(text))
        prompts[key] = text
        if not lake.has_partition("prompts", prompt=key):
            row = {"text": text, "n_chars": len(text), "registered_at": datetime.now(UTC)}
            lake.write_table("prompts", [row], prompt=key)
            new.append(key)
    if instance is not None:
        _add_partitions(instance, MODELS_PARTITIONS, models)
        _add_partitions(instance, PROMPTS_PARTITIONS, list(prompts))
    return Registered(prompts=prompts, models=models, new_prompts=new)


def _add_partitions(instance, name: str, keys: list[str]) -> None:
    missing = [k for k in keys if not instance.has_dynamic_partition(name, k)]
    if missing:
        instance.add_dynamic_partitions(name, missing)


def prompt_text(lake: Lake, key: str) -> str:
    """The text registered for prompt ``key`` in the lake's ``prompts`` table."""
    if not lake.has_partition("prompts", prompt=key):
        raise ValueError(
            f"prompt {key} is not registered in the lake {lake.uri}: add it with "
            "`ct prompts add TEXT --model MODEL` (or the register_prompt job)"
        )
    return lake.read_table("prompts", prompt=key).column("text")[0].as_py()
