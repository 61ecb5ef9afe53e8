"""``ct lake history [TABLE]``: the lake's commits, oldest first, with their lake versions.

A lake version N is the N-th commit across all tables; ``ct sql --as-of N`` (or a printed
timestamp) reads every table as it was then. ``--limit`` prints only the latest commits.
Exit status 2 with one line on stderr for an unknown table or an unreadable lake.
"""

from __future__ import annotations

import argparse
import sys

from ct_lake.commands._common import add_config_flag, one_line, open_lake, print_aligned

NAME = "history"
HELP = "the commits of every table (or of TABLE) with their lake versions"
DESCRIPTION = (
    "List the lake's commits, oldest first: lake version (the N-th commit across all tables, "
    "what ct sql --as-of takes), time (UTC), table, table version, operation and partition."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", nargs="?", metavar="TABLE", help="only this table's commits")
    p.add_argument(
        "--limit", type=int, default=0, metavar="N", help="only the latest N commits (0: all)"
    )
    add_config_flag(p)


def run(args: argparse.Namespace) -> int:
    if args.limit < 0:
        print("ct lake history: error: --limit must be 0 (all) or more", file=sys.stderr)
        return 2
    lake = open_lake(args, NAME)
    if lake is None:
        return 2
    try:
        commits = lake.history(args.table)
    except (ValueError, OSError) as err:
        print(f"ct lake history: error: {one_line(err)}", file=sys.stderr)
        return 2
    if args.limit:
        commits = commits[-args.limit :]
    if not commits:
        print("no commits yet")
        return 0
    header = ("lake version", "time (UTC)", "table", "version", "operation", "partition")
    rows = [
        (
            str(c.lake_version),
            c.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            c.table,
            str(c.version),
            c.operation,
            c.partition or "",
        )
        for c in commits
    ]
    print_aligned(header, rows, left={1, 2, 4, 5})
    return 0
