"""Dagster resources: the lakehouse configuration and lake, and the engine with its model cache."""

from __future__ import annotations

import dagster as dg

from ct_lake.config import LakehouseConfig, ModelEntry, load_config
from ct_lake.lake import Lake
from ct_lake.models import MODELS


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
        return MODELS.get(entry, transcoders)


def clear_model_cache() -> None:
    MODELS.clear()


LOAD_EVENTS = MODELS.load_events
