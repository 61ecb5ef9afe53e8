"""The viewer's subcommands: ``ct serve``, its alias ``ct start-server`` (circuit-tracer's name)
and ``ct attribute`` with ``--server``.

Each is a subcommand module (the interface of :mod:`ct_engine.commands`).
"""
