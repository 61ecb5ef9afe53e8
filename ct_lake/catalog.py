"""DuckDB views over the lake: one base view per lake table, and the views of ``sql/views/``.

**Base views** (one per table of :data:`ct_lake.tables.TABLES`, named like it, described by
its :attr:`TableSpec.description <ct_lake.tables.TableSpec>`) are generated from the table's
Delta version, current or as of ``as_of`` (see :mod:`ct_lake.lake`): its data columns then
its partition columns (``VARCHAR``), over exactly the data files that version lists, never
files left by overwrites. On a local lake a base view is ``read_parquet([<files>],
hive_partitioning = true)``, so a filter on partition columns reads only the matching files;
files written before a column was added to the table are read in their own
``read_parquet`` (nulls for that column), so no query has to open every file's footer. On an
S3 lake (DuckDB cannot read ``s3://`` here) the table's pyarrow dataset is registered as
``_delta_<table>`` and the base view selects from it; partition filters are pushed down to
it. A table without files gets an empty view with its columns and types, so derived views and
``ct sql`` work on a fresh lake.

**Derived views** are the files ``ct_lake/sql/views/<view>.sql`` (package data), each one
``CREATE OR REPLACE VIEW <view> AS ...`` statement whose leading ``--`` comment is its
description. Views are created dependencies first: a view depends on every other view whose
name it mentions outside comments and string literals.

:func:`connect` gives an in-memory connection with every view; :func:`write_catalog_file`
writes a ``.duckdb`` file with the same views, atomically (local lakes only). A catalog file
lists the files of the table versions at the time it was written: rebuild it after writes
(:func:`connect` reads the lake's versions each time), and before ``ct lake optimize`` deletes
files that are no longer current.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import duckdb
import pyarrow as pa

from ct_lake.lake import AsOf, Lake, TableSnapshot
from ct_lake.package_data import sql_dir
from ct_lake.storage import LakeError, Location
from ct_lake.tables import TABLES, TableSpec

SQL_DIR = sql_dir()
REGISTERED_PREFIX = "_delta_"  # S3 lakes: the registered dataset behind base view <table>
_HEADER = re.compile(r"^\s*CREATE\s+OR\s+REPLACE\s+VIEW\s+(\w+)\s+AS\b", re.IGNORECASE)
# comments (-- and /* */) and string literals: what the view-dependency scan ignores
_COMMENT_OR_STRING = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.DOTALL)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CatalogError(RuntimeError):
    """The SQL folder or one of its view files is missing or malformed."""


@dataclass(frozen=True)
class ViewFile:
    """One view: its name, SQL and description (base views: generated, ``sql`` empty)."""

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
    """Every view (base views and view files), each after the views it uses."""
    folder = views_dir(sql_dir)
    files = sorted(folder.glob("*.sql"))
    if not files:
        raise CatalogError(f"no view files (*.sql) in {folder}")
    clash = sorted({f.stem for f in files} & set(TABLES))
    if clash:
        raise CatalogError(
            f"{folder}: {', '.join(clash)} would replace the base view of the lake table of "
            "that name (base views are made from ct_lake.tables); rename the file"
        )
    names = {f.stem for f in files} | set(TABLES)
    views = {
        name: ViewFile(name, "", spec.description, frozenset()) for name, spec in TABLES.items()
    }
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


# -- base views -------------------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def schema_columns(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> list[tuple[str, str]]:
    """``(column, DuckDB type)`` of an Arrow schema."""
    types = con.from_arrow(schema.empty_table()).types
    return [(f.name, str(t)) for f, t in zip(schema, types, strict=True)]


def table_columns(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> list[tuple[str, str]]:
    """``(column, DuckDB type)`` of a table's base view: its schema, then the partitions."""
    return schema_columns(con, spec.schema) + [(column, "VARCHAR") for column in spec.partitions]


def empty_view_sql(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema) -> str:
    """``CREATE OR REPLACE VIEW`` of an empty view with ``schema``'s columns and types."""
    columns = ", ".join(
        f"CAST(NULL AS {sql_type}) AS {_quote(column)}"
        for column, sql_type in schema_columns(con, schema)
    )
    return f"CREATE OR REPLACE VIEW {name} AS SELECT {columns} WHERE false"


def _check_local_path(uri: str) -> str:
    # DuckDB expands glob characters even in a list of file names.
    if any(c in uri for c in "*?[]{}"):
        raise CatalogError(f"the lake path {uri!r} contains glob characters; move the lake")
    return uri


def base_view_sql(con: duckdb.DuckDBPyConnection, snap: TableSnapshot) -> str:
    """``CREATE OR REPLACE VIEW <table>`` over the files of a local table snapshot."""
    name = snap.spec.name
    if not snap.files:
        return empty_view_sql(con, name, snap.schema)
    types = dict(schema_columns(con, snap.schema))
    data_columns = snap.data_columns
    uris = {f.path: _check_local_path(f"{snap.uri}/{f.path}") for f in snap.files}
    created = snap.created_columns
    added = [c for c in data_columns if created is None or c not in created]
    groups: dict[frozenset[str] | None, list[str]] = {}
    if not added:  # the creation schema: every file has every column
        groups[frozenset()] = list(uris.values())
    else:
        # Columns added later are missing from older files. The log's statistics tell which
        # file has which (grouped, each group one read_parquet); where they cannot (list and
        # map columns have no statistics), DuckDB compares the files' footers itself.
        known = frozenset().union(*(f.columns or frozenset() for f in snap.files))
        if any(f.columns is None for f in snap.files) or not set(added) <= known:
            groups[None] = list(uris.values())
        else:
            for f in snap.files:
                groups.setdefault(frozenset(c for c in added if c in f.columns), []).append(
                    uris[f.path]
                )
    selects = []
    for has, paths in groups.items():
        items = [
            _quote(c)
            if has is None or c not in added or c in has
            else f"CAST(NULL AS {types[c]}) AS {_quote(c)}"
            for c in data_columns
        ]
        items += [_quote(c) for c in snap.spec.partitions]
        files = ", ".join(_literal(u) for u in paths)
        union = ", union_by_name = true" if has is None else ""
        selects.append(
            f"SELECT {', '.join(items)} FROM read_parquet([{files}], hive_partitioning = true, "
            f"hive_types_autocast = false{union})"
        )
    return f"CREATE OR REPLACE VIEW {name} AS\n" + "\nUNION ALL\n".join(selects)


def _create_base_view(con: duckdb.DuckDBPyConnection, snap: TableSnapshot) -> None:
    name = snap.spec.name
    if snap.lake.location.is_local or not snap.files:
        con.execute(base_view_sql(con, snap))
        return
    registered = REGISTERED_PREFIX + name
    con.register(registered, snap.dataset())
    columns = ", ".join(_quote(f.name) for f in snap.schema)
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {columns} FROM {registered}")


# -- connections ------------------------------------------------------------------------------


def as_lake(lake: Lake | Location | str | Path) -> Lake:
    return lake if isinstance(lake, Lake) else Lake(lake)


def create_views(
    con: duckdb.DuckDBPyConnection, lake: Lake | Location | str | Path, as_of: AsOf = None
) -> list[ViewFile]:
    """Create every view on ``con`` over ``lake``, its tables now or as of ``as_of``."""
    lake = as_lake(lake)
    views = load_views()
    snapshots = lake.snapshots(as_of)
    for view in views:
        try:
            if view.is_base:
                _create_base_view(con, snapshots[view.name])
            else:
                con.execute(view.sql)
        except duckdb.Error as err:
            raise CatalogError(f"view {view.name}: {err}") from err
    return views


def connect(lake: Lake | Location | str | Path, as_of: AsOf = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with every view over ``lake`` (now or as of ``as_of``).

    ``as_of``: a lake version (int) or an ISO-8601 timestamp (see :mod:`ct_lake.lake`)."""
    con = duckdb.connect()
    try:
        create_views(con, lake, as_of)
    except BaseException:
        con.close()
        raise
    return con


def write_catalog_file(
    lake: Lake | Location | str | Path, path: str | Path, as_of: AsOf = None
) -> Path:
    """Write a ``.duckdb`` file at ``path`` with every view, atomically (local lakes only).

    The file is built under a temporary name in the same folder and renamed onto ``path``, so
    readers and parallel writers never see (or write into) a half-built catalog."""
    lake = as_lake(lake)
    if not lake.location.is_local:
        raise LakeError(
            f"a catalog file cannot hold the views of lake {lake.location.describe()}: DuckDB "
            "reads S3 lakes through Python datasets (use ct_lake.catalog.connect)"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # DuckDB creates the database file itself
    try:
        con = duckdb.connect(str(tmp))
        try:
            create_views(con, lake, as_of)
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
