"""ct_assets: the Dagster project that materializes attribution graphs into the lakehouse.

Definitions are loaded from ``ct_assets/defs/``; resource classes live in ``ct_assets/lib/``.
The lakehouse assets arrive with the lakehouse issue; the engine they call is ``ct_engine``.
"""
