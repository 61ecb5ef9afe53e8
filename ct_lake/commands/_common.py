"""What the lakehouse commands share: the ``--config`` flag."""

from __future__ import annotations

import argparse
import sys


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="lakehouse config (default: $CT_CONFIG, else ./ct_lakehouse.yaml, else the "
        "packaged default)",
    )


def one_line(err: BaseException) -> str:
    """The first non-blank line of an error's message (its type name if it has none)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def open_lake(args: argparse.Namespace, command: str):
    """The configured lake, or None after one error line on stderr (``ct lake COMMAND``)."""
    from ct_lake.config import load_config
    from ct_lake.lake import Lake

    try:
        return Lake(load_config(args.config).lake)
    except ValueError as err:  # ConfigError and LakeError are ValueErrors
        print(f"ct lake {command}: error: {one_line(err)}", file=sys.stderr)
        return None


def print_aligned(header: tuple[str, ...], rows: list[tuple[str, ...]], left: set[int]) -> None:
    """Columns padded to their widest cell: left-aligned where ``left`` names the column's
    index, right-aligned elsewhere."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = zip(row, widths, strict=True)
        print(
            "  ".join(
                v.ljust(w) if i in left else v.rjust(w) for i, (v, w) in enumerate(cells)
            ).rstrip()
        )
