"""``ct lake migrate OLD NEW``: convert a lake of the previous format into a Delta lake.

OLD is a local folder in the previous hive-Parquet layout (``<table>/model=<m>/prompt=<p>/
data.parquet`` and ``files/``); NEW a local path or ``s3://bucket/prefix`` (credentials from
the AWS environment variables). Prints each table's partitions and rows, the files copied and
the new lake's location. Exit status: 0 when everything was migrated and checked; 1 when
entries of the old lake could not be migrated (each listed on stderr; the old lake is left
as it is); 2 with one line on stderr when the migration is refused (OLD is not such a lake,
NEW already holds data, a file is unreadable, the storage cannot be reached).
"""

from __future__ import annotations

import argparse
import sys

from ct_lake.commands._common import human_bytes, one_line

NAME = "migrate"
HELP = "convert a lake of the previous format (hive-partitioned Parquet) into a Delta lake"
DESCRIPTION = (
    "Copy every table partition and file of a lake of the previous format (hive-partitioned "
    "Parquet) into a Delta lake, one commit per partition, then check every row count and "
    "file size. OLD is never modified."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", metavar="OLD", help="the old lake's folder")
    p.add_argument("new", metavar="NEW", help="the new lake: a local path or s3://bucket/prefix")
    p.add_argument(
        "--force",
        action="store_true",
        help="migrate even if NEW already holds data: each migrated partition replaces the "
        "same partition there (re-running a migration gives the same lake)",
    )


def run(args: argparse.Namespace) -> int:
    from ct_lake.migrate import migrate
    from ct_lake.storage import LakeError

    try:
        # progress lines only for a person watching; the summary below is the output
        say = (
            (lambda line: print(line, file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
        )
        report = migrate(args.old, args.new, force=args.force, progress=say)
    except (LakeError, ValueError, OSError) as err:
        print(f"ct lake migrate: error: {one_line(err)}", file=sys.stderr)
        return 2
    width = max(len("table"), *(len(t.name) for t in report.tables))
    print(f"{'table':<{width}}  {'partitions':>10}  {'rows':>10}")
    for t in report.tables:
        print(f"{t.name:<{width}}  {t.partitions:>10}  {t.rows:>10}")
    total_partitions = sum(t.partitions for t in report.tables)
    print(f"{'total':<{width}}  {total_partitions:>10}  {report.rows:>10}")
    print(f"files: {report.files} ({human_bytes(report.file_bytes)})")
    if report.ignored:
        print(f"skipped {len(report.ignored)} lock/temporary files of the old lake's writers")
    for column in report.added_columns:
        print(f"column {column}: not in the old files, null in the new lake")
    print(f"new lake: {report.new.describe()}")
    for entry in report.unknown:
        print(f"ct lake migrate: not migrated: {entry}", file=sys.stderr)
    for column in report.dropped_columns:
        print(f"ct lake migrate: not migrated: column {column} (not in the table)", file=sys.stderr)
    if not report.complete:
        missing = len(report.unknown) + len(report.dropped_columns)
        print(
            f"ct lake migrate: incomplete: {missing} entries of {report.old} were not migrated "
            "(listed above); the old lake is unchanged",
            file=sys.stderr,
        )
        return 1
    return 0
