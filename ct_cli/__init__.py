"""ct_cli: the ``ct`` command, the top layer: every subcommand module of the engine
(``ct_engine.commands``), the lake (``ct_lake.commands``), the Dagster project
(``ct_assets.commands``) and the viewer (``ct_viewer.commands``), assembled in
:mod:`ct_cli.main`."""
