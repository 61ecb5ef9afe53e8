"""``ct lake optimize [--retention-hours H]``: compact, vacuum and trim the Delta logs.

Compacts each table's small files, deletes the data files no version younger than ``H`` hours
uses (and files killed writers left, once that old), and the log entries older than that
(default: :data:`ct_lake.lake.DEFAULT_RETENTION_HOURS`, 7 days). ``ct sql --as-of`` reaches
back ``H`` hours and no further afterwards. Exit status 2 with one line on stderr when the lake
cannot be optimized.
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

NAME = "optimize"
HELP = "compact small files, delete files and log entries older than the retention"
DEFAULT_RETENTION_HOURS = 7 * 24  # = ct_lake.lake.DEFAULT_RETENTION_HOURS (kept import-light)
DESCRIPTION = (
    "Compact each lake table's small files, then delete the data files that no version younger "
    "than the retention uses and the log entries older than it. Time travel (ct sql --as-of) "
    "reaches back the retention and no further afterwards; the tables keep it as their log "
    "retention. Keep the retention longer than the longest write in progress."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--retention-hours",
        type=float,
        default=DEFAULT_RETENTION_HOURS,
        metavar="H",
        help="keep what versions of the last H hours need",
    )
    add_config_flag(p)


def run(args: argparse.Namespace) -> int:
    if args.retention_hours < 0:
        print("ct lake optimize: error: --retention-hours must be 0 or more", file=sys.stderr)
        return 2
    lake = open_lake(args, NAME)
    if lake is None:
        return 2
    try:
        report = lake.optimize(retention_hours=args.retention_hours)
    except (ValueError, OSError) as err:
        print(f"ct lake optimize: error: {one_line(err)}", file=sys.stderr)
        return 2
    header = ("table", "compacted", "written", "vacuumed", "freed", "log entries removed")
    rows = [
        (
            t.table,
            f"{t.files_compacted} files",
            f"{t.files_written} files",
            f"{t.files_vacuumed} files",
            human_bytes(t.bytes_vacuumed),
            str(t.log_entries_removed),
        )
        for t in report.tables
    ]
    print_aligned(header, rows, left={0})
    print(
        f"retention {args.retention_hours:g} h: {report.total('files_vacuumed')} files "
        f"({human_bytes(report.total('bytes_vacuumed'))}) deleted, "
        f"{report.total('files_compacted')} compacted into {report.total('files_written')}, "
        f"{report.total('log_entries_removed')} log entries removed"
    )
    return 0
