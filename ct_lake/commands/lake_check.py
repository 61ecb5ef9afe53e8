"""``ct lake check [--quarantine]``: list the lake's damaged files, and set them aside.

Checks every table's Delta log entries and the data files its current version lists, read in
full (:mod:`ct_lake.check`), and lists what is damaged, one line each, plus the temporary files
killed writers left (``ct lake sweep`` removes them). ``--quarantine`` moves the damaged files
under ``<lake>/_quarantine/<time>/`` and removes a damaged data file's partition from its table
(the next ``ct materialize`` writes it again). Exit status 0 when nothing is damaged (or all was
set aside), 1 when damage is left, 2 with one line on stderr when the lake cannot be checked.
"""

from __future__ import annotations

import argparse
import sys

from ct_lake.commands._common import add_config_flag, one_line, open_lake, printable

NAME = "check"
HELP = "list damaged data files and Delta logs (--quarantine sets them aside)"
DESCRIPTION = (
    "Read every lake table's Delta log and data files and list the damaged ones. With "
    "--quarantine, move them under <lake>/_quarantine/ and remove a damaged data file's "
    "partition from its table, so that the table reads again and the next ct materialize "
    "writes that partition anew."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quarantine",
        action="store_true",
        help="move the damaged files aside and remove their partitions from their tables",
    )
    add_config_flag(p)


def run(args: argparse.Namespace) -> int:
    from ct_lake.check import check, quarantine
    from ct_lake.files import SWEEP_GRACE_S, stale_temporaries

    lake = open_lake(args, NAME)
    if lake is None:
        return 2
    try:
        damages = check(lake)
        done = quarantine(lake, damages) if args.quarantine and damages else []
        stale = stale_temporaries(lake.root) if lake.location.is_local else []
    except (ValueError, OSError) as err:
        print(f"ct lake check: error: {one_line(err)}", file=sys.stderr)
        return 2
    set_aside = {q.damage.path for q in done}
    for damage in damages:
        print(printable(f"damaged {damage.kind} {damage.path}: {damage.reason}"))
    for q in done:
        where = f" to {q.moved_to}" if q.moved_to else ""
        print(printable(f"quarantined {q.damage.path}{where}: {q.action}"))
    left = [d for d in damages if d.path not in set_aside]
    for damage in left:
        if not damage.repairable:
            print(
                printable(
                    f"cannot set aside {damage.path}: later versions of table {damage.table} "
                    "depend on it; restore it from a backup"
                )
            )
    if stale:
        hours = SWEEP_GRACE_S / 3600
        print(
            f"{len(stale)} temporary file(s) of killed writers, untouched for {hours:g} h "
            "or more: `ct lake sweep` removes them"
        )
    if not damages:
        print(f"lake {lake.location.describe()}: no damaged file")
        return 0
    if left and not args.quarantine:
        print(f"{len(left)} damaged file(s): `ct lake check --quarantine` sets them aside")
    return 1 if left else 0
