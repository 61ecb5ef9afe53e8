"""``ct prompts add TEXT... --model M`` (registers Dagster partitions) and ``ct prompts list``
(reads the lake only)."""

from __future__ import annotations

import argparse
import sys

from ct_assets.commands._common import add_config_flag, instance_for, load_config_of

NAME = "prompts"
HELP = "register prompts as lakehouse partitions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="register prompts for models")
    add.add_argument("texts", nargs="+", metavar="TEXT")
    add.add_argument("--model", action="append", required=True, help="repeat for several")
    add_config_flag(add)
    listing = actions.add_parser("list", help="every registered prompt with its key")
    add_config_flag(listing)


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "add":
            config = load_config_of(args)
            for model in args.model:
                config.model(model)  # every model named exists, before Dagster starts
            from ct_assets.lib.context import multi_key
            from ct_lake.prompts import register_prompts

            instance = instance_for(config)
            registered = register_prompts(config, args.texts, args.model, instance)
            for key, text in registered.prompts.items():
                state = "new" if key in registered.new_prompts else "known"
                print(f"{key}  ({state})  {text!r}")
            keys = [str(multi_key(m, p)) for m, p in registered.partitions]
            print(f"partitions: {', '.join(keys)}")
            print("materialize them in the Dagster UI, or: ct materialize --model MODEL")
        else:  # a read of the lake: no Dagster instance needed
            from ct_lake.catalog import connect
            from ct_lake.config import load_config

            rows = (
                connect(load_config(args.config).lake)
                .sql("SELECT prompt, text FROM prompts ORDER BY registered_at")
                .fetchall()
            )
            for key, text in rows:
                print(f"{key}  {text!r}")
            if not rows:
                print("no prompts registered yet: ct prompts add TEXT --model MODEL")
    except ValueError as err:
        print(f"ct prompts: error: {err}", file=sys.stderr)
        return 2
    return 0
