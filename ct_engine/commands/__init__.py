"""Subcommand modules, and the one function that assembles them into a command line.

Every ``ct`` subcommand is a module with:

``NAME: str``
    the word on the command line (``"sql"``, ``"eval-transcoders"``);
``HELP: str``
    one line for the parent's ``--help``;
``add_arguments(parser: argparse.ArgumentParser) -> None``
    adds the command's arguments to its own parser;
``run(args: argparse.Namespace) -> int``
    runs it and returns the exit status (2 for a mistake the user can fix, after one line on
    stderr).

Optional: ``DESCRIPTION: str`` (the command's own ``--help`` text, default ``HELP``).

Every parser's help shows each option's default (:class:`HelpFormatter`), so a help string
states a default itself only where a value alone would not say enough ("default: cuda when
available, else cpu").

A group of subcommands (``ct lake info|optimize|...``) is one such module whose
``add_arguments`` calls :func:`add_subcommands` with its action modules (the same interface,
with ``dest`` naming the attribute that receives the action's name) and whose ``run`` calls
:func:`run_subcommand` with the same modules and ``dest``.

Modules are imported when the parser is built, so their top level must stay light (argparse
and constants): torch, Dagster, DuckDB and the rest are imported inside ``run``. That keeps
``ct --help`` and ``ct sql`` free of torch.

:func:`main` is the whole command line for a list of modules: the engine's ``python -m
ct_engine`` (:mod:`ct_engine.cli`) and the ``ct`` command (:mod:`ct_cli.main`) both use it.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Sequence
from types import ModuleType


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help (or makes it the help of an option without
    one), except where there is nothing to show (a default of None, False, an empty list or
    string; a switch) or where the help already says it (it mentions "default")."""

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and _shows_default(action):
            action = copy.copy(action)  # argparse prints no help line for an empty help
            action.help = "default: %(default)s"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if _shows_default(action) and "default" not in action.help.lower():
            return f"{action.help} (default: %(default)s)"
        return action.help


def _shows_default(action: argparse.Action) -> bool:
    default = action.default
    return (
        bool(action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        and action.nargs != 0
        and default is not None
        and default is not False
        and default is not argparse.SUPPRESS
        and not (isinstance(default, str | list | tuple) and not default)
    )


def add_subcommands(
    parser: argparse.ArgumentParser, modules: Sequence[ModuleType], *, dest: str = "command"
) -> None:
    """One sub-parser per module of ``modules`` under ``parser``; the chosen name goes to
    ``args.<dest>``. Raises ``ValueError`` if two modules share a ``NAME``."""
    names = [module.NAME for module in modules]
    if len(set(names)) != len(names):
        raise ValueError(f"subcommand names must be unique, got {names}")
    sub = parser.add_subparsers(dest=dest, required=True)
    for module in modules:
        child = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=HelpFormatter,
        )
        module.add_arguments(child)


def run_subcommand(
    args: argparse.Namespace, modules: Sequence[ModuleType], *, dest: str = "command"
) -> int:
    """Run the module of ``modules`` whose ``NAME`` is ``args.<dest>``; its exit status."""
    by_name = {module.NAME: module for module in modules}
    return by_name[getattr(args, dest)].run(args)


def build_parser(
    modules: Sequence[ModuleType], *, prog: str = "ct", description: str | None = None
) -> argparse.ArgumentParser:
    """The parser of a command line made of ``modules`` (the chosen name: ``args.command``)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=HelpFormatter
    )
    add_subcommands(parser, modules)
    return parser


def main(
    modules: Sequence[ModuleType],
    argv: Sequence[str] | None = None,
    *,
    prog: str = "ct",
    description: str | None = None,
) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the chosen module; its exit status.

    A ``ValueError`` that escapes a command (a mistake the user can fix) is printed as one
    line, ``<prog> <command> [<action>]: error: <message>``, with exit status 2 and no
    traceback. Output piped into a reader that stops early (``ct sql ... | head``) ends the
    command quietly, as Unix tools do."""
    args = build_parser(modules, prog=prog, description=description).parse_args(argv)
    try:
        return run_subcommand(args, modules)
    except BrokenPipeError:
        # Python would complain again while flushing stdout at exit: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe
    except ValueError as err:
        action = getattr(args, "action", None)
        where = f"{args.command} {action}" if action else args.command
        print(f"{prog} {where}: error: {err}", file=sys.stderr)
        return 2
