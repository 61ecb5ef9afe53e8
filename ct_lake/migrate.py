"""Convert a lake of the previous format (hive-partitioned Parquet) into a Delta lake.

The previous format kept one Parquet file per table partition, the partition columns only in
the path, in the order of :attr:`ct_lake.tables.TableSpec.partitions`::

    <old>/<table>/model=<m>/prompt=<p>/data.parquet        (score_history: .../run=<id>/)
    <old>/files/<kind>/model=<m>[/prompt=<p>]/<name>       graphs, plots, viewer files
    <old>/files/transcoders/model=<m>/set/...              a folder (a transcoder set)

:func:`migrate` first scans the old lake without writing anything (every table partition's
Parquet footer is read, so an unreadable file stops it before the new lake is touched), then
writes each partition into the new lake with :meth:`ct_lake.lake.Lake.write_table` (one
atomic commit per partition, one partition in memory at a time), copies every file with
:meth:`~ct_lake.files.LakeFiles.write_file` / :meth:`~ct_lake.files.LakeFiles.write_tree`
(byte for byte), and finally checks the row count of every partition and the size of every
file in the new lake. Rows are copied as they are (absolute paths recorded in them, such as
``transcoder_cache.path``, are data and stay unchanged).

Nothing is dropped silently: an entry of the old lake that is not a known table partition or
file (an unknown table, a folder that is not ``<column>=<value>``, a partition value or file
name the new lake does not accept (:func:`ct_lake.lake.check_partition_value`,
:class:`~ct_lake.files.LakeFiles`), a file outside that layout) is listed in
:attr:`MigrationReport.unknown`, and a column of an old file that its table no longer has in
:attr:`MigrationReport.dropped_columns`. Only the old writers' own
leftovers are skipped, and listed in :attr:`MigrationReport.ignored`: their lock files
(``.lock``) and the temporary files of killed writes (``.<name>.<random>.tmp``, never a
complete file).

The new lake must be apart from the old one, and empty (or absent) unless ``force``: then
each migrated partition replaces the same partition of the new lake and every other partition
is left as it is, so re-running a migration gives the same lake. A migration that stops
half-way (a data page that cannot be read, the storage failing) says how far it got; the
partitions written so far are committed, and running it again with ``force`` finishes it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ct_lake.lake import Lake, check_partition_value
from ct_lake.storage import LakeError, Location
from ct_lake.tables import TABLES, TableSpec

OLD_DATA_FILE = "data.parquet"  # the previous format's one file per partition
FILES_DIR = "files"
FILE_KEYS = ("model", "prompt")  # the key folders of files/<kind>/, in path order
# what the previous writers leave behind: their lock files and killed writes' temporary files
_LEFTOVER = re.compile(r"^(\.lock|\..+\.[A-Za-z0-9_]+\.tmp)$")


class MigrationError(LakeError):
    """The migration is refused or failed: the message (one line) says why and where."""


@dataclass(frozen=True)
class OldPartition:
    """One table partition of the old lake: its keys (column -> value, in path order), its
    Parquet file, its row count (from the footer) and how its columns differ from the table's
    schema."""

    table: str
    keys: dict[str, str]
    path: Path
    rows: int
    extra_columns: tuple[str, ...] = ()
    missing_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class OldFile:
    """A file (or a folder, ``is_tree``) of ``<old>/files/<kind>/<keys>/<name>``."""

    kind: str
    name: str
    keys: dict[str, str]
    path: Path
    size: int  # bytes (a folder: the sum of its files)
    is_tree: bool = False


@dataclass
class OldLake:
    """What :func:`scan_old` found: partitions and files to migrate, and what it will not
    migrate (``unknown``: relative path and reason) or skips as writer leftovers (``ignored``)."""

    root: Path
    partitions: list[OldPartition] = field(default_factory=list)
    files: list[OldFile] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def rows(self, table: str) -> int:
        return sum(p.rows for p in self.partitions if p.table == table)


@dataclass(frozen=True)
class TableSummary:
    """One migrated table: partitions and rows written (equal in the old and new lake)."""

    name: str
    partitions: int
    rows: int


@dataclass
class MigrationReport:
    """The result of :func:`migrate`; every count was checked against the new lake."""

    old: Path
    new: Location
    tables: list[TableSummary]
    files: int  # files copied (a folder counts each of its files)
    file_bytes: int
    unknown: list[str]  # entries of the old lake that were not migrated, with the reason
    dropped_columns: list[str]  # "<table>.<column> (<n> partitions)": not in the table any more
    added_columns: list[str]  # "<table>.<column> (<n> partitions)": missing there, now null
    ignored: list[str]  # old writers' lock and temporary files, skipped

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def complete(self) -> bool:
        """True when every row, column and file of the old lake is in the new one."""
        return not self.unknown and not self.dropped_columns


# -- the old lake ---------------------------------------------------------------------------


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _is_delta(path: Path) -> bool:
    return (path / "_delta_log").is_dir()


def _read_footer(path: Path, root: Path) -> pq.FileMetaData:
    try:
        return pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MigrationError(
            f"cannot read {path} ({_rel(root, path)}): {first}; nothing was written"
        ) from None


def _scan_table(old: OldLake, spec: TableSpec, folder: Path) -> None:
    """Every ``<col>=<value>/.../data.parquet`` under ``folder``, for ``spec``'s columns."""

    def walk(path: Path, depth: int, keys: dict[str, str]) -> None:
        for entry in sorted(path.iterdir()):
            rel = _rel(old.root, entry)
            if _LEFTOVER.match(entry.name):
                old.ignored.append(rel)
                continue
            if depth == len(spec.partitions):
                if entry.name == OLD_DATA_FILE and entry.is_file():
                    _add_partition(old, spec, entry, keys)
                else:
                    old.unknown.append(f"{rel} (not {OLD_DATA_FILE})")
                continue
            column = spec.partitions[depth]
            prefix = f"{column}="
            if not entry.is_dir() or not entry.name.startswith(prefix):
                old.unknown.append(f"{rel} (expected a folder {column}=<value>)")
                continue
            try:
                value = check_partition_value(column, entry.name[len(prefix) :])
            except ValueError as err:
                old.unknown.append(f"{rel} ({err})")
                continue
            walk(entry, depth + 1, {**keys, column: value})

    walk(folder, 0, {})


def _add_partition(old: OldLake, spec: TableSpec, path: Path, keys: dict[str, str]) -> None:
    meta = _read_footer(path, old.root)
    names = meta.schema.to_arrow_schema().names
    wanted = spec.schema.names
    old.partitions.append(
        OldPartition(
            table=spec.name,
            keys=dict(keys),
            path=path,
            rows=meta.num_rows,
            extra_columns=tuple(n for n in names if n not in wanted),
            missing_columns=tuple(n for n in wanted if n not in names),
        )
    )


def _check_readable(root: Path, *paths: Path) -> None:
    for path in paths:
        if not os.access(path, os.R_OK):
            raise MigrationError(
                f"cannot read {path} ({_rel(root, path)}): permission denied; nothing was written"
            )


def _tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _scan_files(old: OldLake, folder: Path) -> None:
    """``files/<kind>/[model=<m>/[prompt=<p>/]]<name>``: a file, or a folder copied whole."""
    for kind_dir in sorted(folder.iterdir()):
        rel = _rel(old.root, kind_dir)
        if _LEFTOVER.match(kind_dir.name):
            old.ignored.append(rel)
        elif not kind_dir.is_dir():
            old.unknown.append(f"{rel} (expected a folder files/<kind>)")
        else:
            _scan_kind(old, kind_dir.name, kind_dir, 0, {})


def _scan_kind(old: OldLake, kind: str, path: Path, depth: int, keys: dict[str, str]) -> None:
    for entry in sorted(path.iterdir()):
        rel = _rel(old.root, entry)
        if _LEFTOVER.match(entry.name):
            old.ignored.append(rel)
            continue
        if entry.name.startswith("."):
            old.unknown.append(f"{rel} (a hidden name; the lake stores none)")
            continue
        column, sep, value = entry.name.partition("=")
        if entry.is_dir() and sep and depth < len(FILE_KEYS) and column == FILE_KEYS[depth]:
            try:
                keys_here = {**keys, column: check_partition_value(column, value)}
            except ValueError as err:
                old.unknown.append(f"{rel} ({err})")
                continue
            _scan_kind(old, kind, entry, depth + 1, keys_here)
        elif not keys:
            old.unknown.append(f"{rel} (expected a folder model=<model> under files/{kind})")
        elif entry.is_dir():
            _check_readable(old.root, *(p for p in entry.rglob("*") if p.is_file()))
            old.files.append(OldFile(kind, entry.name, keys, entry, _tree_size(entry), True))
        elif entry.is_file():
            _check_readable(old.root, entry)
            old.files.append(OldFile(kind, entry.name, keys, entry, entry.stat().st_size))
        else:
            old.unknown.append(f"{rel} (not a file or folder)")


def scan_old(old: str | Path) -> OldLake:
    """The partitions and files of the previous-format lake at ``old``; writes nothing.

    Raises :class:`MigrationError` when ``old`` is missing, is a Delta lake already, holds no
    table of the previous format, or has a Parquet file whose footer cannot be read.
    """
    if str(old).strip().lower().startswith("s3://"):
        raise MigrationError(
            f"the old lake {old} must be a local folder: the previous format was never on S3"
        )
    root = Path(old).expanduser()
    if not root.exists():
        raise MigrationError(f"no old lake at {root}: the folder does not exist")
    if not root.is_dir():
        raise MigrationError(f"no old lake at {root}: it is a file, not a folder")
    root = root.resolve()
    delta = [name for name in TABLES if _is_delta(root / name)]
    if delta:
        raise MigrationError(
            f"{root} is already a Delta lake (table {delta[0]} has a _delta_log), "
            "not a lake of the previous hive-Parquet format"
        )
    found = OldLake(root)
    for entry in sorted(root.iterdir()):
        rel = _rel(root, entry)
        if entry.name in TABLES and entry.is_dir():
            _scan_table(found, TABLES[entry.name], entry)
        elif entry.name == FILES_DIR and entry.is_dir():
            _scan_files(found, entry)
        elif _LEFTOVER.match(entry.name):
            found.ignored.append(rel)
        else:
            found.unknown.append(f"{rel} (not a table of ct_lake.tables)")
    if not found.partitions:
        layout = "<table>/model=<m>/prompt=<p>/data.parquet"
        raise MigrationError(
            f"{root} is not a lake of the previous format: no table partition "
            f"({layout}, tables from ct_lake.tables) in it"
        )
    return found


# -- the new lake ---------------------------------------------------------------------------


def _holds_data(location: Location) -> bool:
    """Whether anything is stored at ``location`` (a file, a folder entry, an object)."""
    if location.is_local:
        path = location.local_path
        if path.is_file():
            raise MigrationError(f"the new lake {path} is a file, not a folder")
        return path.is_dir() and next(path.iterdir(), None) is not None
    from pyarrow import fs

    with location.errors("list"):
        filesystem, path = location.filesystem()
        selector = fs.FileSelector(path, allow_not_found=True, recursive=False)
        return bool(filesystem.get_file_info(selector))


def _overlaps(old: Path, new: Location) -> bool:
    if not new.is_local:
        return False
    path = new.local_path.resolve()
    return path == old or old in path.parents or path in old.parents


def _read_partition(part: OldPartition, spec: TableSpec, root: Path) -> pa.Table:
    """The old partition's rows with exactly the table's columns (missing ones null)."""
    try:
        data = pq.read_table(part.path)
    except (OSError, pa.ArrowException) as err:
        raise MigrationError(f"cannot read {part.path}: {str(err).splitlines()[0]}") from None
    columns = []
    for f in spec.schema:
        if f.name in data.column_names:
            column = data.column(f.name)
            try:
                columns.append(column.cast(f.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise MigrationError(
                    f"{_rel(root, part.path)}: column {f.name} ({column.type}) does not convert "
                    f"to {f.type} of table {spec.name}: {str(err).splitlines()[0]}"
                ) from None
        else:
            columns.append(pa.nulls(data.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=spec.schema)


def _column_notes(partitions: list[OldPartition], attribute: str) -> list[str]:
    counts: dict[str, int] = {}
    for part in partitions:
        for column in getattr(part, attribute):
            name = f"{part.table}.{column}"
            counts[name] = counts.get(name, 0) + 1
    return [f"{name} ({n} partition{'s' if n > 1 else ''})" for name, n in sorted(counts.items())]


def _tree_files(folder: Path) -> Iterator[tuple[str, int]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path.relative_to(folder).as_posix(), path.stat().st_size


def _stored_sizes(lake: Lake, file: OldFile) -> dict[str, int]:
    """``relative name -> size`` of what the new lake stores for ``file`` (a folder: each of
    its files, relative to it; a file: ``{"": size}``; nothing stored: ``{}``)."""
    from pyarrow import fs

    filesystem, path = Location.parse(lake.file_uri(file.kind, file.name, **file.keys)).filesystem()
    if not file.is_tree:
        info = filesystem.get_file_info(path)
        return {"": info.size} if info.type == fs.FileType.File else {}
    selector = fs.FileSelector(path, recursive=True, allow_not_found=True)
    return {
        info.path[len(path) + 1 :]: info.size
        for info in filesystem.get_file_info(selector)
        if info.type == fs.FileType.File
    }


def _verify(lake: Lake, old: OldLake) -> None:
    for part in old.partitions:
        with lake.location.errors("read"):
            rows = lake.read_table(part.table, **part.keys).num_rows
        if rows != part.rows:
            raise MigrationError(
                f"verification failed: {part.table} {_keys_text(part.keys)} has {rows} rows "
                f"in the new lake, {part.rows} in the old one"
            )
    for file in old.files:
        expected = dict(_tree_files(file.path)) if file.is_tree else {"": file.size}
        with lake.location.errors("read"):
            stored = _stored_sizes(lake, file)
        # a stored folder may hold the lake's own bookkeeping (e.g. an S3 tree's manifest)
        for rel, size in expected.items():
            if stored.get(rel) != size:
                where = "/".join(
                    ["files", file.kind, _keys_path(file.keys), file.name] + ([rel] if rel else [])
                )
                state = "missing" if rel not in stored else f"{stored[rel]} bytes"
                raise MigrationError(
                    f"verification failed: {where} is {state} in the new lake, {size} bytes "
                    "in the old one"
                )


def _keys_text(keys: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in keys.items())


def _keys_path(keys: dict[str, str]) -> str:
    return "/".join(f"{k}={v}" for k, v in keys.items())


def _check_addresses(lake: Lake, old: OldLake) -> None:
    """Move the files whose kind or name the new lake does not accept to ``old.unknown``
    (the lake's own checks, before anything is written)."""
    kept = []
    for file in old.files:
        try:
            lake.file_uri(file.kind, file.name, **file.keys)
        except ValueError as err:
            old.unknown.append(f"{_rel(old.root, file.path)} ({err})")
        else:
            kept.append(file)
    old.files = kept


def _copy(lake: Lake, old: OldLake, say: Callable[[str], None]) -> list[TableSummary]:
    """Write every partition (one commit each) and file of ``old`` into ``lake``."""
    done, total = 0, len(old.partitions) + len(old.files)
    summaries = []
    try:
        for name, spec in TABLES.items():
            parts = [p for p in old.partitions if p.table == name]
            if not parts:
                continue
            for part in parts:
                data = _read_partition(part, spec, old.root)
                lake.write_table(name, data, **part.keys)
                del data  # one partition in memory at a time
                done += 1
            summaries.append(TableSummary(name, len(parts), old.rows(name)))
            say(f"{name}: {len(parts)} partitions, {old.rows(name)} rows")
        for kind in sorted({f.kind for f in old.files}):
            files = [f for f in old.files if f.kind == kind]
            for file in files:
                if file.is_tree:
                    lake.write_tree(file.kind, file.name, file.path, **file.keys)
                else:
                    lake.write_file(file.kind, file.name, file.path, **file.keys)
                done += 1
            say(f"files/{kind}: {sum(_count(f) for f in files)} files")
    except (LakeError, OSError, ValueError) as err:
        text = str(err).strip()
        first = text.splitlines()[0] if text else type(err).__name__
        raise MigrationError(
            f"{first} ({done} of {total} partitions and files were copied; run the migration "
            "again with --force (force=True) to finish it)"
        ) from None
    return summaries


def migrate(
    old: str | Path,
    new: str | Path | Location,
    *,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> MigrationReport:
    """Copy every table partition and file of the previous-format lake ``old`` into the Delta
    lake ``new`` (a local path or ``s3://bucket/prefix``), then check the copy.

    ``old`` is never modified. ``new`` must be empty or absent unless ``force`` (see the module
    doc). ``progress`` receives one line per table and per file kind as they are done. Raises
    :class:`MigrationError` (one line) when the migration is refused or a file is unreadable,
    and :class:`ct_lake.storage.LakeError` when the new lake cannot be reached.
    """
    say = progress or (lambda line: None)
    found = scan_old(old)
    location = Location.parse(new)
    if _overlaps(found.root, location):
        raise MigrationError(
            f"the new lake {location.uri} overlaps the old one {found.root}: use another folder"
        )
    if not force and _holds_data(location):
        raise MigrationError(
            f"the new lake {location.describe()} already holds data: migrate into an empty "
            "location, or use --force (force=True) to replace the migrated partitions there"
        )
    lake = Lake(location)
    _check_addresses(lake, found)
    summaries = _copy(lake, found, say)
    _verify(lake, found)
    return MigrationReport(
        old=found.root,
        new=location,
        tables=summaries,
        files=sum(_count(f) for f in found.files),
        file_bytes=sum(f.size for f in found.files),
        unknown=list(found.unknown),
        dropped_columns=_column_notes(found.partitions, "extra_columns"),
        added_columns=_column_notes(found.partitions, "missing_columns"),
        ignored=list(found.ignored),
    )


def _count(file: OldFile) -> int:
    return sum(1 for _ in _tree_files(file.path)) if file.is_tree else 1
