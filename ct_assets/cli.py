"""The ``ct`` command: the engine's subcommands (``ct_engine.cli``) plus the lakehouse's.

Lakehouse subcommands live in ``ct_assets/commands/``, one module per command, each with
``COMMAND``, ``add_parser(subparsers)`` and ``run(args) -> int``. Nothing here imports
Dagster until a lakehouse command runs, so engine commands start as fast as before.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = ("prompts", "materialize", "sql", "baseline", "serve")


def extensions() -> list:
    modules = []
    for name in COMMANDS:
        try:
            modules.append(importlib.import_module(f"ct_assets.commands.{name}"))
        except ModuleNotFoundError as err:
            if err.name != f"ct_assets.commands.{name}":
                raise
    return modules


def main(argv: list[str] | None = None) -> int:
    from ct_engine.cli import main as engine_main

    return engine_main(argv, extensions=extensions())


if __name__ == "__main__":
    sys.exit(main())
