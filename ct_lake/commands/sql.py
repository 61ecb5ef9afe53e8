"""``ct sql "SELECT ..."``: query the lake's DuckDB views (``sql/views/``), print the result.

``--format table`` (default: aligned text), ``csv`` or ``json`` (a list of records);
``--file PATH`` reads the query from a file; ``--views`` lists the views and their columns.
At most ``--max-rows`` rows are printed (0: all); a note on stderr says when rows were left
out. A bad query exits with status 2 and a one-line message on stderr.

Queries read, and read only the lake: statements that write or change settings (``COPY``,
``ATTACH``, ``CREATE``, ``INSTALL``, ``SET``...) are refused, files outside the lake's folder
cannot be read, and no extension is installed or loaded (:func:`ct_lake.catalog.lock_down`).
``--write`` lifts all of this, for a query that means to write (``COPY ... TO 'out.parquet'``).
Text from the lake is printed with its control characters escaped (``\x1b`` for ESC) in
tables and error messages, so stored text cannot drive the terminal; ``csv`` and ``json``
keep the data as it is (JSON escapes every control character).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import decimal
import json
import math
import re
import sys
import uuid
from pathlib import Path

from ct_lake.commands._common import add_config_flag, one_line, printable

NAME = "sql"
HELP = "query the lake with DuckDB SQL over its views (ct sql --views lists them)"
DESCRIPTION = "Run a DuckDB query over the lake's views (sql/views/) and print the result."
MAX_CELL = 60
_JSON_CONTROL = re.compile("[\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069]")


def add_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("query", nargs="?", help='the query, e.g. "SELECT * FROM graph_overview"')
    source.add_argument("-f", "--file", help="read the query from this file")
    source.add_argument("--views", action="store_true", help="list the views and their columns")
    p.add_argument(
        "--as-of",
        metavar="VERSION|TIME",
        help="query the lake as it was at a lake version (ct lake history) or an ISO-8601 "
        "time (UTC unless it has a zone)",
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument(
        "--max-rows", type=int, default=100, help="print at most this many rows (0: all)"
    )
    p.add_argument(
        "--write",
        action="store_true",
        help="let the query write and reach beyond the lake (COPY, ATTACH, CREATE, any file, "
        "extensions); without it a query only reads the lake",
    )
    add_config_flag(p)


def run(args: argparse.Namespace) -> int:
    import duckdb

    from ct_lake.catalog import (
        CatalogError,
        connect,
        damaged_file_named,
        damaged_message,
        describe,
        execute,
    )
    from ct_lake.config import load_config

    try:
        if args.max_rows < 0:
            raise ValueError("--max-rows must be 0 (all rows) or more")
        query = Path(args.file).read_text() if args.file else args.query
        lake = load_config(args.config).lake
        if args.views:
            _print_views(describe(connect(lake, as_of=args.as_of)))
            return 0
        # with only the views the query names: reading every table's Delta log would cost most
        # of a query's time
        _, cursor = execute(lake, query, as_of=args.as_of, sandbox=not args.write)
        columns = [d[0] for d in cursor.description or []]
        limit = args.max_rows or None
        rows = cursor.fetchall() if limit is None else cursor.fetchmany(limit + 1)
    except (duckdb.Error, CatalogError, ValueError, OSError) as err:
        named = damaged_file_named(err, lake) if isinstance(err, duckdb.Error) else None
        message = damaged_message(*named) if named else _message(err)
        print(f"ct sql: error: {message}", file=sys.stderr)
        return 2
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if more else rows
    if not columns:
        print("ok")
        return 0
    {"table": print_table, "csv": print_csv, "json": print_json}[args.format](columns, rows)
    if more:
        print(f"(more than {limit} rows; --max-rows 0 prints all)", file=sys.stderr)
    return 0


def _message(err: BaseException) -> str:
    # The lake's own errors, raised inside a query by DuckDB's error(), carry its prefix.
    message = one_line(err).removeprefix("Invalid Input Error: ")
    if message.startswith("Permission Error:"):
        message += " (ct sql reads the lake's files only; --write lifts this)"
    return message


def _plain(value):
    """A JSON-ready value: timestamps as ISO strings, NaN/inf as null, maps as objects."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _cell(value) -> str:
    """A value as text: floats with 6 significant digits, lists as JSON, no line breaks."""
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple | dict):
        return json.dumps(_plain(value), ensure_ascii=False)
    plain = _plain(value)
    return plain if isinstance(plain, str) else str(plain)


def print_table(columns: list[str], rows: list[tuple]) -> None:
    cells = [[_clip(_cell(v)) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(columns))
    ]
    heads = [_clip(c) for c in columns]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(heads)]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    print(line(heads))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))
    print(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")


def _clip(text: str) -> str:
    text = printable(text)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def print_csv(columns: list[str], rows: list[tuple]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])


def _csv_cell(value) -> str:
    """A value for CSV: full float precision, lists and maps as JSON, NULL as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return _cell(value)


def print_json(columns: list[str], rows: list[tuple]) -> None:
    records = [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    # JSON escapes C0 controls itself; DEL, C1 and bidi controls as \uXXXX too (same data)
    text = json.dumps(records, indent=1, ensure_ascii=False)
    print(_JSON_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def _print_views(views) -> None:
    for view, columns in views:
        kind = "table" if view.is_base else "derived"
        print(f"{view.name}  ({kind}) {view.description}")
        width = max((len(name) for name, _ in columns), default=0)
        for name, sql_type in columns:
            print(f"    {name.ljust(width)}  {sql_type}")
        print()
