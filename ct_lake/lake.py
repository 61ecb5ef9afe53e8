"""The lake: one Delta Lake table per lake table, plus per-partition files.

Layout (``<lake>`` is a local folder or ``s3://bucket/prefix``, see :mod:`ct_lake.storage`)::

    <lake>/<table>/_delta_log/<version>.json                   the table's commits (Delta log)
    <lake>/<table>/model=<m>/prompt=<p>/part-<uuid>.parquet    its data files (see ct_lake.tables)
    <lake>/files/<kind>/model=<m>[/prompt=<p>]/<name>          graphs, plots, JSON (ct_lake.files)

Each table is a Delta table (``deltalake``, delta-rs) partitioned by its
:attr:`TableSpec.partitions <ct_lake.tables.TableSpec>`, stored as strings. Only the files
that the table's current Delta version lists are its rows; a data file not (or no longer)
listed is invisible, whatever its folder.

**Writes.** :meth:`Lake.write_table` replaces one partition's rows in one Delta commit (an
overwrite whose predicate is that partition's values, checked by :mod:`ct_lake.keys` or a
plain-name rule, so the predicate cannot be injected): re-materializing never duplicates
rows, and a reader sees the partition before or after the commit, never between. A process
killed mid-write leaves at most unlisted data files (removed by :meth:`Lake.optimize`) and
the table at its previous version. Writing 0 rows leaves the partition written and empty
(one 0-row file), so :meth:`Lake.has_partition` stays true. The first write creates the table
with the writer's schema. Several processes may write different partitions of one table at
once: a commit that loses the race to another is retried (see :func:`_commit`).

**Schema evolution.** Writes merge schemas: a writer whose :class:`TableSpec` has a new column
adds it to the table; older partitions read back with nulls in it. A writer that lacks a
column the table has writes nulls in it, so every column of the table is in the files written
since it was added.

**History and time travel.** Every commit is a table version, kept until :meth:`Lake.optimize`
removes it. :meth:`Lake.history` lists the commits of all tables in time order; the *lake
version* N is the N-th commit across all tables (1-based, counting the commits the log no
longer holds, which are all older). ``as_of`` (in :meth:`read_table`, :meth:`scan`,
:meth:`versions` and :func:`ct_lake.catalog.connect`) is a lake version (``int``, or a string
of digits) or an ISO-8601 timestamp (UTC when it has no zone): each table is read at its last
version not after it, and a table created later reads as empty. Commits are ordered by
their commit time (ties: table name, then version); a commit that lands while others are being
written may carry an earlier time than one already listed, so quote lake versions of a lake
that no process is writing (or use timestamps).

**Retention.** :meth:`Lake.optimize` compacts small files, then deletes the data files that
no version younger than ``retention_hours`` (default :data:`DEFAULT_RETENTION_HOURS`, 7 days)
still uses (files removed by overwrites, and files killed writers left; other files in a
table's folders stay), and the log entries older than that (the table's
``delta.logRetentionDuration`` is set to the retention, after a checkpoint). Time travel
reaches back that far and no further; the lake versions of the remaining commits do not
change. A retention shorter than the longest write in progress would delete that write's
files before it commits: keep it in hours, not minutes, while writers run.

Handles of Delta tables are cached per process and refreshed (``update_incremental``, one
listing of the log) before each read, so :meth:`has_partition` and :meth:`read_table` cost
about a millisecond plus the read. Reads use pyarrow's own filesystems (never deltalake's
Python filesystem handler, whose pending reads abort the interpreter at exit with
"terminate called without an active exception").
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from ct_lake.files import SWEEP_GRACE_S, LakeFiles, remove_temporaries
from ct_lake.keys import check_model_key, check_prompt_key
from ct_lake.storage import DamagedLog, LakeError, Location
from ct_lake.tables import TABLES, TableSpec, table

DEFAULT_RETENTION_HOURS = 7 * 24
# Commit attempts of one write before it gives up (delta-rs retries version races itself;
# these attempts cover the conflicts it reports, such as a concurrent table creation).
COMMIT_ATTEMPTS = 12
_BACKOFF_S = (0.02, 1.0)  # first and largest pause between attempts (doubling, jittered)
# A cached table handle is loaded afresh (from the newest checkpoint) after this many commits.
HANDLE_REFRESH_COMMITS = 16
PARTITION_KEY = "ct.partition"  # commit metadata: which partition a write replaced
# A table's Delta description records its data columns at creation: while the table still has
# exactly those, every data file has them all (see _pad), and readers need not compare files.
_CREATED = re.compile(r"\(data columns at creation: ([^()]*)\)$")

_CHECKS = {"model": check_model_key, "prompt": check_prompt_key}
# Other partition values (run ids, graph ids): a plain name, safe in a path and in a predicate.
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_DIGITS = re.compile(r"^\s*\d+\s*$")

AsOf = int | str | datetime | None


def check_partition_value(column: str, value: str) -> str:
    """``value`` if it may be the ``column`` partition value (ValueError otherwise).

    ``model`` and ``prompt`` follow :mod:`ct_lake.keys`; other columns take plain names
    (letters, digits, ``.``, ``_``, ``-``), which keeps paths and write predicates literal.
    """
    value = str(value)
    check = _CHECKS.get(column)
    if check is not None:
        return check(value)
    if not _PLAIN_VALUE.match(value):
        raise ValueError(
            f"bad {column} partition value {value!r}: use 1-201 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    return value


# -- what the lake reports ---------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    """One commit of one table: ``lake_version`` is its 1-based rank across the lake."""

    lake_version: int
    table: str
    version: int
    timestamp: datetime
    operation: str
    partition: str | None  # "model=m/prompt=p" for writes, None for maintenance commits


@dataclass(frozen=True)
class TableInfo:
    """A table's current version and size, from the Delta log (no data file is read)."""

    table: str
    version: int | None  # None: the table has never been written
    partitions: int
    files: int
    bytes: int
    rows: int | None  # None when some file has no row count in the log


@dataclass(frozen=True)
class TableOptimization:
    """What :meth:`Lake.optimize` did to one table."""

    table: str
    files_compacted: int  # small files replaced by...
    files_written: int  # ...these larger ones
    bytes_compacted: int
    bytes_written: int
    files_vacuumed: int  # data files deleted: unused by every version kept
    bytes_vacuumed: int
    log_entries_removed: int


@dataclass(frozen=True)
class OptimizeReport:
    retention_hours: float
    tables: tuple[TableOptimization, ...]

    def total(self, name: str) -> int:
        """The sum of one :class:`TableOptimization` field over all tables."""
        return sum(getattr(t, name) for t in self.tables)


@dataclass(frozen=True)
class DataFile:
    """One data file of a table version, as its Delta log lists it."""

    path: str  # relative to the table's root
    partition: tuple[str, ...]  # values, in the table's partition-column order
    size: int
    rows: int | None
    # data columns with statistics in the log (list and map columns have none; None: the log
    # has no statistics for this file)
    columns: frozenset[str] | None


@dataclass(frozen=True)
class TableSnapshot:
    """One table at one version: what :mod:`ct_lake.catalog` builds a view from.

    ``schema``: data columns (the table's, at that version) then the partition columns
    (strings). ``version`` is None when the table did not exist at that point (no files).
    """

    spec: TableSpec
    version: int | None
    schema: pa.Schema
    files: tuple[DataFile, ...]
    uri: str  # the table's root (local path or s3://...)
    lake: Lake = field(repr=False, compare=False)
    # The data columns the table was created with (None: unknown). While the schema has no
    # other column, every file has every column.
    created_columns: frozenset[str] | None = None

    @property
    def data_columns(self) -> list[str]:
        return [f.name for f in self.schema if f.name not in self.spec.partitions]

    def file_uris(self) -> list[str]:
        return [f"{self.uri}/{f.path}" for f in self.files]

    def dataset(self):
        """A ``pyarrow.dataset.Dataset`` over this version's files, partition columns included.

        Filters on partition columns skip the other partitions' files."""
        return self.lake._dataset(self.spec.name, self.schema, self.files, self.spec.partitions)


# -- the lake ---------------------------------------------------------------------------------


class Lake(LakeFiles):
    """A lake at ``root``: a local folder (created on first write) or ``s3://bucket/prefix``.

    ``root`` may be a :class:`~ct_lake.storage.Location`, a path or a URI string; a relative
    path is resolved against the working directory.
    """

    def __init__(self, root: str | Path | Location):
        self.location = Location.parse(root)
        self._lock = threading.RLock()
        self._pid = os.getpid()
        # table -> (DeltaTable at its newest version seen, the version it was loaded at)
        self._handles: dict[str, tuple[Any, int]] = {}
        self._files: dict[tuple[str, int], list[DataFile]] = {}
        self._history: dict[str, tuple[int, list[dict]]] = {}  # table -> (version, entries)

    def __repr__(self) -> str:
        return f"Lake({self.location.uri!r})"

    def __getstate__(self) -> dict:
        # Handles and locks belong to one process: a copy (pickle) opens its own.
        return {"location": self.location}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["location"])

    @property
    def uri(self) -> str:
        return self.location.uri

    @property
    def root(self) -> Path:
        """The lake's folder (local lakes only; LakeError on S3)."""
        return self.location.local_path

    def table_uri(self, name: str) -> str:
        """``<lake>/<table>``: where the Delta table ``name`` lives."""
        return self.location.child(table(name).name).uri

    # -- writes -----------------------------------------------------------------------------

    def write_table(
        self, name: str, rows: Sequence[Mapping[str, Any]] | pa.Table, **keys: str
    ) -> tuple[str, int]:
        """Replace one partition of table ``name`` with ``rows``; return (its URI, row count).

        ``rows``: a list of dicts or an Arrow table with the table's columns (cast to the
        :class:`TableSpec` schema; missing columns are null). One Delta commit.
        """
        spec = table(name)
        values = self._values(spec, keys)
        if isinstance(rows, pa.Table):
            data = _conform(rows, spec.schema, keep_extra=False)
        else:
            data = pa.Table.from_pylist(list(rows), schema=spec.schema)
        uri = self.location.child(name, *_partition_parts(spec, values)).uri
        self._sweep_once()
        with self.location.errors(f"write table {name} of"), self._locked():
            _commit(lambda: self._write_once(spec, values, data))
        return uri, data.num_rows

    def _write_once(self, spec: TableSpec, values: tuple[str, ...], data: pa.Table) -> None:
        from deltalake import CommitProperties, WriterProperties, write_deltalake

        dt = self._handle(spec.name)
        if dt is not None:
            data = _pad(data, self._schema(dt), spec.partitions)
        full = data
        for column, value in zip(spec.partitions, values, strict=True):
            full = full.append_column(
                pa.field(column, pa.string()), pa.array([value] * data.num_rows, pa.string())
            )
        commit = CommitProperties(
            custom_metadata={PARTITION_KEY: "/".join(_partition_parts(spec, values))}
        )
        if data.num_rows == 0:
            if dt is None:
                dt = self._create(spec, full.schema)
            self._write_empty(dt, spec, values, commit)
            return
        write_deltalake(
            dt if dt is not None else self.table_uri(spec.name),
            full,
            description=None if dt is not None else _creation_note(spec, data.schema),
            partition_by=list(spec.partitions),
            mode="overwrite",
            predicate=_predicate(spec, values),
            schema_mode="merge",
            storage_options=self.location.storage_options(),
            writer_properties=WriterProperties(compression="ZSTD"),
            commit_properties=commit,
        )

    def _create(self, spec: TableSpec, schema: pa.Schema):
        """The table ``spec.name``, created empty with ``schema`` unless it exists."""
        from deltalake import DeltaTable

        DeltaTable.create(
            self.table_uri(spec.name),
            schema,
            mode="ignore",
            description=_creation_note(spec, schema),
            partition_by=list(spec.partitions),
            storage_options=self.location.storage_options(),
        )
        return self._handle(spec.name)

    def _write_empty(self, dt, spec: TableSpec, values: tuple[str, ...], commit) -> None:
        """Replace a partition with one 0-row file (delta-rs writes no file for no rows)."""
        import pyarrow.parquet as pq
        from deltalake.transaction import AddAction

        schema = self._schema(dt)
        data_schema = pa.schema([f for f in schema if f.name not in spec.partitions])
        relative = "/".join(
            [*_partition_parts(spec, values), f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"]
        )
        fs, root = self._filesystem(spec.name)
        if self.location.is_local:  # object stores have no folders to make
            fs.create_dir(f"{root}/{relative.rsplit('/', 1)[0]}", recursive=True)
        with fs.open_output_stream(f"{root}/{relative}") as out:
            pq.write_table(data_schema.empty_table(), out, compression="zstd")
        size = fs.get_file_info(f"{root}/{relative}").size
        stats = {"numRecords": 0, "nullCount": {f.name: 0 for f in data_schema}}
        action = AddAction(
            path=relative,
            size=size,
            partition_values=dict(zip(spec.partitions, values, strict=True)),
            modification_time=int(time.time() * 1000),
            data_change=True,
            stats=json.dumps(stats),
        )
        dt.create_write_transaction(
            [action],
            mode="overwrite",
            schema=schema,
            partition_by=list(spec.partitions),
            partition_filters=[(c, "=", v) for c, v in zip(spec.partitions, values, strict=True)],
            commit_properties=commit,
        )

    # -- reads ------------------------------------------------------------------------------

    def has_partition(self, name: str, **keys: str) -> bool:
        """Whether the partition was written (even with 0 rows) in the current version."""
        spec = table(name)
        values = self._values(spec, keys)
        with self.location.errors(f"read table {name} of"), self._locked():
            dt = self._handle(name)
            if dt is None:
                return False
            return any(f.partition == values for f in self._file_list(name, dt))

    def partitions(self, name: str, as_of: AsOf = None) -> list[dict[str, str]]:
        """Every written partition of table ``name``: ``[{column: value}]``, sorted."""
        spec = table(name)
        snap = self.snapshot(name, as_of)
        found = sorted({f.partition for f in snap.files})
        return [dict(zip(spec.partitions, values, strict=True)) for values in found]

    def read_table(self, name: str, *, as_of: AsOf = None, **keys: str) -> pa.Table:
        """One partition of table ``name``: its data columns, without the partition columns.

        Columns: the :class:`TableSpec` schema (nulls for a column the table lacks), then any
        column the table has beyond it. FileNotFoundError if the partition was not written
        (at ``as_of``, when given).
        """
        spec = table(name)
        values = self._values(spec, keys)
        snap = self.snapshot(name, as_of)
        files = [f for f in snap.files if f.partition == values]
        if not files:
            where = ", ".join(f"{c}={v}" for c, v in zip(spec.partitions, values, strict=True))
            at = "" if as_of is None else f" at {as_of}"
            raise FileNotFoundError(
                f"table {name} has no partition {where}{at} in lake {self.location.describe()}"
            )
        data_schema = pa.schema([snap.schema.field(c) for c in snap.data_columns])
        with self.location.errors(f"read table {name} of"):
            result = self._dataset(name, data_schema, files, ()).to_table()
        return _conform(result, spec.schema, keep_extra=True)

    def scan(self, name: str, as_of: AsOf = None) -> pa.Table:
        """The whole table ``name`` (at ``as_of``): data columns then partition columns.

        An empty table (with the spec's columns) when it was never written."""
        spec = table(name)
        snap = self.snapshot(name, as_of)
        with self.location.errors(f"read table {name} of"):
            result = snap.dataset().to_table()
        partitions = pa.schema([pa.field(c, pa.string()) for c in spec.partitions])
        data = _conform(result.drop_columns(list(spec.partitions)), spec.schema, keep_extra=True)
        for f in partitions:
            data = data.append_column(f, result.column(f.name).cast(pa.string()))
        return data

    # -- versions ---------------------------------------------------------------------------

    def snapshot(self, name: str, as_of: AsOf = None) -> TableSnapshot:
        """Table ``name`` now, or at ``as_of`` (see the module docstring)."""
        table(name)
        if as_of is None:
            return self._snapshot(name, None)
        return self._snapshot(name, self.versions(as_of)[name], at_point=True)

    def snapshots(self, as_of: AsOf = None) -> dict[str, TableSnapshot]:
        """:meth:`snapshot` of every table of :data:`~ct_lake.tables.TABLES`."""
        if as_of is None:
            return {name: self._snapshot(name, None) for name in TABLES}
        versions = self.versions(as_of)
        return {name: self._snapshot(name, versions[name], at_point=True) for name in TABLES}

    def _snapshot(self, name: str, version: int | None, at_point: bool = False) -> TableSnapshot:
        """Table ``name`` at table version ``version`` (None: the newest, or, ``at_point``,
        before the table existed)."""
        spec = table(name)
        if at_point and version is None:
            return self._empty_snapshot(spec)
        with self.location.errors(f"read table {name} of"), self._locked():
            dt = self._handle(name)
            if dt is None:
                if version is not None:  # the table was removed since
                    raise LakeError(f"table {name} of lake {self.location.describe()} is gone")
                return self._empty_snapshot(spec)
            if version is not None and version != dt.version():
                dt = self._at_version(name, version)
            files = self._file_list(name, dt)
            schema = _view_schema(self._schema(dt), spec.partitions)
            created = _CREATED.search(dt.metadata().description or "")
            return TableSnapshot(
                spec,
                dt.version(),
                schema,
                tuple(files),
                self.table_uri(name),
                self,
                None if created is None else frozenset(created.group(1).split(",")),
            )

    def _empty_snapshot(self, spec: TableSpec) -> TableSnapshot:
        schema = _view_schema(spec.schema, ())
        for column in spec.partitions:
            schema = schema.append(pa.field(column, pa.string()))
        return TableSnapshot(spec, None, schema, (), self.table_uri(spec.name), self)

    def history(self, name: str | None = None) -> list[Commit]:
        """The commits of every table (or of table ``name``), oldest first.

        Each commit's ``lake_version`` counts commits across all tables, so it means the same
        in ``history("nodes")`` as in ``history()``.
        """
        if name is not None:
            table(name)
        entries: list[tuple[int, str, int, str, str | None]] = []
        offset = 0
        with self.location.errors("read the history of"), self._locked():
            for table_name in TABLES:
                dt = self._handle(table_name)
                if dt is None:
                    continue
                kept = sorted(self._table_history(table_name, dt), key=lambda e: e["version"])
                if not kept:
                    continue
                offset += kept[0]["version"]  # commits whose log entries were removed
                stamp = 0
                for entry in kept:
                    # A retried commit can carry an earlier time than the one before it.
                    stamp = max(stamp, int(entry.get("timestamp") or 0))
                    partition = entry.get(PARTITION_KEY)
                    operation = str(entry.get("operation") or "UNKNOWN")
                    entries.append((stamp, table_name, entry["version"], operation, partition))
        entries.sort(key=lambda e: (e[0], e[1], e[2]))
        commits = [
            Commit(
                lake_version=offset + i + 1,
                table=t,
                version=v,
                timestamp=datetime.fromtimestamp(stamp / 1000, UTC),
                operation=op,
                partition=part,
            )
            for i, (stamp, t, v, op, part) in enumerate(entries)
        ]
        return commits if name is None else [c for c in commits if c.table == name]

    def versions(self, as_of: AsOf = None) -> dict[str, int | None]:
        """Each table's version now or at ``as_of`` (None: the table did not exist yet)."""
        if as_of is None:
            with self.location.errors("read"), self._locked():
                out = {}
                for name in TABLES:
                    dt = self._handle(name)
                    out[name] = None if dt is None else dt.version()
                return out
        point = parse_as_of(as_of)
        commits = self.history()
        out: dict[str, int | None] = dict.fromkeys(TABLES)
        if isinstance(point, int):
            latest = commits[-1].lake_version if commits else 0
            earliest = commits[0].lake_version if commits else 1
            if point > latest:
                raise LakeError(
                    f"lake version {point} does not exist: lake {self.location.describe()} is "
                    f"at version {latest}"
                )
            if point < earliest:
                raise LakeError(
                    f"lake version {point} is older than the history lake "
                    f"{self.location.describe()} keeps (from version {earliest}; "
                    "`ct lake optimize` removes what is older than its retention)"
                )
            for commit in commits:
                if commit.lake_version <= point:
                    out[commit.table] = commit.version
            return out
        first: dict[str, Commit] = {}
        for commit in commits:
            first.setdefault(commit.table, commit)
            if commit.timestamp <= point:
                out[commit.table] = commit.version
        for name, commit in first.items():
            if out[name] is None and commit.version > 0:
                raise LakeError(
                    f"{point.isoformat()} is older than the history table {name} of lake "
                    f"{self.location.describe()} keeps (from {commit.timestamp.isoformat()})"
                )
        return out

    # -- maintenance ------------------------------------------------------------------------

    def info(self) -> list[TableInfo]:
        """Every table's version, partitions, files, bytes and rows (from the Delta log)."""
        out = []
        with self.location.errors("read"), self._locked():
            for name in TABLES:
                dt = self._handle(name)
                if dt is None:
                    out.append(TableInfo(name, None, 0, 0, 0, 0))
                    continue
                files = self._file_list(name, dt)
                counts = [f.rows for f in files]
                out.append(
                    TableInfo(
                        table=name,
                        version=dt.version(),
                        partitions=len({f.partition for f in files}),
                        files=len(files),
                        bytes=sum(f.size for f in files),
                        rows=None if None in counts else sum(counts),
                    )
                )
        return out

    def optimize(self, retention_hours: float = DEFAULT_RETENTION_HOURS) -> OptimizeReport:
        """Compact, vacuum and trim the log of every table; return what was done.

        Compaction rewrites a partition's small files into one (a commit per table that has
        some). Vacuum then deletes the data files no version younger than ``retention_hours``
        uses, and the unlisted files killed writers left behind once they are that old; the
        log keeps the commits of that window (plus a checkpoint). Time travel reaches back
        ``retention_hours`` and no further. The retention stays the table's log retention
        (``delta.logRetentionDuration``): the checkpoints later writes make (every 100 commits)
        also drop log entries older than it, until ``optimize`` runs with another retention.
        Do not use a retention shorter than the longest write in progress: its data files are
        not listed until it commits.
        """
        if retention_hours < 0:
            raise ValueError("retention_hours must be 0 or more")
        results = []
        with self.location.errors("optimize"), self._locked():
            for name in TABLES:
                if self._handle(name) is None:
                    continue
                results.append(self._optimize_table(name, retention_hours))
            self._history.clear()
            self._files.clear()
        return OptimizeReport(retention_hours, tuple(results))

    def _optimize_table(self, name: str, retention_hours: float) -> TableOptimization:
        metrics = _commit(lambda: self._handle(name).optimize.compact())
        added = json.loads(metrics["filesAdded"]) if isinstance(metrics["filesAdded"], str) else {}
        removed = (
            json.loads(metrics["filesRemoved"]) if isinstance(metrics["filesRemoved"], str) else {}
        )
        dt = self._handle(name)
        fs, root = self._filesystem(name)
        # Vacuum's full listing: files neither listed by a version younger than the retention
        # nor younger than it themselves (removed by overwrites, or left by killed writers).
        # Only data files are deleted: other files in a table's folders (locks) stay.
        candidates = dt.vacuum(
            retention_hours=math.ceil(retention_hours),
            dry_run=True,
            enforce_retention_duration=False,
            full=True,
        )
        vacuumed = {}
        for relative in candidates:
            base = relative.rsplit("/", 1)[-1]
            if relative.startswith(("_", ".")) or not base.startswith("part-"):
                continue
            path = f"{root}/{relative}"
            vacuumed[relative] = _size(fs, path)
            fs.delete_file(path)
        log_removed = self._trim_log(name, fs, root, retention_hours)
        return TableOptimization(
            table=name,
            files_compacted=int(metrics.get("numFilesRemoved") or 0),
            files_written=int(metrics.get("numFilesAdded") or 0),
            bytes_compacted=int(removed.get("totalSize") or 0),
            bytes_written=int(added.get("totalSize") or 0),
            files_vacuumed=len(vacuumed),
            bytes_vacuumed=sum(vacuumed.values()),
            log_entries_removed=log_removed,
        )

    def _trim_log(self, name: str, fs, root: str, retention_hours: float) -> int:
        """Checkpoint, then delete log entries older than the retention; return how many."""
        from pyarrow.fs import FileSelector

        dt = self._handle(name)
        duration = f"interval {math.ceil(retention_hours * 60)} minutes"
        config = dt.metadata().configuration
        if config.get("delta.logRetentionDuration") != duration:
            _commit(
                lambda: self._handle(name).alter.set_table_properties(
                    {"delta.logRetentionDuration": duration}, raise_if_not_exists=False
                )
            )
            dt = self._handle(name)

        def entries() -> int:
            infos = fs.get_file_info(FileSelector(f"{root}/_delta_log", allow_not_found=True))
            return sum(1 for i in infos if i.base_name.endswith(".json"))

        before = entries()
        dt.create_checkpoint()
        dt.cleanup_metadata()
        self._history.pop(name, None)
        return max(0, before - entries())

    def sweep(self, older_than_s: float = SWEEP_GRACE_S) -> int:
        """Remove temporary files (``.*.tmp``) left by killed file writers, untouched for
        ``older_than_s`` seconds; return how many. Each process sweeps before its first write
        to a lake (``ct lake sweep`` does it on demand).

        Data files of killed table writers are unlisted, hence invisible; :meth:`optimize`
        deletes them once they are older than its retention."""
        if not self.location.is_local:
            return 0
        return remove_temporaries(self.root, older_than_s)

    # -- internals --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's handles are not ours
                self._handles.clear()
                self._files.clear()
                self._history.clear()
                self._pid = os.getpid()
            yield

    def _values(self, spec: TableSpec, keys: Mapping[str, str]) -> tuple[str, ...]:
        if set(keys) != set(spec.partitions):
            raise ValueError(
                f"table {spec.name} is partitioned by {spec.partitions}, got {sorted(keys)}"
            )
        return tuple(check_partition_value(c, keys[c]) for c in spec.partitions)

    def _handle(self, name: str):
        """The table's DeltaTable at its latest version (None if it does not exist)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError, TableNotFoundError

        cached = self._handles.get(name)
        if cached is not None:
            dt, loaded = cached
            try:
                dt.update_incremental()
            except (TableNotFoundError, OSError):
                del self._handles[name]  # removed (and maybe made again) under our feet
            except DeltaError as err:
                del self._handles[name]
                if not _is_damage(err):
                    raise
                raise self._damaged_log(name, err) from None
            else:
                # An incrementally updated handle replays every commit since it was loaded, so
                # its updates and writes slow down with each one (130 ms instead of 20 ms after
                # 600 commits); a fresh load starts from the newest checkpoint.
                if dt.version() - loaded < HANDLE_REFRESH_COMMITS:
                    return dt
        try:
            dt = DeltaTable(self.table_uri(name), storage_options=self.location.storage_options())
        except TableNotFoundError:
            return None
        except DeltaError as err:
            if not _is_damage(err):
                raise
            raise self._damaged_log(name, err) from None
        self._handles[name] = (dt, dt.version())
        return dt

    def _damaged_log(self, name: str, err: Exception) -> DamagedLog:
        return DamagedLog(
            f"table {name} of lake {self.location.describe()} has a damaged Delta log "
            f"({_first_line(err)}); `ct lake check` lists what is damaged"
        )

    def _at_version(self, name: str, version: int):
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError

        try:
            return DeltaTable(
                self.table_uri(name),
                version=version,
                storage_options=self.location.storage_options(),
            )
        except DeltaError as err:
            raise LakeError(
                f"version {version} of table {name} is no longer kept in lake "
                f"{self.location.describe()} (`ct lake optimize` removes versions older than "
                f"its retention): {str(err).splitlines()[0] if str(err) else err}"
            ) from None

    def _file_list(self, name: str, dt) -> list[DataFile]:
        """The data files of ``dt``'s version, parsed once per (table, version)."""
        key = (name, dt.version())
        cached = self._files.get(key)
        if cached is None:
            cached = _data_files(dt, table(name).partitions)
            if len(self._files) > 64:
                self._files.clear()
            self._files[key] = cached
        return cached

    def _table_history(self, name: str, dt) -> list[dict]:
        """``DeltaTable.history()`` of ``dt``'s table, read incrementally."""
        version = dt.version()
        seen = self._history.get(name)
        if seen is not None and seen[0] == version:
            return seen[1]
        if seen is not None and seen[0] < version:
            entries = dt.history(limit=version - seen[0]) + seen[1]
        else:
            entries = dt.history()
        entries = [e for e in entries if e.get("version") is not None]
        self._history[name] = (version, entries)
        return entries

    @staticmethod
    def _schema(dt) -> pa.Schema:
        return pa.schema(dt.schema().to_arrow())

    def _filesystem(self, name: str):
        """``(pyarrow filesystem, path)`` of table ``name``'s root."""
        fs, root = self.location.filesystem()
        return fs, f"{root}/{name}"

    def _dataset(self, name, schema: pa.Schema, files, partitions: Sequence[str]):
        import pyarrow.dataset as ds
        from pyarrow.fs import SubTreeFileSystem

        fs, root = self._filesystem(name)
        tree = SubTreeFileSystem(root, fs)
        fmt = ds.ParquetFileFormat()
        fragments = []
        for f in files:
            expression = None
            for column, value in zip(partitions, f.partition, strict=False):
                term = ds.field(column) == value
                expression = term if expression is None else expression & term
            fragments.append(
                fmt.make_fragment(f.path, filesystem=tree, partition_expression=expression)
                if expression is not None
                else fmt.make_fragment(f.path, filesystem=tree)
            )
        return ds.FileSystemDataset(fragments, schema, fmt, tree)


# -- helpers ----------------------------------------------------------------------------------


def parse_as_of(as_of: AsOf) -> int | datetime:
    """A lake version (int) or a UTC datetime from ``as_of`` (ValueError if it is neither)."""
    if isinstance(as_of, bool):
        raise ValueError(f"as_of {as_of!r} is not a lake version or an ISO-8601 timestamp")
    if isinstance(as_of, int):
        point = as_of
    elif isinstance(as_of, datetime):
        return as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    elif isinstance(as_of, str) and _DIGITS.match(as_of):
        point = int(as_of)
    else:
        try:
            stamp = datetime.fromisoformat(str(as_of).strip())
        except ValueError:
            raise ValueError(
                f"as_of {as_of!r} is not a lake version (1, 2, ...) or an ISO-8601 timestamp "
                "(2026-01-31T12:00:00Z)"
            ) from None
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    if point < 1:
        raise ValueError(f"lake versions start at 1, got {point}")
    return point


def _commit(attempt):
    """Run ``attempt`` (one commit) until it does not lose a commit race; return its result.

    Safe to repeat: each attempt reads the table's newest version and commits an overwrite
    confined by its predicate to one partition (or a compaction of files still listed), so a
    retry after a conflict with another writer's commit only re-applies this write on top of
    theirs; nothing of theirs is replaced. Attempts are bounded (:data:`COMMIT_ATTEMPTS`), with
    jittered exponential backoff so concurrent writers spread out.
    """
    from deltalake.exceptions import CommitFailedError, DeltaError

    pause = _BACKOFF_S[0]
    for attempt_no in range(COMMIT_ATTEMPTS):
        try:
            return attempt()
        except (CommitFailedError, DeltaError) as err:
            if not _is_conflict(err) or attempt_no == COMMIT_ATTEMPTS - 1:
                raise
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, _BACKOFF_S[1])
    raise AssertionError("unreachable")


def _is_conflict(err: Exception) -> bool:
    from deltalake.exceptions import CommitFailedError

    if isinstance(err, CommitFailedError):
        return True
    text = str(err).lower()
    return any(
        mark in text for mark in ("already exists", "version mismatch", "concurrent", "conflict")
    )


# Words of delta-rs errors about what a log holds, and about reaching it (which is no damage).
_DAMAGE_WORDS = ("json", "parse", "checkpoint", "parquet", "invalid log", "missing version")
_REACH_WORDS = ("s3", "http", "credential", "access", "connect", "timed out", "timeout", "dns")


def _is_damage(err: Exception) -> bool:
    """Whether a deltalake error loading a table says its log is damaged (not unreachable)."""
    text = str(err).lower()
    return (
        not isinstance(err, OSError)
        and any(word in text for word in _DAMAGE_WORDS)
        and not any(word in text for word in _REACH_WORDS)
    )


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _creation_note(spec: TableSpec, schema: pa.Schema) -> str:
    columns = ",".join(f.name for f in schema if f.name not in spec.partitions)
    return f"{spec.description} (data columns at creation: {columns})"


def _predicate(spec: TableSpec, values: tuple[str, ...]) -> str:
    # Values passed check_partition_value: no quote can end the SQL string literal.
    return " AND ".join(
        f"\"{column}\" = '{value}'" for column, value in zip(spec.partitions, values, strict=True)
    )


def _partition_parts(spec: TableSpec, values: tuple[str, ...]) -> list[str]:
    return [f"{c}={v}" for c, v in zip(spec.partitions, values, strict=True)]


def _view_schema(schema: pa.Schema, partitions: Sequence[str]) -> pa.Schema:
    """Data columns (in table order) then the partition columns as strings."""
    data = [f for f in schema if f.name not in partitions]
    return pa.schema(data + [pa.field(c, pa.string()) for c in partitions])


def _conform(data: pa.Table, schema: pa.Schema, keep_extra: bool) -> pa.Table:
    """``data`` with ``schema``'s columns and types (nulls for missing ones), then extras."""
    arrays, fields = [], []
    for f in schema:
        if f.name in data.column_names:
            arrays.append(data.column(f.name).cast(f.type))
        else:
            arrays.append(pa.nulls(data.num_rows, f.type))
        fields.append(f)
    if keep_extra:
        for f in data.schema:
            if f.name not in schema.names:
                arrays.append(data.column(f.name))
                fields.append(f)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _pad(data: pa.Table, table_schema: pa.Schema, partitions: Sequence[str]) -> pa.Table:
    """Nulls for the table's data columns that ``data`` lacks (written by a newer spec)."""
    for f in table_schema:
        if f.name not in partitions and f.name not in data.column_names:
            data = data.append_column(f, pa.nulls(data.num_rows, f.type))
    return data


def _data_files(dt, partitions: Sequence[str]) -> list[DataFile]:
    """The add actions of ``dt``'s version as :class:`DataFile` rows.

    Arrow to Python lists only: ``pa.table`` of a foreign object, ``to_numpy`` and Python
    scalars handed to pyarrow import pandas (0.3 s), which ``ct sql`` and ``ct lake`` otherwise
    never need."""
    actions = pa.RecordBatchReader.from_stream(dt.get_add_actions(flatten=False)).read_all()
    n = actions.num_rows
    if n == 0:
        return []
    names = actions.column_names
    paths = actions.column("path").to_pylist()
    sizes = actions.column("size_bytes").to_pylist()
    rows = actions.column("num_records").to_pylist() if "num_records" in names else [None] * n
    part = actions.column("partition").combine_chunks() if partitions else None
    values = [part.field(c).to_pylist() for c in partitions] if part is not None else []
    # Which columns have statistics in each file: one bit per column, so the (few) distinct
    # column sets are built once, not once per file.
    stat_columns: list[str] = []
    masks = [0] * n
    if "null_count" in names:
        counts = actions.column("null_count").combine_chunks()
        if pa.types.is_struct(counts.type):
            for bit, f in enumerate(counts.type):
                stat_columns.append(f.name)
                valid = counts.field(f.name).to_pylist()  # null: no statistics
                masks = [m | ((v is not None) << bit) for m, v in zip(masks, valid, strict=True)]
    sets = {
        m: frozenset(c for bit, c in enumerate(stat_columns) if m >> bit & 1) for m in set(masks)
    }
    return [
        DataFile(
            path=paths[i],
            partition=tuple(str(v[i]) for v in values),
            size=int(sizes[i]),
            rows=rows[i],
            columns=sets[masks[i]] if rows[i] is not None and stat_columns else None,
        )
        for i in range(n)
    ]


def _size(fs, path: str) -> int:
    try:
        return fs.get_file_info(path).size or 0
    except OSError:
        return 0
