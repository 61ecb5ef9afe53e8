"""Dagster resources: the lakehouse configuration and lake, and the engine with its model cache."""

from __future__ import annotations

import threading
import time
from typing import Any

import dagster as dg

from ct_assets.lib.config import LakehouseConfig, ModelEntry, load_config
from ct_assets.lib.lake import Lake

# Models loaded in this process, keyed by everything that changes them. A run that
# materializes many prompt partitions of a model (one step over a partition range, or several
# assets of one partition) loads it once.
_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()
LOAD_EVENTS: list[tuple[str, float]] = []  # (model name, seconds): for tests and benchmarks


class LakehouseResource(dg.ConfigurableResource):
    """The configuration file (``config_path``, default ``$CT_CONFIG`` or the repo's) and the
    lake it names."""

    config_path: str | None = None

    @property
    def config(self) -> LakehouseConfig:
        return load_config(self.config_path)

    @property
    def lake(self) -> Lake:
        return Lake(self.config.lake)


class EngineResource(dg.ConfigurableResource):
    """Loads ``ct_engine`` replacement models, once per process per configuration."""

    def model(self, entry: ModelEntry, transcoders: str | None = None):
        """The :class:`~ct_engine.ReplacementModel` of ``entry`` (``transcoders`` overrides
        the entry's transcoder reference, e.g. with the lake's cached copy)."""
        import torch

        from ct_engine import ReplacementModel

        source = transcoders or entry.transcoders
        key = (entry.model, source, entry.backend, entry.dtype, entry.device)
        with _MODELS_LOCK:
            if key not in _MODELS:
                start = time.perf_counter()
                _MODELS[key] = ReplacementModel.from_pretrained(
                    entry.model,
                    source,
                    backend=entry.backend,
                    device=entry.device,
                    dtype=getattr(torch, entry.dtype),
                )
                LOAD_EVENTS.append((entry.name, time.perf_counter() - start))
            return _MODELS[key]


def clear_model_cache() -> None:
    with _MODELS_LOCK:
        _MODELS.clear()
        LOAD_EVENTS.clear()
