"""``ct lake ACTION``: inspect and maintain the lake.

A group of subcommands: each action is a module of this package with the subcommand
interface of :mod:`ct_engine.commands` (``NAME``, ``HELP``, ``add_arguments(parser)``,
``run(args) -> int``), listed in :data:`ACTIONS`; the chosen action's name is
``args.action``. Action modules, like this one, import neither Dagster nor torch.
"""

from __future__ import annotations

import argparse
from types import ModuleType

from ct_engine.commands import add_subcommands, run_subcommand
from ct_lake.commands import (
    lake_check,
    lake_history,
    lake_info,
    lake_migrate,
    lake_optimize,
    lake_sweep,
)

NAME = "lake"
HELP = "inspect and maintain the lake"

# The action modules, in the order `ct lake --help` lists them.
ACTIONS: tuple[ModuleType, ...] = (
    lake_info,
    lake_history,
    lake_check,
    lake_sweep,
    lake_optimize,
    lake_migrate,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_subcommands(parser, ACTIONS, dest="action")


def run(args: argparse.Namespace) -> int:
    return run_subcommand(args, ACTIONS, dest="action")
