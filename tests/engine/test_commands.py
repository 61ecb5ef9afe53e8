"""The subcommand mechanism (:mod:`ct_engine.commands`): modules assembled into a parser,
groups of actions, dispatch, and one error line for a ``ValueError``."""

from __future__ import annotations

import argparse
from types import ModuleType

import pytest

from ct_engine import commands


def _command(name: str, run, add=lambda parser: None, **extra) -> ModuleType:
    """A subcommand module built in place (the interface: NAME, HELP, add_arguments, run)."""
    module = ModuleType(f"test_{name}")
    module.NAME, module.HELP = name, f"the {name} command"
    module.add_arguments, module.run = add, run
    for key, value in extra.items():
        setattr(module, key, value)
    return module


def test_dispatch_and_arguments(capsys):
    seen = []
    echo = _command(
        "echo",
        lambda args: seen.append(args.words) or len(args.words),
        add=lambda p: p.add_argument("words", nargs="*"),
        DESCRIPTION="Echo the words back.",
    )
    fail = _command("fail", lambda args: 3)
    assert commands.main([echo, fail], ["echo", "a", "b"]) == 2 and seen == [["a", "b"]]
    assert commands.main([echo, fail], ["fail"]) == 3
    with pytest.raises(SystemExit) as stop:
        commands.main([echo, fail], ["--help"], prog="tool")
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "usage: tool" in out and "the echo command" in out and "the fail command" in out
    with pytest.raises(SystemExit):
        commands.main([echo, fail], ["echo", "--help"], prog="tool")
    assert "Echo the words back." in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        commands.main([echo], [], prog="tool")  # a subcommand is required
    assert stop.value.code == 2


def test_a_group_of_actions(capsys):
    done = []
    actions = (
        _command("info", lambda args: done.append(("info", args.verbose)) or 0),
        _command(
            "optimize",
            lambda args: done.append(("optimize", args.table)) or 0,
            add=lambda p: p.add_argument("--table"),
        ),
    )

    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--verbose", action="store_true")
        commands.add_subcommands(parser, actions, dest="action")

    group = _command("lake", lambda args: commands.run_subcommand(args, actions, dest="action"))
    group.add_arguments = add
    assert commands.main([group], ["lake", "--verbose", "info"]) == 0
    assert commands.main([group], ["lake", "optimize", "--table", "nodes"]) == 0
    assert done == [("info", True), ("optimize", "nodes")]
    with pytest.raises(SystemExit):
        commands.main([group], ["lake", "--help"], prog="tool")
    out = capsys.readouterr().out
    assert "usage: tool lake" in out and "{info,optimize}" in out


def test_a_value_error_is_one_line(capsys):
    def run(args):
        raise ValueError("no lake at s3://bucket/x (endpoint http://127.0.0.1:9)")

    assert commands.main([_command("sql", run)], ["sql"], prog="ct") == 2
    err = capsys.readouterr().err
    assert err == "ct sql: error: no lake at s3://bucket/x (endpoint http://127.0.0.1:9)\n"


def test_names_must_be_unique():
    one, two = _command("x", lambda a: 0), _command("x", lambda a: 1)
    with pytest.raises(ValueError, match="unique"):
        commands.build_parser([one, two])


def test_the_engine_and_ct_commands():
    from ct_cli.main import COMMANDS
    from ct_engine.cli import COMMANDS as ENGINE

    names = [m.NAME for m in COMMANDS]
    assert [m.NAME for m in ENGINE] == [
        "demo",
        "attribute",
        "intervene",
        "eval-transcoders",
        "features",
    ]
    assert set(names) >= {m.NAME for m in ENGINE} | {"sql", "lake", "prompts", "serve"}
    for module in COMMANDS:  # the interface, everywhere
        assert isinstance(module.HELP, str) and callable(module.add_arguments)
        assert callable(module.run)
