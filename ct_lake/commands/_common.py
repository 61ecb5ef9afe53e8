"""What the lakehouse commands share: the ``--config`` flag."""

from __future__ import annotations

import argparse
import re
import sys


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="lakehouse config (default: $CT_CONFIG, else ./ct_lakehouse.yaml, else the "
        "packaged default)",
    )


def one_line(err: BaseException) -> str:
    """The first non-blank line of an error's message (its type name if it has none), its
    control characters escaped (:func:`printable`: the message may quote stored text)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return printable(lines[0]) if lines else type(err).__name__


# Characters a terminal acts on instead of showing: C0 and C1 controls, DEL, and the
# bidirectional overrides and isolates that reorder what is shown.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\n``, ``\\x1b``, ``\\u202e``...),
    so that text read from the lake cannot move the cursor, clear or retitle a terminal."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match) -> str:
    c = match.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


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
