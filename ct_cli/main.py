"""The ``ct`` command: every subcommand module, assembled by :func:`ct_engine.commands.main`.

Engine commands (``demo``, ``intervene``, ``eval-transcoders``, the ``features`` group) come from
``ct_engine/commands/``; ``attribute`` is the engine's plus the viewer's ``--server``
(``ct_viewer/commands/attribute.py``); ``sql`` and the ``lake`` group from
``ct_lake/commands/`` (no Dagster); ``prompts``, ``materialize`` and ``baseline`` from
``ct_assets/commands/`` (Dagster); ``serve`` and its alias ``start-server``
(circuit-tracer's name) from ``ct_viewer/commands/``. Command modules
import their heavy dependencies (torch, Dagster, DuckDB) inside ``run``, so ``ct --help`` and
``ct sql`` start without torch.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ct_assets.commands import baseline, materialize, prompts
from ct_engine import commands
from ct_engine.commands import demo, eval_transcoders, features, intervene
from ct_lake.commands import lake, sql
from ct_viewer.commands import attribute, serve, start_server

# In the order `ct --help` lists them.
COMMANDS = (
    demo,
    attribute,
    intervene,
    eval_transcoders,
    features,
    prompts,
    materialize,
    sql,
    baseline,
    serve,
    start_server,
    lake,
)
DESCRIPTION = "Circuit tracing: attribution graphs over transcoders, in a lakehouse."


def main(argv: Sequence[str] | None = None) -> int:
    return commands.main(COMMANDS, argv, prog="ct", description=DESCRIPTION)


if __name__ == "__main__":
    sys.exit(main())
