"""A writer killed mid-write never leaves partial data in the lake.

A subprocess writes an ``edges`` partition of a few million rows through ``Lake.write_table``
(version A), then rewrites it with other rows (version B). The test SIGKILLs it while B is
being written (its temporary ``.data.parquet.*.tmp`` holds bytes but has not been renamed) and
checks that ``data.parquet`` is still exactly A, that DuckDB reading the table glob sees A and
nothing else, and that ``Lake.sweep`` removes the leftover temporary file. A second test kills
the very first write of a partition: the partition then does not exist.

If a write finishes before the kill lands (a very slow or very fast machine), the attempt is
repeated with twice the rows.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ct_lake.lake import DATA_FILE, Lake

MODEL, PROMPT = "tiny", "p_0123456789ab"
ROWS = (3_000_000, 6_000_000, 12_000_000)  # per attempt
SEED_A, SEED_B = 1, 2
START_TIMEOUT_S = 120  # interpreter start, imports and data generation on a loaded machine
PARTIAL_BYTES = 1 << 20  # kill once the temporary file holds row groups, not just the header

WRITER = """
import hashlib, sys
import numpy as np, pyarrow as pa
from ct_lake.lake import Lake

root, mode, n, seed_a, seed_b = sys.argv[1], sys.argv[2], int(sys.argv[3]), *map(int, sys.argv[4:6])

def edges(seed):
    rng = np.random.default_rng(seed)
    return pa.table({
        "target": rng.integers(0, 2**31 - 1, n, dtype=np.int32),
        "source": rng.integers(0, 2**31 - 1, n, dtype=np.int32),
        "weight": rng.standard_normal(n, dtype=np.float32),
    })

lake = Lake(root)
keys = dict(model=sys.argv[6], prompt=sys.argv[7])
a = edges(seed_a)
b = edges(seed_b) if mode == "rewrite" else None
path, rows = lake.write_table("edges", a, **keys)
print("A", rows, hashlib.sha256(path.read_bytes()).hexdigest(), flush=True)
if b is not None:
    lake.write_table("edges", b, **keys)
    print("B", flush=True)
"""


def edges_table(n: int, seed: int) -> pa.Table:
    """The rows the writer generates for ``seed`` (the same generator, in this process)."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "target": rng.integers(0, 2**31 - 1, n, dtype=np.int32),
            "source": rng.integers(0, 2**31 - 1, n, dtype=np.int32),
            "weight": rng.standard_normal(n, dtype=np.float32),
        }
    )


CHECKSUM = (
    "SELECT count(*), sum(target::BIGINT), sum(source::BIGINT), "
    "bit_xor(hash(target, source, weight)) FROM {}"
)


def checksum_of(table: pa.Table) -> tuple:
    con = duckdb.connect()
    con.register("t", table)
    return con.execute(CHECKSUM.format("t")).fetchone()


def checksum_of_glob(lake: Lake) -> tuple:
    source = f"read_parquet('{lake.table_glob('edges')}', hive_partitioning = true)"
    return duckdb.connect().execute(CHECKSUM.format(source)).fetchone()


def temp_files(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith(f".{DATA_FILE}."))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kill_mid_write(lake: Lake, mode: str, n: int, log: Path) -> tuple[int, Path | None, str]:
    """Start the writer and SIGKILL it once the write under test has written some row groups
    to its temporary file. Returns (exit code, the temporary file if the kill landed
    mid-write, the writer's output).

    For ``rewrite`` the write under test is B: its temporary file is the one that shows up
    after ``data.parquet`` (A) exists, as only the writer writes this partition.
    """
    folder = lake.partition_dir("edges", model=MODEL, prompt=PROMPT)
    argv = [str(lake.root), mode, str(n), str(SEED_A), str(SEED_B), MODEL, PROMPT]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        caught = None
        while caught is None and proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the writer did not start the {'second' if mode == 'rewrite' else 'first'} "
                    f"write within {START_TIMEOUT_S}s; its output:\n{log.read_text()}"
                )
            ready = mode == "first" or (folder / DATA_FILE).exists()
            for tmp in temp_files(folder) if ready else ():
                try:
                    if tmp.stat().st_size >= PARTIAL_BYTES:
                        caught = tmp
                except FileNotFoundError:  # renamed meanwhile: too late for this one
                    pass
            if caught is None:
                time.sleep(0.002)
        if caught is not None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    landed = caught is not None and proc.returncode == -signal.SIGKILL and caught.exists()
    return proc.returncode, caught if landed else None, log.read_text()


def test_killed_rewrite_leaves_version_a(tmp_path):
    for attempt, n in enumerate(ROWS):
        lake = Lake(tmp_path / f"lake{attempt}")
        code, tmp, output = kill_mid_write(lake, "rewrite", n, tmp_path / f"writer{attempt}.log")
        if tmp is not None:
            break
        assert code in (0, -signal.SIGKILL), f"the writer failed (exit {code}):\n{output}"
    else:
        pytest.fail(f"every write of B finished before the kill landed (rows {ROWS})")

    path = lake.table_path("edges", model=MODEL, prompt=PROMPT)
    [line] = [line.split() for line in output.splitlines() if line.startswith("A ")]
    assert "B" not in output.splitlines(), "the writer reported B written, yet was killed"
    # data.parquet is byte for byte the file A's write produced...
    assert sha256(path) == line[2]
    # ...readable, with A's rows: the same checksum as A generated again in this process.
    a, b = edges_table(n, SEED_A), edges_table(n, SEED_B)
    assert pq.read_table(path).num_rows == n == int(line[1])
    assert checksum_of(lake.read_table("edges", model=MODEL, prompt=PROMPT)) == checksum_of(a)
    assert checksum_of(a) != checksum_of(b)

    # The killed write left partial bytes of B (not a readable Parquet file) next to it...
    assert tmp.parent == path.parent and tmp.stat().st_size >= PARTIAL_BYTES
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(tmp)
    # ...which DuckDB reading the table glob does not see: exactly A's rows, from data.parquet.
    assert checksum_of_glob(lake) == checksum_of(a)
    glob = lake.table_glob("edges")
    files = duckdb.sql(
        f"SELECT DISTINCT filename FROM read_parquet('{glob}', filename = true)"
    ).fetchall()
    assert [Path(f) for (f,) in files] == [path]

    assert lake.sweep() == 1
    assert temp_files(path.parent) == [] and not tmp.exists()
    assert sha256(path) == line[2]  # sweeping leaves the data alone


def test_killed_first_write_leaves_no_partition(tmp_path):
    for attempt, n in enumerate(ROWS):
        lake = Lake(tmp_path / f"lake{attempt}")
        code, tmp, output = kill_mid_write(lake, "first", n, tmp_path / f"writer{attempt}.log")
        if tmp is not None:
            break
        assert code in (0, -signal.SIGKILL), f"the writer failed (exit {code}):\n{output}"
    else:
        pytest.fail(f"every first write finished before the kill landed (rows {ROWS})")

    assert not any(line.startswith("A ") for line in output.splitlines()), output
    path = lake.table_path("edges", model=MODEL, prompt=PROMPT)
    assert not path.exists()
    assert not lake.has_partition("edges", model=MODEL, prompt=PROMPT)
    with pytest.raises(FileNotFoundError):
        lake.read_table("edges", model=MODEL, prompt=PROMPT)
    with pytest.raises(duckdb.IOException, match="No files found"):
        checksum_of_glob(lake)
    assert tmp.stat().st_size >= PARTIAL_BYTES

    assert lake.sweep() == 1
    assert list(path.parent.iterdir()) == []
