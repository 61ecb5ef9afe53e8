"""ct_lake: the lakehouse as a library, free of Dagster and torch.

The configuration (``ct_lakehouse.yaml``), the tables and their schemas, the lake's reads and
writes, the DuckDB catalog over ``sql/``, partition keys, file paths and slugs, and the model
cache. ``ct_assets`` (Dagster) and ``ct_viewer`` build on it; it builds on ``ct_engine`` only,
importing the engine (and torch) lazily where a model or a graph is needed.
"""
