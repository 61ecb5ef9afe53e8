"""The viewer's subcommands: ``ct serve`` and ``ct attribute`` with ``--server``.

Each is a subcommand module (the interface of :mod:`ct_engine.commands`).
"""
