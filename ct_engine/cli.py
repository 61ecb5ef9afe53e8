"""The engine's own command line, ``python -m ct_engine``: the engine subcommands only.

* ``demo``: attribute a two-hop prompt on the embedded toy-world model (offline).
* ``attribute``: attribute a prompt on any model and transcoder set.
* ``intervene``: set features to values and show how the next-token distribution moves.
* ``eval-transcoders``: reconstruction, sparsity and fidelity metrics of a transcoder set.
* ``features build|show``: feature dashboards, in circuit-tracer's feature-file format.

Each is a module of :mod:`ct_engine.commands`, assembled by :func:`ct_engine.commands.main`.
The ``ct`` command (:mod:`ct_cli.main`) assembles these with the lakehouse's commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ct_engine import commands
from ct_engine.commands import attribute, demo, eval_transcoders, features, intervene

COMMANDS = (demo, attribute, intervene, eval_transcoders, features)
PROG = "python -m ct_engine"
DESCRIPTION = "Circuit tracing: attribution graphs over transcoders."


def build_parser() -> argparse.ArgumentParser:
    """The parser of the engine's subcommands (:data:`COMMANDS`)."""
    return commands.build_parser(COMMANDS, prog=PROG, description=DESCRIPTION)


def main(argv: Sequence[str] | None = None) -> int:
    return commands.main(COMMANDS, argv, prog=PROG, description=DESCRIPTION)


if __name__ == "__main__":
    sys.exit(main())
