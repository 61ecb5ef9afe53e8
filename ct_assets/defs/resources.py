"""The resources every asset uses; configured from ``$CT_CONFIG`` (or the repo's config).

The engine resource is made once per process: every run this process executes (a Celery
worker runs many steps, ``ct materialize`` several runs) shares its model cache, so a model
loads once per process.
"""

import dagster as dg

from ct_assets.lib.resources import EngineResource, lakehouse_resources

ENGINE = EngineResource()


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=lakehouse_resources(engine=ENGINE))
