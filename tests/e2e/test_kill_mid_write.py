"""A writer killed mid-write never leaves partial data in the lake's Delta tables.

A subprocess rewrites one ``edges`` partition over and over through ``Lake.write_table`` (a
different seed each time, printing each seed once its commit returned). The test SIGKILLs it
at random moments, many times, on the same lake, and after each kill checks that the table is
readable at a committed version: exactly the rows of one seed the writer wrote completely
(the last one it reported, or the one after if the kill landed between the commit and the
print), through ``read_table``, the DuckDB catalog and the table's history, with no partial
rows. Data files of the killed write are on disk but listed by no version; a rerun completes.
A second test kills the very first write of a table: the partition then does not exist.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from ct_lake import catalog
from ct_lake.lake import Lake

MODEL, PROMPT = "tiny", "p_0123456789ab"
ROWS = 300_000  # per write: long enough (~0.1-0.3 s) for kills to land inside writes
KILLS = 12
START_TIMEOUT_S = 120  # interpreter start and imports on a loaded machine

WRITER = """
import sys
import numpy as np, pyarrow as pa
from ct_lake.lake import Lake

root, n, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lake = Lake(root)
print("ready", flush=True)
for seed in range(first, first + count):
    rng = np.random.default_rng(seed)
    lake.write_table("edges", pa.table({
        "target": rng.integers(0, 2**31 - 1, n, dtype=np.int32),
        "source": rng.integers(0, 2**31 - 1, n, dtype=np.int32),
        "weight": rng.standard_normal(n, dtype=np.float32),
    }), model=sys.argv[5], prompt=sys.argv[6])
    print("committed", seed, flush=True)
"""

CHECKSUM = (
    "SELECT count(*), sum(target::BIGINT), sum(source::BIGINT), "
    "bit_xor(hash(target, source, weight)) FROM {}"
)


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


def checksum_of(table: pa.Table) -> tuple:
    con = duckdb.connect()
    con.register("t", table)
    return con.execute(CHECKSUM.format("t")).fetchone()


def start_writer(root: Path, first: int, count: int, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(ROWS), str(first), str(count)]
            + [MODEL, PROMPT],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(log: Path, proc: subprocess.Popen, word: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while word not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the writer did not print {word!r}; its output:\n{log.read_text()}")
        time.sleep(0.005)


def kill(proc: subprocess.Popen) -> int:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.wait(timeout=30)


def committed(log: Path) -> list[int]:
    return [
        int(line.split()[1])
        for line in log.read_text().splitlines()
        if line.startswith("committed")
    ]


def unlisted_files(lake: Lake) -> set[str]:
    listed = {f.path for f in lake.snapshot("edges").files}
    folder = lake.root / "edges"
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("part-*.parquet")}
    return on_disk - listed


@pytest.mark.slow
def test_killed_writers_leave_a_committed_version(tmp_path):
    root = tmp_path / "lake"
    rng = random.Random(7)
    seed, last, kills_inside_writes = 1, None, 0
    for attempt in range(KILLS):
        log = tmp_path / f"writer{attempt}.log"
        proc = start_writer(root, seed, 1000, log)
        wait_for(log, proc, "committed" if attempt == 0 else "ready")
        time.sleep(rng.uniform(0.0, 0.6))
        orphans_before = unlisted_files(Lake(root))
        code = kill(proc)
        assert code == -signal.SIGKILL, f"the writer ended by itself ({code}):\n{log.read_text()}"
        done = committed(log)
        if done:
            last = done[-1]
        # The table reads as exactly one complete write: the last reported, or the one after
        # (killed after its commit, before its print).
        lake = Lake(root)  # a new process's view: no cached handle
        rows = lake.read_table("edges", model=MODEL, prompt=PROMPT)
        got = checksum_of(rows)
        candidates = {s: checksum_of(edges_table(ROWS, s)) for s in (last, last + 1)}
        assert got in candidates.values(), f"partial or unknown rows after kill {attempt}"
        current = next(s for s, c in candidates.items() if c == got)
        with catalog.connect(lake) as con:
            assert con.execute(CHECKSUM.format("edges")).fetchone() == got
        history = lake.history("edges")
        assert [c.version for c in history] == list(range(len(history)))
        assert lake.snapshot("edges").version == history[-1].version
        kills_inside_writes += len(unlisted_files(lake) - orphans_before) > 0
        seed, last = current + 1, current

    # Some kills landed inside a write: its data files are on disk, listed by no version.
    assert kills_inside_writes > 0
    # A rerun completes and its rows replace the partition.
    log = tmp_path / "rerun.log"
    proc = start_writer(root, seed, 1, log)
    assert proc.wait(timeout=120) == 0, log.read_text()
    lake = Lake(root)
    assert checksum_of(lake.read_table("edges", model=MODEL, prompt=PROMPT)) == checksum_of(
        edges_table(ROWS, seed)
    )
    # optimize removes what the killed writers left.
    lake.optimize(retention_hours=0)
    assert unlisted_files(lake) == set()
    assert lake.scan("edges").num_rows == ROWS


def test_a_killed_first_write_leaves_no_partition(tmp_path):
    root = tmp_path / "lake"
    log = tmp_path / "writer.log"
    proc = start_writer(root, 1, 1, log)
    wait_for(log, proc, "ready")
    kill(proc)
    assert committed(log) == [], "the first write finished before the kill"
    lake = Lake(root)
    assert not lake.has_partition("edges", model=MODEL, prompt=PROMPT)
    with pytest.raises(FileNotFoundError):
        lake.read_table("edges", model=MODEL, prompt=PROMPT)
    with catalog.connect(lake) as con:
        assert con.execute("SELECT count(*) FROM edges").fetchone() == (0,)
    # A rerun completes.
    proc = start_writer(root, 1, 1, tmp_path / "rerun.log")
    assert proc.wait(timeout=120) == 0
    assert Lake(root).read_table("edges", model=MODEL, prompt=PROMPT).num_rows == ROWS
