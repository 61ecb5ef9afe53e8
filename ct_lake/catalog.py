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

:func:`connect` gives an in-memory connection with every view, or with only the views a query
needs (``for_query``: :func:`views_for`); :func:`execute` runs a query with only those views,
and a read-only query that names none without any (what ``ct sql`` uses: ``SELECT 1`` reads no
Delta log). :func:`write_catalog_file` writes a ``.duckdb`` file with every view, atomically
(local lakes only). A catalog file
lists the files of the table versions at the time it was written: rebuild it after writes
(:func:`connect` reads the lake's versions each time), and before ``ct lake optimize`` deletes
files that are no longer current.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from ct_lake.package_data import sql_dir
from ct_lake.storage import DamagedLog, LakeError, Location

# pyarrow and the lake's table modules are imported where used: a query that needs no view
# (ct sql "SELECT 1") runs without them (:func:`execute`).
if TYPE_CHECKING:
    import pyarrow as pa

    from ct_lake.lake import AsOf, Lake, TableSnapshot
    from ct_lake.tables import TableSpec

SQL_DIR = sql_dir()
MAX_DAMAGED_FILES = 100  # a table with more is not worth reading further: check the lake
REGISTERED_PREFIX = "_delta_"  # S3 lakes: the registered dataset behind base view <table>
_HEADER = re.compile(r"^\s*CREATE\s+OR\s+REPLACE\s+VIEW\s+(\w+)\s+AS\b", re.IGNORECASE)
# comments (-- and /* */) and string literals: what the view-dependency scan ignores
_COMMENT_OR_STRING = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.DOTALL)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words of a query that reads the catalog itself (SHOW TABLES, DESCRIBE, information_schema,
# duckdb_views(), PRAGMA show_tables, EXPORT DATABASE...): such a query gets every view.
_CATALOG_WORD = re.compile(
    r"show|describe|summarize|export|information_schema|(pragma|duckdb_|pg_|sqlite_)\w*",
    re.IGNORECASE,
)


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
        from ct_lake.tables import TABLES

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
    from ct_lake.tables import TABLES

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


def views_for(query: str, views: list[ViewFile] | None = None) -> list[ViewFile]:
    """The views of ``views`` (default: :func:`load_views`) that ``query`` needs, in catalog
    order: those it names (in comments and strings too: a name too many costs only its view)
    and the views they use; every view when the query reads the catalog itself (``SHOW
    TABLES``, ``DESCRIBE``, ``information_schema``, ``duckdb_views()``...)."""
    views = load_views() if views is None else views
    words = {word.lower() for word in _WORD.findall(query)}
    if _reads_catalog(words):
        return views
    by_name = {view.name.lower(): view for view in views}
    needed: set[str] = set()
    todo = [word for word in words if word in by_name]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(dep.lower() for dep in by_name[name].depends)
    return [view for view in views if view.name.lower() in needed]


def _reads_catalog(words: set[str]) -> bool:
    return any(_CATALOG_WORD.fullmatch(word) for word in words)


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


@functools.cache
def _duckdb_types() -> dict[pa.DataType, str]:
    """DuckDB's names of Arrow types, as ``con.from_arrow`` gives them, known without asking
    DuckDB: handing DuckDB any Arrow object imports pandas (0.3 s of every ct sql). Types not
    known here (structs, decimals, ...) are asked of DuckDB."""
    import pyarrow as pa

    return {
        pa.bool_(): "BOOLEAN",
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.uint8(): "UTINYINT",
        pa.uint16(): "USMALLINT",
        pa.uint32(): "UINTEGER",
        pa.uint64(): "UBIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
        pa.binary(): "BLOB",
        pa.large_binary(): "BLOB",
        pa.date32(): "DATE",
    }


_TIMESTAMP_TYPES = {
    "s": "TIMESTAMP_S",
    "ms": "TIMESTAMP_MS",
    "us": "TIMESTAMP",
    "ns": "TIMESTAMP_NS",
}


def _known_type(t: pa.DataType) -> str | None:
    """DuckDB's name of Arrow type ``t`` (None: not known here)."""
    import pyarrow as pa

    name = _duckdb_types().get(t)
    if name is not None:
        return name
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return _TIMESTAMP_TYPES[t.unit]
        return "TIMESTAMP WITH TIME ZONE" if t.unit != "ns" else None
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        item = _known_type(t.value_type)
        return None if item is None else f"{item}[]"
    if pa.types.is_map(t):
        key, item = _known_type(t.key_type), _known_type(t.item_type)
        return None if key is None or item is None else f"MAP({key}, {item})"
    return None


def schema_columns(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> list[tuple[str, str]]:
    """``(column, DuckDB type)`` of an Arrow schema."""
    types = [_known_type(f.type) for f in schema]
    if None in types:
        types = [str(t) for t in con.from_arrow(schema.empty_table()).types]
    return [(f.name, t) for f, t in zip(schema, types, strict=True)]


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


def base_view_sql(
    con: duckdb.DuckDBPyConnection,
    snap: TableSnapshot,
    damaged: Mapping[str, str] | None = None,
    skip_damaged: bool = False,
) -> str:
    """``CREATE OR REPLACE VIEW <table>`` over the files of a local table snapshot.

    ``damaged`` (file path relative to the table: why it cannot be read) are left out of the
    ``read_parquet`` lists; each becomes a branch of its own that raises an error naming it when
    a query reads its partition (a filter on other partitions never does), or, with
    ``skip_damaged``, nothing at all."""
    name = snap.spec.name
    damaged = damaged or {}
    good = [f for f in snap.files if f.path not in damaged]
    bad = [] if skip_damaged else [f for f in snap.files if f.path in damaged]
    if not good and not bad:
        return empty_view_sql(con, name, snap.schema)
    types = dict(schema_columns(con, snap.schema))
    data_columns = snap.data_columns
    uris = {f.path: _check_local_path(f"{snap.uri}/{f.path}") for f in good}
    created = snap.created_columns
    added = [c for c in data_columns if created is None or c not in created]
    groups: dict[frozenset[str] | None, list[str]] = {}
    if not good:
        pass
    elif not added:  # the creation schema: every file has every column
        groups[frozenset()] = list(uris.values())
    else:
        # Columns added later are missing from older files. The log's statistics tell which
        # file has which (grouped, each group one read_parquet); where they cannot (list and
        # map columns have no statistics), DuckDB compares the files' footers itself.
        known = frozenset().union(*(f.columns or frozenset() for f in good))
        if any(f.columns is None for f in good) or not set(added) <= known:
            groups[None] = list(uris.values())
        else:
            for f in good:
                groups.setdefault(frozenset(c for c in added if c in f.columns), []).append(
                    uris[f.path]
                )
    selects = []
    for f in bad:
        items = [f"CAST(NULL AS {types[c]}) AS {_quote(c)}" for c in data_columns]
        items += [
            f"{_literal(v)} AS {_quote(c)}"
            for c, v in zip(snap.spec.partitions, f.partition, strict=True)
        ]
        message = damaged_message(name, f.path, damaged[f.path])
        selects.append(f"SELECT {', '.join(items)} WHERE error({_literal(message)}) IS NULL")
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


def damaged_message(table: str, path: str, reason: str) -> str:
    """What a query that reads a damaged data file is told."""
    return (
        f"table {table}: damaged data file {table}/{path} ({reason}); `ct lake check` lists "
        "the lake's damaged files, `ct lake check --quarantine` moves them aside"
    )


def damaged_files(snap: TableSnapshot) -> dict[str, str]:
    """The data files of ``snap`` whose Parquet footer cannot be read: ``{path: why}``."""
    import pyarrow.parquet as pq

    fs, root = snap.lake._filesystem(snap.spec.name)
    found = {}
    for f in snap.files:
        try:
            with fs.open_input_file(f"{root}/{f.path}") as handle:
                pq.read_metadata(handle)
        except Exception as err:  # any unreadable file: ArrowInvalid, OSError, ...
            found[f.path] = _first_line(err)
        if len(found) >= MAX_DAMAGED_FILES:
            break
    return found


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _create_base_view(
    con: duckdb.DuckDBPyConnection,
    snap: TableSnapshot,
    damaged: dict[str, str] | None = None,
    skip_damaged: bool = False,
) -> None:
    name = snap.spec.name
    if snap.lake.location.is_local or not snap.files:
        try:
            con.execute(base_view_sql(con, snap, damaged, skip_damaged))
            return
        except duckdb.Error:
            # DuckDB reads a file's footer to make the view: one damaged file would take the
            # view, and every query of the connection, with it. The damaged files are found and
            # set apart; a failure that none explains is the view's own.
            found = {p: why for p, why in damaged_files(snap).items() if p not in (damaged or {})}
            if not found:
                raise
            if damaged is None:
                damaged = {}
            damaged.update(found)
        con.execute(base_view_sql(con, snap, damaged, skip_damaged))
        return
    if damaged and skip_damaged:  # else pyarrow's error names the file when it is read
        kept = tuple(f for f in snap.files if f.path not in damaged)
        snap = dataclasses.replace(snap, files=kept)
    registered = REGISTERED_PREFIX + name
    con.register(registered, snap.dataset())
    columns = ", ".join(_quote(f.name) for f in snap.schema)
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {columns} FROM {registered}")


# -- connections ------------------------------------------------------------------------------


def as_lake(lake: Lake | Location | str | Path) -> Lake:
    from ct_lake.lake import Lake

    return lake if isinstance(lake, Lake) else Lake(lake)


def create_views(
    con: duckdb.DuckDBPyConnection,
    lake: Lake | Location | str | Path,
    as_of: AsOf = None,
    views: list[ViewFile] | None = None,
    *,
    damaged: dict[str, dict[str, str]] | None = None,
    skip_damaged: bool = False,
) -> list[ViewFile]:
    """Create ``views`` (default: every view; each after the views it uses, as
    :func:`load_views` and :func:`views_for` order them) on ``con`` over ``lake``, its tables
    now or as of ``as_of``. Only the base views' tables are read (all of them for ``as_of``,
    which is checked against the lake's history even when no table is).

    A damaged table stays out of the way of the others: a data file DuckDB cannot open is
    found and set apart (:func:`base_view_sql`), and a table whose Delta log cannot be read
    gets a view with its columns that raises the log's error when a query reads it. The files
    found (and those the caller already knows) are in ``damaged`` (``{table: {path: why}}``),
    which the caller may pass to learn them; ``skip_damaged`` leaves them out of the views
    instead of raising (the viewer's list of graphs)."""
    from ct_lake.tables import TABLES

    lake = as_lake(lake)
    views = load_views() if views is None else views
    damaged = {} if damaged is None else damaged
    broken: dict[str, str] = {}  # table: why its log cannot be read
    if as_of is None:
        snapshots = {}
        for view in views:
            if view.is_base:
                try:
                    snapshots[view.name] = lake.snapshot(view.name)
                except DamagedLog as err:
                    broken[view.name] = str(err)
    else:
        snapshots = lake.snapshots(as_of)
    for view in views:
        try:
            if view.name in broken:
                spec = TABLES[view.name]
                schema = spec.schema
                for column in spec.partitions:
                    schema = schema.append(pa_string_field(column))
                sql = empty_view_sql(con, view.name, schema).removesuffix(" WHERE false")
                con.execute(f"{sql} WHERE error({_literal(broken[view.name])}) IS NULL")
            elif view.is_base:
                found = damaged.setdefault(view.name, {})
                _create_base_view(con, snapshots[view.name], found, skip_damaged)
                if not found:
                    del damaged[view.name]
            else:
                con.execute(view.sql)
        except duckdb.Error as err:
            raise CatalogError(f"view {view.name}: {err}") from err
    return views


def pa_string_field(name: str):
    import pyarrow as pa

    return pa.field(name, pa.string())


def connect(
    lake: Lake | Location | str | Path,
    as_of: AsOf = None,
    *,
    for_query: str | None = None,
    sandbox: bool = False,
    damaged: dict[str, dict[str, str]] | None = None,
    skip_damaged: bool = False,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with every view over ``lake`` (now or as of ``as_of``),
    or with only the views ``for_query`` needs (:func:`views_for`).

    ``as_of``: a lake version (int) or an ISO-8601 timestamp (see :mod:`ct_lake.lake`).
    ``sandbox``: the connection then reads only the lake's files (:func:`lock_down`).
    ``damaged``, ``skip_damaged``: see :func:`create_views`."""
    views = None if for_query is None else views_for(for_query)
    con = duckdb.connect()
    try:
        create_views(con, lake, as_of, views, damaged=damaged, skip_damaged=skip_damaged)
        if sandbox:
            lock_down(con, lake)
    except BaseException:
        con.close()
        raise
    return con


# Statements a sandboxed query may hold: they read (EXPLAIN ANALYZE runs a read; PRAGMA and
# CALL run DuckDB's built-in functions, whose settings lock_down locks).
READ_ONLY_STATEMENTS = frozenset(
    {
        duckdb.StatementType.SELECT,
        duckdb.StatementType.EXPLAIN,
        duckdb.StatementType.PRAGMA,
        duckdb.StatementType.CALL,
    }
)


class WritingQuery(CatalogError):
    """A sandboxed query holds a statement that writes or changes the connection."""


def lock_down(con: duckdb.DuckDBPyConnection, lake: Lake | Location | str | Path) -> None:
    """Let ``con`` read files of the lake's folder only (none on an S3 lake, whose tables
    DuckDB reads through registered Python datasets), never install or load an extension,
    and never change these settings again."""
    location = getattr(lake, "location", None) or Location.parse(lake)
    folders = [location.uri.rstrip("/") + "/"] if location.is_local else []
    con.execute("SET allowed_directories = " + _string_list(folders))
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


def _string_list(items: list[str]) -> str:
    return "[" + ", ".join(_literal(i) for i in items) + "]"


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """:class:`WritingQuery` unless every statement of ``query`` only reads (a query DuckDB
    cannot parse passes: running it gives DuckDB's own error)."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error:
        return
    writing = sorted({s.type.name for s in statements} - {t.name for t in READ_ONLY_STATEMENTS})
    if writing:
        raise WritingQuery(
            f"the query has statements that write or change settings ({', '.join(writing)}); "
            "queries read only, unless --write is given"
        )


def execute(
    lake: Lake | Location | str | Path,
    query: str,
    as_of: AsOf = None,
    *,
    sandbox: bool = False,
    damaged: dict[str, dict[str, str]] | None = None,
    skip_damaged: bool = False,
) -> tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection]:
    """Run ``query`` over the lake's views: ``(connection, cursor)``, the cursor holding the
    result of its last statement; the result, or the error, that a connection with every view
    gives, reading fewer tables.

    A read-only query (SELECT statements only) that does not read the catalog runs first on a
    bare connection, without views (unless it has ``as_of``), then on one with the views it
    names (:func:`views_for`), then on one with every view (so that an error, a misspelt view
    name's hint included, is the one every view gives); the first that succeeds gives the
    result. DuckDB binds a statement before it runs it, so one that names a missing view fails
    before it ran, and what ran before it only read. ``SELECT 1`` reads no Delta log and
    imports no pyarrow; a query over one table reads that table's log only. Any other query
    (one that writes, or that DuckDB cannot parse) runs once, with every view.

    ``sandbox``: only reading statements (:class:`WritingQuery` otherwise), and every
    connection reads the lake's files only (:func:`lock_down`). A query without any statement
    (empty, or only comments) is a ValueError. ``damaged``, ``skip_damaged``: see
    :func:`create_views`; a data file that turns out damaged while the query runs is a
    :class:`CatalogError` naming it, or, with ``skip_damaged``, is set apart (added to
    ``damaged``) and the query run again without it."""
    damaged = {} if damaged is None else damaged
    options = {"sandbox": sandbox, "damaged": damaged, "skip_damaged": skip_damaged}
    con = duckdb.connect()
    try:
        statements = con.extract_statements(query)
    except duckdb.Error:
        statements = None
    if statements == []:
        con.close()
        raise ValueError("the query has no SQL statement (it is empty or only comments)")
    read_only = statements is not None and all(
        s.type == duckdb.StatementType.SELECT for s in statements
    )
    if sandbox:
        try:
            check_read_only(con, query)
            lock_down(con, lake)
        except BaseException:
            con.close()
            raise
    if read_only and not _reads_catalog({word.lower() for word in _WORD.findall(query)}):
        if as_of is None:
            try:
                return con, con.execute(query)
            except duckdb.Error:
                pass
        con.close()
        con = connect(lake, as_of, for_query=query, **options)
        try:
            return con, con.execute(query)
        except duckdb.Error:
            pass
    con.close()
    while True:
        con = connect(lake, as_of, **options)
        try:
            return con, con.execute(query)
        except duckdb.Error as err:
            con.close()
            named = damaged_file_named(err, lake)
            if named is None:
                raise
            table, path, why = named
            known = options["damaged"].setdefault(table, {})
            if not skip_damaged or path in known or len(known) >= MAX_DAMAGED_FILES:
                raise CatalogError(damaged_message(table, path, why)) from err
            known[path] = why  # set apart: the query runs again without it
        except BaseException:
            con.close()
            raise


def query_rows(
    lake: Lake | Location | str | Path,
    query: str,
    as_of: AsOf = None,
    *,
    sandbox: bool = False,
    damaged: dict[str, dict[str, str]] | None = None,
    skip_damaged: bool = False,
) -> tuple[list[str], list[tuple]]:
    """``(columns, rows)`` of ``query`` (:func:`execute`, then every row fetched). DuckDB
    reads most files while rows are fetched: a damaged data file found then is handled as
    :func:`execute` handles one found before (named in a :class:`CatalogError`, or set apart
    with ``skip_damaged`` and the query run again)."""
    damaged = {} if damaged is None else damaged
    while True:
        con, cursor = execute(
            lake, query, as_of, sandbox=sandbox, damaged=damaged, skip_damaged=skip_damaged
        )
        try:
            columns = [d[0] for d in cursor.description or []]
            return columns, cursor.fetchall()
        except duckdb.Error as err:
            named = damaged_file_named(err, lake)
            if named is None:
                raise
            table, path, why = named
            known = damaged.setdefault(table, {})
            if not skip_damaged or path in known or len(known) >= MAX_DAMAGED_FILES:
                raise CatalogError(damaged_message(table, path, why)) from err
            known[path] = why
        finally:
            con.close()


def damaged_file_named(
    err: BaseException, lake: Lake | Location | str | Path
) -> tuple[str, str, str] | None:
    """``(table, path in the table, why)`` when ``err`` (DuckDB's, reading a view) names a
    data file of the lake: a file that DuckDB opened only to find it damaged."""
    from ct_lake.tables import TABLES

    location = getattr(lake, "location", None) or Location.parse(lake)
    text = str(err)
    if "damaged data file" in text:  # the lake's own message (damaged_message): as it is
        return None
    for name in TABLES:
        # pyarrow names an object-store file without its scheme: bucket/prefix/table/...
        root = location.child(name).uri.rstrip("/").split("://", 1)[-1] + "/"
        match = re.search(re.escape(root) + r"([^'\"\s]+\.parquet)", text)
        if match:
            first = _first_line(err).replace(f"'{match.group(0)}'", "the file")
            return name, match.group(1), first.replace(match.group(0), "the file")
    # An S3 lake's table is a registered dataset: pyarrow names the file within the table.
    match = re.search(
        rf"registered as '{REGISTERED_PREFIX}(\w+)' failed: .*?'([^']+\.parquet)'(?:: )?(.*)",
        text,
    )
    if match and match.group(1) in TABLES:
        return match.group(1), match.group(2), match.group(3).strip() or "unreadable"
    return None


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
