"""``ct lake sweep [--older-than MINUTES]``: remove the temporary files killed writers left.

A file write goes to ``.<name>.<random>.tmp`` and is renamed into place (:mod:`ct_lake.files`);
a writer killed in between leaves that file. Only such names are removed, and only those
untouched for ``MINUTES`` (default: an hour, :data:`ct_lake.files.SWEEP_GRACE_S`), so a
write in progress keeps its file. Every process also sweeps before its first write to a lake.
"""

from __future__ import annotations

import argparse
import sys

from ct_lake.commands._common import add_config_flag, one_line, open_lake

NAME = "sweep"
HELP = "remove temporary files that killed writers left (untouched for an hour)"
DESCRIPTION = (
    "Remove the temporary files (.<name>.<random>.tmp) that killed writers left in a local "
    "lake, once nothing has changed them for --older-than minutes."
)
DEFAULT_MINUTES = 60.0  # = ct_lake.files.SWEEP_GRACE_S / 60 (kept import-light)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--older-than",
        type=float,
        default=DEFAULT_MINUTES,
        metavar="MINUTES",
        help="remove only temporary files untouched for this many minutes",
    )
    add_config_flag(p)


def run(args: argparse.Namespace) -> int:
    if not args.older_than >= 0:
        print("ct lake sweep: error: --older-than must be 0 or more minutes", file=sys.stderr)
        return 2
    lake = open_lake(args, NAME)
    if lake is None:
        return 2
    if not lake.location.is_local:
        print(f"lake {lake.location.describe()}: an object store keeps no temporary files")
        return 0
    try:
        removed = lake.sweep(older_than_s=args.older_than * 60)
    except (ValueError, OSError) as err:
        print(f"ct lake sweep: error: {one_line(err)}", file=sys.stderr)
        return 2
    print(f"{removed} temporary file(s) removed from lake {lake.location.describe()}")
    return 0
