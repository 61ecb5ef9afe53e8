"""``ct lake info``: each table's Delta version, partitions, files, bytes and rows.

Read from the tables' Delta logs (no data file is opened). Exit status 2 with one line on
stderr when the lake cannot be read.
"""

from __future__ import annotations

import argparse
import sys

from ct_lake.commands._common import add_config_flag

NAME = "info"
HELP = "each table's version, partitions, files, bytes and rows"
DESCRIPTION = (
    "Print each lake table's current Delta version, number of partitions, active data files, "
    "their bytes and rows (from the Delta log), and the lake's latest lake version."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_flag(p)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def open_lake(args: argparse.Namespace, command: str):
    """The configured lake, or None after one error line on stderr."""
    from ct_lake.config import load_config
    from ct_lake.lake import Lake

    try:
        return Lake(load_config(args.config).lake)
    except ValueError as err:  # ConfigError and LakeError are ValueErrors
        print(f"ct lake {command}: error: {one_line(err)}", file=sys.stderr)
        return None


def one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


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
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
    latest = commits[-1].lake_version if commits else 0
    total = sum(t.bytes for t in tables)
    print(f"lake {lake.location.describe()}: lake version {latest}, {human_bytes(total)}")
    return 0
