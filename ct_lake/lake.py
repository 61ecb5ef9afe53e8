"""The lake on disk: hive-partitioned Parquet tables and per-partition files, written atomically.

Layout::

    <lake>/<table>/model=<m>/prompt=<p>/data.parquet      tables (see ct_lake.tables)
    <lake>/files/<kind>/model=<m>[/prompt=<p>]/<name>     graphs (.safetensors), plots, JSON

Every file is written to a temporary name in the same folder (``.<name>.<random>.tmp``) and
renamed into place, so a reader (or a process killed mid-write) never sees a partial file,
and re-materializing a partition replaces its file: rows are never duplicated. Readers glob
``data.parquet`` only, so leftover temporary files are invisible; :meth:`Lake.sweep` removes
them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ct_lake.keys import check_model_key, check_prompt_key
from ct_lake.tables import TableSpec, table

DATA_FILE = "data.parquet"
_CHECKS = {"model": check_model_key, "prompt": check_prompt_key}


class Lake:
    """A lake rooted at ``root`` (created on first write)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- paths ------------------------------------------------------------------------------

    def partition_dir(self, spec: TableSpec | str, **keys: str) -> Path:
        """``<lake>/<table>/k1=v1/k2=v2`` for the table's partition columns, in order."""
        spec = table(spec) if isinstance(spec, str) else spec
        if set(keys) != set(spec.partitions):
            raise ValueError(
                f"table {spec.name} is partitioned by {spec.partitions}, got {sorted(keys)}"
            )
        path = self.root / spec.name
        for column in spec.partitions:
            value = str(keys[column])
            check = _CHECKS.get(column)
            if check is not None:
                check(value)
            elif not value or "/" in value or value.startswith("."):
                raise ValueError(f"bad {column} partition value {value!r}")
            path = path / f"{column}={value}"
        return path

    def table_path(self, spec: TableSpec | str, **keys: str) -> Path:
        return self.partition_dir(spec, **keys) / DATA_FILE

    def table_glob(self, name: str) -> str:
        """A glob over every partition's file of table ``name`` (for DuckDB)."""
        spec = table(name)
        stars = "/".join(f"{column}=*" for column in spec.partitions)
        return str(self.root / name / stars / DATA_FILE)

    def file_path(self, kind: str, name: str, **keys: str) -> Path:
        """``<lake>/files/<kind>/model=<m>[/prompt=<p>]/<name>``."""
        path = self.root / "files" / kind
        for column in ("model", "prompt"):
            if column in keys:
                path = path / f"{column}={_CHECKS[column](keys[column])}"
        return path / name

    # -- writes -----------------------------------------------------------------------------

    def write_table(
        self, name: str, rows: Sequence[Mapping[str, Any]] | pa.Table, **keys: str
    ) -> tuple[Path, int]:
        """Replace one partition of table ``name`` with ``rows``; return (path, row count).

        ``rows`` is a list of dicts or an Arrow table with exactly the table's columns.
        """
        spec = table(name)
        if isinstance(rows, pa.Table):
            data = rows.select(spec.schema.names).cast(spec.schema)
        else:
            data = pa.Table.from_pylist(list(rows), schema=spec.schema)
        path = self.table_path(spec, **keys)
        with atomic_path(path) as tmp:
            pq.write_table(data, tmp, compression="zstd")
        return path, data.num_rows

    def write_bytes(self, path: Path, data: bytes) -> Path:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return path

    # -- reads ------------------------------------------------------------------------------

    def read_table(self, name: str, **keys: str) -> pa.Table:
        """One partition of table ``name`` (FileNotFoundError if it was never written)."""
        return pq.read_table(self.table_path(name, **keys))

    def has_partition(self, name: str, **keys: str) -> bool:
        return self.table_path(name, **keys).exists()

    def sweep(self) -> int:
        """Remove temporary files left by killed writers; return how many."""
        removed = 0
        if self.root.exists():
            for tmp in self.root.rglob(".*.tmp"):
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the body succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
