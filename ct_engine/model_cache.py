"""Replacement models loaded once per cache, keyed by everything that changes them.

A run that materializes many prompt partitions of a model (one step over a partition range, or
several assets of one partition) loads it once from the cache its engine resource holds; the
viewer holds its own cache for steering. A model entry is anything with the config's
``name, preset, model, transcoders, backend, dtype, device`` fields. torch and the loaders are
imported on the first load only, so the modules that hold a cache (the Dagster resources, the
viewer) stay light to import.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class ModelCache:
    """:class:`~ct_engine.ReplacementModel` s of config model entries; thread-safe.

    A preset entry loads through :func:`ct_engine.presets.load_preset` (the preset's zeroed
    positions), a model + transcoders entry through ``ReplacementModel.from_pretrained``; both
    with the entry's backend, dtype and device. The key is ``(preset, model, transcoders,
    backend, dtype, device)`` with the device resolved (``None`` is CUDA when available, else
    the CPU), so ``device: cpu`` and no device share a model on a CPU-only machine.

    ``load_events`` lists ``(model entry name, seconds)`` of every load, for tests and
    benchmarks that check a run loaded its model once.
    """

    def __init__(self) -> None:
        self._models: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.load_events: list[tuple[str, float]] = []

    @staticmethod
    def key(entry, transcoders: str | None = None) -> tuple[str | None, ...]:
        """The cache key of ``entry`` (``transcoders`` overriding its reference)."""
        import torch

        from ct_engine.replacement.model import default_device

        device = torch.device(entry.device) if entry.device else default_device()
        source = str(transcoders or entry.transcoders)
        return (entry.preset, entry.model, source, entry.backend, entry.dtype, str(device))

    def get(self, entry, transcoders: str | None = None):
        """The model of a config model entry, loaded on first use (``transcoders`` overrides
        the entry's transcoder reference, e.g. with the lake's converted copy)."""
        key = self.key(entry, transcoders)
        with self._lock:
            if key not in self._models:
                start = time.perf_counter()
                self._models[key] = _load(entry, transcoders, key[-1])
                self.load_events.append((entry.name, time.perf_counter() - start))
            return self._models[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)

    def loaded(self) -> list[tuple[str | None, ...]]:
        """The keys (see :meth:`key`) of the loaded models, in load order."""
        with self._lock:
            return list(self._models)

    def clear(self) -> None:
        """Forget every model (their memory is freed once no caller holds them)."""
        with self._lock:
            self._models.clear()
            self.load_events.clear()


def _load(entry, transcoders: str | None, device: str):
    import torch

    dtype = getattr(torch, entry.dtype)
    if entry.preset is not None:
        from ct_engine.presets import load_preset

        return load_preset(
            entry.preset,
            transcoder_ref=transcoders,
            backend=entry.backend,
            device=device,
            dtype=dtype,
        )
    from ct_engine import ReplacementModel

    return ReplacementModel.from_pretrained(
        entry.model,
        transcoders or entry.transcoders,
        backend=entry.backend,
        device=device,
        dtype=dtype,
    )
