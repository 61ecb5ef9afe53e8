"""``ct lake info``: each table's Delta version, partitions, files, bytes and rows.

Read from the tables' Delta logs (no data file is opened). Exit status 2 with one line on
stderr when the lake cannot be read.
"""

from __future__ import annotations

import argparse
import sys

from ct_lake.commands._common import (
    add_config_flag,
    human_bytes,
    one_line,
    open_lake,
    print_aligned,
)

NAME = "info"
HELP = "each table's version, partitions, files, bytes and rows"
DESCRIPTION = (
    "Print each lake table's current Delta version, number of partitions, active data files, "
    "their bytes and rows (from the Delta log), and the lake's latest lake version."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_flag(p)


def run(args: argparse.Namespace) -> int:
    lake = open_lake(args, NAME)
    if lake is None:
        return 2
    try:
        tables = lake.info()
        commits = lake.history()
    except (ValueError, OSError) as err:
        print(f"ct lake info: error: {one_line(err)}", file=sys.stderr)
        return 2
    header = ("table", "version", "partitions", "files", "bytes", "rows")
    rows = [
        (
            t.table,
            "-" if t.version is None else str(t.version),
            str(t.partitions),
            str(t.files),
            human_bytes(t.bytes),
            "?" if t.rows is None else str(t.rows),
        )
        for t in tables
    ]
    print_aligned(header, rows, left={0})
    latest = commits[-1].lake_version if commits else 0
    total = sum(t.bytes for t in tables)
    print(f"lake {lake.location.describe()}: lake version {latest}, {human_bytes(total)}")
    return 0
