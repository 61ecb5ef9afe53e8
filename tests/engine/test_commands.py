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


def _option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The option's entry in ``parser``'s ``--help``, on one line."""
    formatter = parser._get_formatter()
    formatter.add_argument(action)
    return " ".join(formatter.format_help().split())


def test_the_help_shows_defaults(capsys):
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--rows", type=int, default=100, help="rows to print")
        p.add_argument("--limit", type=int, default=0, help="at most N (0: all)")
        p.add_argument("--port", type=int, default=8041)  # no help: the default is the help
        p.add_argument("--host", default="::1", help="address (default ::1, this machine)")
        p.add_argument("--model", help="a model (default: the first)")
        p.add_argument("--out")
        p.add_argument("--quiet", action="store_true", help="no progress")
        p.add_argument("--no-cache", dest="cache", action="store_false", help="no cache")
        p.add_argument("--tag", action="append", default=[], help="repeatable")
        p.add_argument("words", nargs="*", default=["a"], help="words")

    show = _command("show", lambda args: 0, add=add)
    with pytest.raises(SystemExit):
        commands.main([show], ["show", "--help"], prog="tool")
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    text = "\n".join(lines)
    assert "--rows ROWS rows to print (default: 100)" in text
    assert "--limit LIMIT at most N (0: all) (default: 0)" in text
    assert "--port PORT default: 8041" in text
    assert "--host HOST address (default ::1, this machine)" in text  # said once
    assert "--model MODEL a model (default: the first)" in text
    assert "--quiet no progress" in lines and "--no-cache no cache" in lines
    assert "--tag TAG repeatable" in lines
    assert "words words (default: ['a'])" in text
    assert "--out OUT" in lines and "None" not in text and "False" not in text


def _parsers(parser: argparse.ArgumentParser, path: str):
    """``(command path, parser)`` of ``parser`` and every sub-command parser under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_ct_option_with_a_default_shows_it():
    from ct_cli.main import COMMANDS

    checked = set()
    for path, parser in _parsers(commands.build_parser(COMMANDS, prog="ct"), "ct"):
        page = " ".join(parser.format_help().split())
        for action in parser._actions:
            entry = _option_help(parser, action)
            assert entry in page, (path, entry)
            assert entry.count("(default") <= 1, (path, entry)  # said once
            assert "(default: None)" not in entry and "(default: False)" not in entry
            default = action.default
            trivial = default in (None, False, argparse.SUPPRESS) or default in ("", [])
            if trivial or action.nargs == 0 or not (action.option_strings or action.nargs):
                continue
            assert str(default) in entry, (path, entry)
            checked.add(f"{path} {action.dest}")
    # nested groups are walked too
    assert {"ct lake optimize retention_hours", "ct features build tokens"} <= checked
    assert {"ct sql max_rows", "ct serve port", "ct attribute node_threshold"} <= checked
    assert len(checked) > 30
