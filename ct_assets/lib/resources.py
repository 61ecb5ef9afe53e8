"""Dagster resources: the lakehouse (configuration and lake) and the engine (its model cache).

``LakehouseResource`` reads and validates the configuration file once per run, in
``setup_for_execution``; every asset, sensor and the tracker of the run use that one parse.
``EngineResource`` holds a :class:`~ct_engine.model_cache.ModelCache`: every run given the same
resource instance (``ct materialize`` gives one to all its runs) loads each model once.
"""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from ct_engine.model_cache import ModelCache
from ct_lake.config import LakehouseConfig, ModelEntry, load_config
from ct_lake.lake import Lake
from ct_lake.paths import cached_transcoders


class LakehouseResource(dg.ConfigurableResource):
    """The configuration file (``config_path``, default ``$CT_CONFIG`` or the repo's) and the
    lake it names."""

    config_path: str | None = None

    _config: LakehouseConfig | None = PrivateAttr(default=None)
    _lake: Lake | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._load()

    def _load(self) -> None:
        self._config = load_config(self.config_path)
        self._lake = Lake(self._config.lake)

    @property
    def config(self) -> LakehouseConfig:
        """The parsed configuration (read when the run set the resource up)."""
        if self._config is None:  # used outside a run (a test building it directly)
            self._load()
        return self._config

    @property
    def lake(self) -> Lake:
        if self._lake is None:
            self._load()
        return self._lake


class EngineResource(dg.ConfigurableResource):
    """Loads ``ct_engine`` replacement models through the cache this resource holds.

    ``device`` overrides every model entry's device (e.g. ``cpu`` on a GPU machine);
    ``verbose``: the engine's progress bars and phase timings in the step's output (what the
    Dagster UI shows in a step's logs; ``ct materialize`` turns them off for its own bar)."""

    device: str | None = None
    verbose: bool = True

    _models: ModelCache = PrivateAttr(default_factory=ModelCache)

    def _with_updated_values(self, values):
        # Dagster runs a copy of the resource, built from its config fields; the copy shares
        # this instance's cache, so that runs given one instance load each model once.
        copy = super()._with_updated_values(values)
        copy._models = self._models
        return copy

    @property
    def models(self) -> ModelCache:
        """The cache (its ``load_events`` list every load: ``(model entry name, seconds)``)."""
        return self._models

    def model(self, entry: ModelEntry, lake: Lake | None = None):
        """The :class:`~ct_engine.ReplacementModel` of ``entry``, with the lake's cached copy
        of its transcoders when ``transcoder_cache`` has run."""
        if self.device is not None:
            entry = entry.model_copy(update={"device": self.device})
        transcoders = None if lake is None else cached_transcoders(lake, entry.name)
        return self._models.get(entry, transcoders)


def lakehouse_resources(
    config_path: str | None = None, engine: EngineResource | None = None
) -> dict[str, dg.ConfigurableResource]:
    """The resources of a run: the lakehouse (``config_path``, default ``$CT_CONFIG``), the
    engine (``engine``: one shared by several runs, so that they load each model once) and
    the MLflow tracker."""
    from ct_assets.lib.tracking import MlflowTracker

    return {
        "lakehouse": LakehouseResource(config_path=config_path),
        "engine": engine or EngineResource(),
        "tracker": MlflowTracker(),
    }
