"""``ct features ACTION``: feature dashboards in circuit-tracer's feature-file format.

* ``build``: measure every feature of a transcoder set on a corpus and write the feature
  files (``features/<transcoders>`` by default; :func:`ct_engine.features.files.
  default_features_dir`).
* ``show``: print one feature's card in the terminal, from those files (no torch).

A group of subcommands: each action is a module of this package with the subcommand
interface of :mod:`ct_engine.commands`; the chosen action's name is ``args.action``.
"""

from __future__ import annotations

import argparse
from types import ModuleType

from ct_engine.commands import add_subcommands, features_build, features_show, run_subcommand

NAME = "features"
HELP = "build and show feature dashboards (circuit-tracer's feature files)"
DESCRIPTION = (
    "Feature dashboards: 'build' measures every transcoder feature on a corpus (how often and "
    "how strongly it fires, top and quantile example contexts, logits, input tokens, a label) "
    "and writes circuit-tracer's feature files; 'show' prints one feature's card."
)

# The action modules, in the order `ct features --help` lists them.
ACTIONS: tuple[ModuleType, ...] = (features_build, features_show)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_subcommands(parser, ACTIONS, dest="action")


def run(args: argparse.Namespace) -> int:
    return run_subcommand(args, ACTIONS, dest="action")
