"""Every public name of circuit-tracer 0.5.0 (``circuit_tracer_0_5_0.py``) is here under the
same name, argument names, positional order and defaults, or differs on purpose with a reason
(``INTENTIONAL``), and each such reason still describes a real difference. The command-line
flags are checked on the ``ct`` parser built in-process. ``docs/circuit-tracer-parity.md`` is
the rendering of the same table.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest
import torch

from ct_engine.commands import build_parser

from . import circuit_tracer_0_5_0 as table
from .render_doc import DOC_PATH, render_doc

MISSING = object()


# -- resolving circuit-tracer names -----------------------------------------------------------


def our_name(ct_name: str) -> tuple[str, str]:
    """``(our module, attribute path)`` for a circuit-tracer dotted name: the longest mapped
    module prefix, then the rest as attributes."""
    parts = ct_name.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        if module in table.MODULES:
            return table.MODULES[module], ".".join(parts[cut:])
    raise AssertionError(f"{ct_name}: no module mapping in MODULES")


def resolve(ct_name: str, instances: dict[type, object] | None = None):
    """Our object for ``ct_name`` (MISSING when absent). Attributes of a class are looked up
    on the class, then among its dataclass fields, then on a loaded instance if given."""
    module_name, path = our_name(ct_name)
    try:
        obj = importlib.import_module(module_name)
    except ImportError:
        return MISSING
    for attr in path.split(".") if path else []:
        owner = obj
        obj = getattr(owner, attr, MISSING)
        if obj is MISSING and dataclasses.is_dataclass(owner):
            fields = {f.name: f for f in dataclasses.fields(owner)}
            obj = fields.get(attr, MISSING)
        if obj is MISSING and instances and isinstance(owner, type) and owner in instances:
            obj = getattr(instances[owner], attr, MISSING)
        if obj is MISSING:
            return MISSING
    return obj


# -- comparing signatures ---------------------------------------------------------------------


class Param:
    def __init__(self, name: str, kind: str, default=MISSING):
        self.name, self.kind, self.default = name, kind, default


def parse_signature(text: str) -> list[Param]:
    """circuit-tracer's declared parameters; defaults are evaluated with ``torch`` in scope
    and ``...`` stands for "some default"."""
    fn = ast.parse(f"def f{text}: pass").body[0].args
    positional = fn.posonlyargs + fn.args
    defaults = [MISSING] * (len(positional) - len(fn.defaults)) + list(fn.defaults)
    out = []

    def value(node):
        return MISSING if node is MISSING else eval(compile(ast.Expression(node), "", "eval"))

    for arg, default in zip(positional, defaults, strict=True):
        out.append(Param(arg.arg, "positional", value(default)))
    if fn.vararg:
        out.append(Param("*args", "var_positional"))
    for arg, default in zip(fn.kwonlyargs, fn.kw_defaults, strict=True):
        out.append(Param(arg.arg, "keyword", MISSING if default is None else value(default)))
    if fn.kwarg:
        out.append(Param("**kwargs", "var_keyword"))
    return out


def our_parameters(obj) -> list[inspect.Parameter]:
    params = list(inspect.signature(obj).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return params


def signature_differences(obj, text: str) -> set[str]:
    """The aspects in which ``obj``'s signature departs from circuit-tracer's ``text``."""
    ours = our_parameters(obj)
    by_name = {p.name: p for p in ours}
    positional = [p.name for p in ours if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    kinds = {p.kind for p in ours}
    found = set()
    declared = parse_signature(text)
    ct_positional = [p for p in declared if p.kind == "positional"]
    for param in declared:
        if param.kind == "var_keyword":
            if inspect.Parameter.VAR_KEYWORD not in kinds:
                found.add("**kwargs")
            continue
        if param.kind == "var_positional":
            if inspect.Parameter.VAR_POSITIONAL not in kinds:
                found.add("*args")
            continue
        mine = by_name.get(param.name)
        if mine is None or mine.kind == mine.POSITIONAL_ONLY and param.kind == "keyword":
            found.add(f"param:{param.name}")
            continue
        if param.kind == "positional":
            index = ct_positional.index(param)
            if index >= len(positional) or positional[index] != param.name:
                found.add(f"position:{param.name}")
        if param.default is not MISSING and param.default is not Ellipsis:
            if mine.default is inspect.Parameter.empty or mine.default != param.default:
                found.add(f"default:{param.name}")
    return found


def api_differences(entry: table.Api, instances=None) -> set[str]:
    obj = resolve(entry.name, instances)
    if obj is MISSING:
        return {"missing"}
    if entry.kind == "class" and not isinstance(obj, type):
        return {"kind"}
    if entry.kind in ("function", "method") and not callable(obj):
        return {"kind"}
    if entry.signature is None:
        return set()
    return signature_differences(obj, entry.signature)


# -- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def subparsers() -> dict[str, argparse.ArgumentParser]:
    from ct_cli.main import COMMANDS

    parser = build_parser(COMMANDS)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def flag_differences(flag: table.Flag, subparsers) -> set[str]:
    ours = subparsers.get(flag.command)
    if ours is None:
        return {"missing"}
    by_spelling = {s: a for a in ours._actions for s in a.option_strings}
    found = {f"spelling:{s}" for s in flag.spellings if s not in by_spelling}
    actions = {id(by_spelling[s]): by_spelling[s] for s in flag.spellings if s in by_spelling}
    if len(actions) > 1:
        found.add("split")  # the spellings name different options
    for action in actions.values():
        if flag.default is not Ellipsis and action.default != flag.default:
            found.add("default")
        if action.required != flag.required:
            found.add("required")
        if flag.choices is not None and not set(flag.choices) <= set(action.choices or ()):
            found.add("choices")
    return found


# -- the tests --------------------------------------------------------------------------------


def check(key: str, found: set[str]) -> None:
    intended = {aspect for (name, aspect) in table.INTENTIONAL if name == key}
    unexplained = found - intended
    assert not unexplained, f"{key}: differs from circuit-tracer 0.5.0 in {sorted(unexplained)}"
    stale = intended - found
    assert not stale, f"{key}: INTENTIONAL lists {sorted(stale)}, but it no longer differs"


STATIC = [e for e in table.API if e.kind != "instance"]


@pytest.mark.parametrize("entry", STATIC, ids=[e.name for e in STATIC])
def test_python_name(entry):
    check(entry.name, api_differences(entry))


@pytest.mark.parametrize("flag", table.FLAGS, ids=[f.key for f in table.FLAGS])
def test_cli_flag(flag, subparsers):
    check(flag.key, flag_differences(flag, subparsers))


@pytest.mark.parametrize("command", table.COMMANDS)
def test_cli_command(command, subparsers):
    assert command in subparsers, f"`{table.PROGRAM[1]} {command}` is missing"


def test_every_intentional_entry_names_a_listed_name():
    keys = {e.name for e in table.API} | {f.key for f in table.FLAGS}
    assert {name for name, _ in table.INTENTIONAL} <= keys
    assert all(reason.strip() for reason in table.INTENTIONAL.values())


def test_the_doc_is_the_rendered_table():
    doc = (Path(__file__).resolve().parents[3] / DOC_PATH).read_text(encoding="utf-8")
    assert doc == render_doc(), f"{DOC_PATH} is stale: run python -m tests.engine.parity.render_doc"


# -- the checker itself catches departures ----------------------------------------------------


def _sample(a, b=2, *, c=None):
    return a, b, c


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("(a, b=2, *, c=None)", set()),
        ("(a, b=2)", set()),  # our extra keyword-only parameter is fine
        ("(b, a)", {"position:b", "position:a"}),
        ("(a, b=3)", {"default:b"}),
        ("(a, b=..., *, d=1)", {"param:d"}),
        ("(a, **kwargs)", {"**kwargs"}),
    ],
)
def test_signature_checker(declared, expected):
    assert signature_differences(_sample, declared) == expected


def test_resolver_maps_modules_and_reports_absent_names():
    assert resolve("circuit_tracer.utils.create_graph_files").__module__ == (
        "ct_engine.graph.files"
    )
    assert resolve("circuit_tracer.graph.no_such_name") is MISSING
    assert resolve("circuit_tracer.graph.Graph.adjacency_matrix") is not MISSING  # a field


def test_torch_defaults_are_compared():
    assert parse_signature("(dtype=torch.float32)")[0].default is torch.float32
