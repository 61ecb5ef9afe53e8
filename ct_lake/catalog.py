"""DuckDB views over the lake, from the SQL files of ``ct_lake/sql/views/`` (package data).

Each ``sql/views/<view>.sql`` holds one ``CREATE OR REPLACE VIEW <view> AS ...`` statement;
``{lake}`` in it stands for the lake root (an absolute path, inserted inside the file's string
literal with its single quotes doubled). A file's leading ``--`` comment is the view's
description. Views named like a lake table (:data:`ct_lake.tables.TABLES`) are the base
views; when such a table has no file yet, its view is created empty instead, with the columns
and types of ``TABLES`` (plus the partition columns, ``VARCHAR``), so derived views and
``ct sql`` work on a fresh lake. Views are created dependencies first: a view depends on every
other view whose name it mentions outside comments and string literals.

:func:`connect` gives an in-memory connection with every view; :func:`write_catalog_file`
writes a ``.duckdb`` file with the same views, atomically. A view created empty stays empty in
a catalog file written before its table got data: rebuild the file (or use :func:`connect`,
which checks the lake each time).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import duckdb

from ct_lake.package_data import sql_dir
from ct_lake.tables import TABLES, TableSpec

SQL_DIR = sql_dir()
LAKE_PLACEHOLDER = "{lake}"
_HEADER = re.compile(r"^\s*CREATE\s+OR\s+REPLACE\s+VIEW\s+(\w+)\s+AS\b", re.IGNORECASE)
# comments (-- and /* */) and string literals: what the view-dependency scan ignores
_COMMENT_OR_STRING = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.DOTALL)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CatalogError(RuntimeError):
    """The SQL folder or one of its view files is missing or malformed."""


@dataclass(frozen=True)
class ViewFile:
    """One view: its name, SQL (with the ``{lake}`` placeholder) and description."""

    name: str
    sql: str
    description: str
    depends: frozenset[str]

    @property
    def is_base(self) -> bool:
        return self.name in TABLES


def views_dir(sql_dir: Path | None = None) -> Path:
    folder = (sql_dir or SQL_DIR) / "views"
    if not folder.is_dir():
        raise CatalogError(
            f"no SQL view folder at {folder}: the installed ct_lake package lacks its sql/ "
            "package data (reinstall ct-lakehouse)"
        )
    return folder


def _statement_body(sql: str) -> str:
    """The SQL without comments and string literals (to find the views it mentions)."""
    return _COMMENT_OR_STRING.sub(" ", sql)


def _description(sql: str) -> str:
    for line in sql.splitlines():
        line = line.strip()
        if line.startswith("--"):
            return line.lstrip("-").strip()
        if line:
            break
    return ""


def load_views(sql_dir: Path | None = None) -> list[ViewFile]:
    """Every view file, ordered so that each view comes after the views it uses."""
    files = sorted(views_dir(sql_dir).glob("*.sql"))
    if not files:
        raise CatalogError(f"no view files (*.sql) in {views_dir(sql_dir)}")
    names = {f.stem for f in files}
    views = {}
    for path in files:
        sql = path.read_text()
        body = _statement_body(sql)
        header = _HEADER.match(body)
        if header is None or header.group(1) != path.stem:
            raise CatalogError(f"{path}: expected 'CREATE OR REPLACE VIEW {path.stem} AS ...'")
        words = {w for w in _WORD.findall(body[header.end() :])}
        depends = frozenset((words & names) - {path.stem})
        views[path.stem] = ViewFile(path.stem, sql, _description(sql), depends)
    return [views[name] for name in _ordered({n: v.depends for n, v in views.items()})]


def _ordered(graph: dict[str, frozenset[str]]) -> list[str]:
    sorter = TopologicalSorter(graph)
    try:
        sorter.prepare()
    except CycleError as err:
        raise CatalogError(f"views depend on each other in a cycle: {err.args[1]}") from None
    order = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def lake_literal(lake_root: str | Path) -> str:
    """The absolute lake root, escaped for use inside a SQL string literal."""
    root = Path(lake_root).resolve().as_posix()
    if any(c in root for c in "*?[]{}"):
        raise CatalogError(f"the lake path {root!r} contains glob characters; move the lake")
    return root.replace("'", "''")


def has_files(lake_root: Path, spec: TableSpec) -> bool:
    stars = "/".join(f"{column}=*" for column in spec.partitions)
    return next(Path(lake_root).glob(f"{spec.name}/{stars}/data.parquet"), None) is not None


def table_columns(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> list[tuple[str, str]]:
    """``(column, DuckDB type)`` of a base view: the file schema, then the partitions."""
    types = con.from_arrow(spec.schema.empty_table()).types
    columns = [(f.name, str(t)) for f, t in zip(spec.schema, types, strict=True)]
    return columns + [(column, "VARCHAR") for column in spec.partitions]


def empty_view_sql(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> str:
    """``CREATE OR REPLACE VIEW`` of an empty view with the table's columns and types."""
    columns = ", ".join(
        f'CAST(NULL AS {sql_type}) AS "{name}"' for name, sql_type in table_columns(con, spec)
    )
    return f"CREATE OR REPLACE VIEW {spec.name} AS SELECT {columns} WHERE false"


def create_views(con: duckdb.DuckDBPyConnection, lake_root: str | Path) -> list[ViewFile]:
    """Create every view of ``sql/views/`` on ``con`` over the lake at ``lake_root``."""
    lake_root = Path(lake_root)
    literal = lake_literal(lake_root)
    views = load_views()
    for view in views:
        if view.is_base and not has_files(lake_root, TABLES[view.name]):
            sql = empty_view_sql(con, TABLES[view.name])
        else:
            sql = view.sql.replace(LAKE_PLACEHOLDER, literal)
        try:
            con.execute(sql)
        except duckdb.Error as err:
            raise CatalogError(f"view {view.name}: {err}") from err
    return views


def connect(lake_root: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with every view over the lake at ``lake_root``."""
    con = duckdb.connect()
    try:
        create_views(con, lake_root)
    except BaseException:
        con.close()
        raise
    return con


def write_catalog_file(lake_root: str | Path, path: str | Path) -> Path:
    """Write a ``.duckdb`` file at ``path`` with every view, atomically.

    The file is built under a temporary name in the same folder and renamed onto ``path``, so
    readers and parallel writers never see (or write into) a half-built catalog."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # DuckDB creates the database file itself
    try:
        con = duckdb.connect(str(tmp))
        try:
            create_views(con, lake_root)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
    return path


def describe(con: duckdb.DuckDBPyConnection) -> list[tuple[ViewFile, list[tuple[str, str]]]]:
    """Every view in catalog order with its ``(column, type)`` list (for ``ct sql --views``)."""
    return [
        (view, [(row[0], row[1]) for row in con.execute(f'DESCRIBE "{view.name}"').fetchall()])
        for view in load_views()
    ]
