"""ct_lake: the lakehouse as a library, free of Dagster and torch.

The configuration (``ct_lakehouse.yaml``), the tables and their schemas, the lake's reads and
writes, the DuckDB catalog over ``sql/``, partition keys, file paths and slugs, and the records
that turn the engine's results into rows. ``ct_assets`` (Dagster) and ``ct_viewer`` build on
it; it builds on ``ct_engine`` only, importing the engine lazily where a graph is converted.
The caches of loaded models and graphs are the engine's (``ct_engine.model_cache``,
``ct_engine.graph.cache``).
"""
