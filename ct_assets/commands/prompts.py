"""``ct prompts add TEXT... --model M`` and ``ct prompts list``."""

from __future__ import annotations

import sys

from ct_assets.commands._common import add_config_flag, load

COMMAND = "prompts"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(COMMAND, help="register prompts as lakehouse partitions")
    actions = p.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="register prompts for models")
    add.add_argument("texts", nargs="+", metavar="TEXT")
    add.add_argument("--model", action="append", required=True, help="repeat for several")
    add_config_flag(add)
    listing = actions.add_parser("list", help="every registered prompt with its key")
    add_config_flag(listing)


def run(args) -> int:
    try:
        config, instance = load(args)
        if args.action == "add":
            from ct_lake.prompts import register_prompts

            registered = register_prompts(config, args.texts, args.model, instance)
            for key, text in registered.prompts.items():
                state = "new" if key in registered.new_prompts else "known"
                print(f"{key}  ({state})  {text!r}")
            print(f"partitions: {', '.join(registered.partition_keys)}")
            print("materialize them in the Dagster UI, or: ct materialize --model MODEL")
        else:
            from ct_lake.catalog import connect

            rows = (
                connect(config.lake)
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
