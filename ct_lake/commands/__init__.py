"""The lake's subcommands, free of Dagster and torch: ``ct sql`` and the ``ct lake`` group.

Each is a subcommand module (the interface of :mod:`ct_engine.commands`).
"""
