"""Replacement models loaded once per process, keyed by everything that changes them.

A run that materializes many prompt partitions of a model (one step over a partition range, or
several assets of one partition) loads it once; the viewer's steering shares the same cache.
The engine (and torch) are imported on the first load only, so ``import ct_lake`` stays light.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class ModelCache:
    """Models by ``(model, transcoders, backend, dtype, device)``; thread-safe.

    ``load_events`` lists ``(model entry name, seconds)`` of every load, for tests and
    benchmarks that check a run loaded its model once.
    """

    def __init__(self) -> None:
        self._models: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.load_events: list[tuple[str, float]] = []

    def get(self, entry, transcoders: str | None = None):
        """The :class:`~ct_engine.ReplacementModel` of a config model entry (``transcoders``
        overrides the entry's transcoder reference, e.g. with the lake's cached copy)."""
        source = transcoders or entry.transcoders
        key = (entry.model, source, entry.backend, entry.dtype, entry.device)
        with self._lock:
            if key not in self._models:
                import torch

                from ct_engine import ReplacementModel

                start = time.perf_counter()
                self._models[key] = ReplacementModel.from_pretrained(
                    entry.model,
                    source,
                    backend=entry.backend,
                    device=entry.device,
                    dtype=getattr(torch, entry.dtype),
                )
                self.load_events.append((entry.name, time.perf_counter() - start))
            return self._models[key]

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self.load_events.clear()


# The process's cache: Dagster's engine resource and the viewer's steering both use it, so a
# process that materializes and serves loads each model once.
MODELS = ModelCache()
