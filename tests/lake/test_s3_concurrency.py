"""Several processes commit to one Delta table on S3 at once: no commit is lost.

Each writer replaces its own partition several times (one Delta commit per write) while the
others do the same. Safety rests on the store refusing a second ``PUT If-None-Match: *`` of the
same ``_delta_log/<version>.json``: the loser of a race re-reads the log and commits on top.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from pyarrow.fs import SubTreeFileSystem

from ct_lake.storage import Location

REPO = Path(__file__).resolve().parents[2]
WRITERS = 4
ROUNDS = 4

_WRITER = """
import sys
import time

import pyarrow as pa
from deltalake import write_deltalake

from ct_lake.storage import Location

uri, model, rounds, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
location = Location.parse(uri)
options = location.storage_options()
time.sleep(max(0.0, start - time.time()))  # all writers begin together
for r in range(rounds):
    rows = pa.table({"model": [model] * 3, "round": [r] * 3, "i": [0, 1, 2]})
    write_deltalake(
        location.uri,
        rows,
        mode="overwrite",
        predicate=f"model = '{model}'",
        partition_by=["model"],
        storage_options=options,
    )
print("done")
"""


def test_store_refuses_a_second_create_of_the_same_key(s3_uri, s3_server):
    """What the safety rests on: the server honours If-None-Match (as S3 does)."""
    location = Location.parse(s3_uri)
    client = s3_server.s3()
    key = f"{location.key}/_delta_log/00000000000000000001.json"
    client.put_object(Bucket=location.bucket, Key=key, Body=b"first", IfNoneMatch="*")
    with pytest.raises(client.exceptions.ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=location.bucket, Key=key, Body=b"second", IfNoneMatch="*")
    assert client.get_object(Bucket=location.bucket, Key=key)["Body"].read() == b"first"


def test_one_create_wins_under_contention(s3_uri, s3_server):
    """Many clients racing to create the same keys: exactly one wins each key."""
    from collections import Counter
    from concurrent.futures import ThreadPoolExecutor

    location = Location.parse(s3_uri)
    clients = [s3_server.s3() for _ in range(6)]

    def create(attempt: tuple[int, int]) -> int | None:
        client, key = attempt
        try:
            clients[client].put_object(
                Bucket=location.bucket, Key=f"{location.key}/k{key}", Body=b"x", IfNoneMatch="*"
            )
        except clients[client].exceptions.ClientError:
            return None
        return key

    attempts = [(client, key) for key in range(60) for client in range(len(clients))]
    with ThreadPoolExecutor(len(clients)) as pool:
        wins = Counter(key for key in pool.map(create, attempts) if key is not None)
    assert wins == Counter(range(60))


def test_concurrent_writers_lose_no_commit(s3_uri):
    table_uri = Location.parse(s3_uri).child("scores").uri
    options = Location.parse(table_uri).storage_options()
    seed = pa.table({"model": ["seed"], "round": [0], "i": [0]})
    write_deltalake(table_uri, seed, partition_by=["model"], storage_options=options)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.time() + 3  # after every interpreter has imported deltalake
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, table_uri, f"m{w}", str(ROUNDS), str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert out == "done\n"

    table = DeltaTable(table_uri, storage_options=options)
    # One commit per write, none lost: versions 0 (seed) .. WRITERS * ROUNDS, each once.
    assert table.version() == WRITERS * ROUNDS
    history = table.history()
    assert sorted(entry["version"] for entry in history) == list(range(WRITERS * ROUNDS + 1))
    # Read through pyarrow's filesystem: deltalake's own Python one can abort the interpreter
    # at exit.
    fs, path = Location.parse(table_uri).filesystem()
    rows = table.to_pyarrow_table(filesystem=SubTreeFileSystem(path, fs))
    rows = rows.sort_by([("model", "ascending"), ("i", "ascending")])
    expected = {"seed": [0]} | {f"m{w}": [ROUNDS - 1] * 3 for w in range(WRITERS)}
    got: dict[str, list[int]] = {}
    models, rounds = rows.column("model").to_pylist(), rows.column("round").to_pylist()
    for model, round_ in zip(models, rounds, strict=True):
        got.setdefault(model, []).append(round_)
    assert got == expected


_LAKE_WRITER = """
import sys
import time

from ct_lake.lake import Lake

uri, prompt, rounds, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
lake = Lake(uri)
time.sleep(max(0.0, start - time.time()))
for r in range(rounds):
    rows = [{"target": i, "source": r, "weight": 0.5} for i in range(3)]
    lake.write_table("edges", rows, model="toy", prompt=prompt)
print("done")
"""


def test_concurrent_lake_writers_on_s3(s3_uri):
    """The same through Lake.write_table: every partition write is one commit, none lost."""
    from ct_lake.keys import prompt_key
    from ct_lake.lake import Lake

    prompts = [prompt_key(f"prompt {w}") for w in range(WRITERS)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.time() + 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LAKE_WRITER, s3_uri, prompt, str(ROUNDS), str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for prompt in prompts
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert out == "done\n"

    lake = Lake(s3_uri)
    writes = [c for c in lake.history("edges") if c.partition is not None]
    assert len(writes) == WRITERS * ROUNDS
    assert sorted(c.partition for c in writes) == sorted(
        f"model=toy/prompt={prompt}" for prompt in prompts for _ in range(ROUNDS)
    )
    for prompt in prompts:
        sources = lake.read_table("edges", model="toy", prompt=prompt).column("source")
        assert sources.to_pylist() == [ROUNDS - 1] * 3
