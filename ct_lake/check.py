"""Find the damaged files of a lake, and set them aside (``ct lake check [--quarantine]``).

What is checked, table by table (:data:`ct_lake.tables.TABLES`): every entry of the Delta log
(``_delta_log/<version>.json``: one JSON action per line) and checkpoint parses, the table
loads, and every data file its current version lists exists and reads in full (each column of
each row group: a footer that reads is not enough, a damaged page shows only when read).

**Quarantine** moves a damaged file under ``<lake>/_quarantine/<UTC time>/`` (same relative
path; nothing is deleted) and makes the table readable again:

* a damaged *data file*: its whole partition is removed from the table in one Delta commit
  (an overwrite of that partition with nothing), then the file is moved. The partition, not
  only the file: a partition is written whole (:meth:`ct_lake.lake.Lake.write_table`), and one
  without one of its files would be wrong without saying so (a graph with part of its edges).
  Removed, it reads as never written, so the next ``ct materialize`` writes it again, and the
  table's other partitions keep every commit made since. (Rolling the table back to a version
  before the file would instead undo every later write of every partition.) The partition's
  other files stay where they are until ``ct lake optimize`` deletes unused files.
* damaged *log entries* that are the table's newest: moved, which rolls the table back to its
  newest whole version (the writes they recorded are lost; their partitions are written again
  by the next run). A damaged entry followed by good ones, or a damaged checkpoint, cannot be
  moved without breaking the versions after it: it is reported, not moved.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ct_lake.storage import DamagedLog, LakeError
from ct_lake.tables import TABLES

QUARANTINE = "_quarantine"
LOG = "_delta_log"


@dataclass(frozen=True)
class Damage:
    """One damaged file: ``path`` is relative to the lake's root."""

    table: str
    kind: str  # "data file" | "log entry" | "log"
    path: str
    reason: str
    partition: dict[str, str] | None = None  # data files: the partition holding it
    repairable: bool = True  # whether quarantine can set it aside


@dataclass(frozen=True)
class Quarantined:
    damage: Damage
    moved_to: str | None  # relative to the lake's root (None: nothing to move)
    action: str  # what was done to the table


def check(lake, tables: list[str] | None = None) -> list[Damage]:
    """Every damaged file of ``lake`` (a :class:`~ct_lake.lake.Lake`), table by table."""
    found: list[Damage] = []
    for name in tables or list(TABLES):
        log = _log_damage(lake, name)
        found += log
        try:
            snap = lake.snapshot(name)
        except DamagedLog as err:
            if not log:
                found.append(Damage(name, "log", f"{name}/{LOG}", _reason(err), repairable=False))
            continue
        fs, root = lake._filesystem(name)
        spec = TABLES[name]
        for f in snap.files:
            reason = _unreadable(fs, f"{root}/{f.path}")
            if reason is not None:
                partition = dict(zip(spec.partitions, f.partition, strict=True))
                found.append(Damage(name, "data file", f"{name}/{f.path}", reason, partition))
    return found


def _log_damage(lake, name: str) -> list[Damage]:
    """The log entries and checkpoints of table ``name`` that do not parse."""
    import pyarrow.parquet as pq
    from pyarrow.fs import FileSelector, FileType

    fs, root = lake._filesystem(name)
    infos = fs.get_file_info(FileSelector(f"{root}/{LOG}", allow_not_found=True))
    entries = sorted(
        (i for i in infos if i.type == FileType.File and _version(i.base_name) is not None),
        key=lambda i: _version(i.base_name),
    )
    damaged = []
    for info in entries:
        try:
            with fs.open_input_stream(info.path) as handle:
                data = handle.read()
            if info.base_name.endswith(".json"):
                for line in data.decode("utf-8").splitlines():
                    if line.strip() and not isinstance(json.loads(line), dict):
                        raise ValueError("a line is not a JSON object")
            else:
                with fs.open_input_file(info.path) as handle:
                    pq.read_table(handle)
        except (ValueError, OSError) as err:  # UnicodeDecodeError and ArrowInvalid included
            damaged.append(
                Damage(name, "log entry", f"{name}/{LOG}/{info.base_name}", _reason(err))
            )
    # Only the newest entries can be set aside (the table rolls back to the version before).
    versions = [_version(i.base_name) for i in entries if i.base_name.endswith(".json")]
    newest_good = max(
        (v for v in versions if f"{name}/{LOG}/{v:020d}.json" not in {d.path for d in damaged}),
        default=-1,
    )
    # A damaged checkpoint is the log's summary: moving it would not bring back what it sums.
    return [
        d
        if d.path.endswith(".json") and (_version(d.path.rsplit("/", 1)[-1]) or 0) > newest_good
        else _unrepairable(d)
        for d in damaged
    ]


def _unrepairable(d: Damage) -> Damage:
    return Damage(d.table, d.kind, d.path, d.reason, d.partition, repairable=False)


def _version(base_name: str) -> int | None:
    head = base_name.split(".", 1)[0]
    if len(head) == 20 and head.isdigit():
        return int(head)
    return None


def _unreadable(fs, path: str) -> str | None:
    """Why the Parquet file at ``path`` cannot be read in full (None: it can)."""
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(path) as handle:
            reader = pq.ParquetFile(handle)
            for group in range(reader.num_row_groups):
                reader.read_row_group(group)
    except Exception as err:  # whatever a damaged file raises: ArrowInvalid, OSError, ...
        return _reason(err)
    return None


def _reason(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def quarantine(lake, damages: list[Damage]) -> list[Quarantined]:
    """Set ``damages`` aside (see the module docstring); what was done, in order. Damage that
    cannot be repaired is left alone (not in the result)."""
    if not lake.location.is_local:
        raise LakeError(
            f"quarantine works on local lakes only; lake {lake.location.describe()} is not one"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    done = []
    for damage in damages:
        if not damage.repairable:
            continue
        if damage.kind == "data file":
            action = _remove_partition(lake, damage)
        else:
            action = "table rolled back to its newest whole version"
        target = f"{QUARANTINE}/{stamp}/{damage.path}"
        moved = _move(lake.root, damage.path, target)
        done.append(Quarantined(damage, target if moved else None, action))
    lake._handles.clear()
    lake._files.clear()
    lake._history.clear()
    return done


def _remove_partition(lake, damage: Damage) -> str:
    """Remove the damaged file's partition from its table in one commit (the file stays)."""
    from deltalake import CommitProperties

    from ct_lake.lake import PARTITION_KEY, _commit

    spec = TABLES[damage.table]
    values = damage.partition or {}
    where = "/".join(f"{c}={values[c]}" for c in spec.partitions)

    def attempt():
        dt = lake._handle(damage.table)
        dt.create_write_transaction(
            [],
            mode="overwrite",
            schema=lake._schema(dt),
            partition_by=list(spec.partitions),
            partition_filters=[(c, "=", values[c]) for c in spec.partitions],
            commit_properties=CommitProperties(custom_metadata={PARTITION_KEY: where}),
        )

    with lake._locked():
        _commit(attempt)
    return f"partition {where} removed from table {damage.table} (written again by the next run)"


def _move(root: Path, relative: str, target: str) -> bool:
    source = root / relative
    if not source.exists():
        return False
    destination = root / target
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, destination)
    except OSError:  # another file system: copy, then remove
        shutil.copy2(source, destination)
        source.unlink()
    return True
