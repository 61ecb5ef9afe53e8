"""The resources every asset uses; configured from ``$CT_CONFIG`` (or the repo's config)."""

import dagster as dg

from ct_assets.lib.resources import EngineResource, LakehouseResource
from ct_assets.lib.tracking import MlflowTracker


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "lakehouse": LakehouseResource(),
            "engine": EngineResource(),
            "tracker": MlflowTracker(),
        }
    )
