"""The resources every asset uses; configured from ``$CT_CONFIG`` (or the repo's config)."""

import dagster as dg

from ct_assets.lib.resources import lakehouse_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=lakehouse_resources())
