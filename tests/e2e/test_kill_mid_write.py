"""A writer killed mid-write never leaves partial data in the lake's Delta tables.

A subprocess rewrites one ``edges`` partition over and over through ``Lake.write_table`` (a
different seed each time, printing each seed once its commit returned). The test SIGKILLs it
at random moments, many times, on the same lake, and after each kill checks that the table is
readable at a committed version: exactly the rows of one seed the writer wrote completely
(the last one it reported, or the one after if the kill landed between the commit and the
print), through ``read_table``, the DuckDB catalog and the table's history, with no partial
rows (the writer prints ``writing`` before each write, so the test knows most kills landed
inside ``write_table``); a rerun completes, and ``optimize`` leaves only the current files.
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
    rows = pa.table({
        "target": rng.integers(0, 2**31 - 1, n, dtype=np.int32),
        "source": rng.integers(0, 2**31 - 1, n, dtype=np.int32),
        "weight": rng.standard_normal(n, dtype=np.float32),
    })
    print("writing", seed, flush=True)
    lake.write_table("edges", rows, model=sys.argv[5], prompt=sys.argv[6])
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


@pytest.mark.slow
def test_killed_writers_leave_a_committed_version(tmp_path):
    root = tmp_path / "lake"
    rng = random.Random(7)
    seed, last, kills_inside_writes = 1, None, 0
    for attempt in range(KILLS):
        log = tmp_path / f"writer{attempt}.log"
        proc = start_writer(root, seed, 1000, log)
        wait_for(log, proc, "committed" if attempt == 0 else "writing")
        time.sleep(rng.uniform(0.0, 0.4))
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
        lines = log.read_text().split("\n")
        last = [line for line in lines if line][-1]
        kills_inside_writes += last.startswith("writing")  # inside write_table (or just after)
        seed, last = current + 1, current

    # Most kills landed inside write_table (the rest while the next rows were generated).
    assert kills_inside_writes >= KILLS // 2
    # A rerun completes and its rows replace the partition.
    log = tmp_path / "rerun.log"
    proc = start_writer(root, seed, 1, log)
    assert proc.wait(timeout=120) == 0, log.read_text()
    lake = Lake(root)
    assert checksum_of(lake.read_table("edges", model=MODEL, prompt=PROMPT)) == checksum_of(
        edges_table(ROWS, seed)
    )
    # optimize leaves only the files of the current version (replaced and unlisted ones go).
    lake.optimize(retention_hours=0)
    files = {p.relative_to(root / "edges").as_posix() for p in (root / "edges").rglob("*.parquet")}
    assert files - {p for p in files if "_delta_log" in p} == {
        f.path for f in lake.snapshot("edges").files
    }
    assert lake.scan("edges").num_rows == ROWS


def test_a_killed_first_write_leaves_no_partition(tmp_path):
    root = tmp_path / "lake"
    log = tmp_path / "writer.log"
    proc = start_writer(root, 1, 1, log)
    wait_for(log, proc, "writing")  # inside the first write_table of the table
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
