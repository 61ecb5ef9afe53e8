"""The lake on S3 behaves as the lake on a local disk: same writes, same rows, same SQL answers.

Every table of ``ct_lake.tables`` gets the same partition writes (then a few replacements) in a
local lake and in an S3 lake on the moto server; reads, history, time travel and every view of
the DuckDB catalog must agree. A write that the store refuses leaves the table as it was.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ct_lake import catalog
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake
from ct_lake.storage import LakeError
from ct_lake.tables import TABLES, table
from tests.s3server import aws_env, free_port

P1, P2 = prompt_key("one"), prompt_key("two")
KEYS = {"model": ["toy"], "prompt": [P1, P2], "run": ["r1"], "graph": ["g1"]}
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _value(kind: pa.DataType, name: str, i: int):
    """A deterministic value of ``kind``; small integers, so views' joins find partners."""
    if pa.types.is_integer(kind):
        return i % 3
    if pa.types.is_floating(kind):
        return 0.25 + 0.5 * i
    if pa.types.is_boolean(kind):
        return i % 2 == 0
    if pa.types.is_timestamp(kind):
        return EPOCH + timedelta(seconds=i)
    if pa.types.is_string(kind):
        return f"{name}-{i}"
    if pa.types.is_list(kind):
        return [_value(kind.value_type, name, i), _value(kind.value_type, name, i + 1)]
    if pa.types.is_map(kind):
        return [("a", 0.5 * i)]
    raise AssertionError(f"no test value for {kind}")


def _rows(name: str, round_: int) -> list[dict]:
    schema = table(name).schema
    return [
        {field.name: _value(field.type, field.name, i + round_) for field in schema}
        for i in range(3)
    ]


def _partitions(name: str) -> list[dict[str, str]]:
    combos: list[dict[str, str]] = [{}]
    for column in table(name).partitions:
        combos = [combo | {column: value} for combo in combos for value in KEYS[column]]
    return combos


def _fill(lake: Lake) -> None:
    """Every partition of every table, then a second round replacing the first partitions."""
    for name in TABLES:
        for keys in _partitions(name):
            lake.write_table(name, _rows(name, 0), **keys)
    for name in ("edges", "scores", "prompts", "annotations"):
        lake.write_table(name, _rows(name, 1), **_partitions(name)[0])
    lake.write_table("nodes", [], model="toy", prompt=P2)  # an emptied partition


def _sorted(table_: pa.Table) -> list[tuple]:
    return sorted((tuple(row.values()) for row in table_.to_pylist()), key=repr)


def _answers(lake: Lake, as_of=None) -> dict[str, object]:
    """Every view's rows (sorted), or the error it raised, as seen through the catalog."""
    answers: dict[str, object] = {}
    with catalog.connect(lake, as_of=as_of) as con:
        for view in catalog.load_views():
            try:
                rows = con.execute(f'SELECT * FROM "{view.name}"').fetchall()
                answers[view.name] = sorted(rows, key=repr)
            except Exception as err:  # a view may fail on synthetic rows: the same way on both
                answers[view.name] = f"{type(err).__name__}: {err}"
    return answers


def test_an_s3_lake_answers_as_a_local_lake(s3_uri, tmp_path):
    local, remote = Lake(tmp_path / "lake"), Lake(s3_uri)
    _fill(local)
    _fill(remote)

    for name in TABLES:
        assert remote.partitions(name) == local.partitions(name), name
        assert _sorted(remote.scan(name)) == _sorted(local.scan(name)), name
        for keys in _partitions(name):
            assert _sorted(remote.read_table(name, **keys)) == _sorted(
                local.read_table(name, **keys)
            )
    assert remote.read_table("edges", model="toy", prompt=P1).column("source").to_pylist() == [
        1,
        2,
        0,
    ]
    assert remote.read_table("nodes", model="toy", prompt=P2).num_rows == 0
    assert remote.has_partition("nodes", model="toy", prompt=P2)

    history = remote.history()
    assert [(c.table, c.version, c.operation) for c in history] == [
        (c.table, c.version, c.operation) for c in local.history()
    ]
    writes = sum(len(_partitions(name)) for name in TABLES) + 5
    assert sum(c.partition is not None for c in history) == writes

    first_round = sum(len(_partitions(name)) for name in TABLES)
    # The lake version of the last write of the first round: time travel back to it.
    mid = [c for c in history if c.partition is not None][first_round - 1].lake_version
    assert _sorted(remote.read_table("edges", model="toy", prompt=P1, as_of=mid)) == _sorted(
        pa.Table.from_pylist(_rows("edges", 0), schema=table("edges").schema)
    )
    for name in ("edges", "scores", "nodes"):
        assert _sorted(remote.scan(name, as_of=mid)) == _sorted(local.scan(name, as_of=mid))

    now, then = _answers(remote), _answers(remote, as_of=mid)
    assert now == _answers(local)
    assert then == _answers(local, as_of=mid)
    assert now["edges"] != then["edges"]  # the replacement is visible, and time travel undoes it
    errors = {name: answer for name, answer in now.items() if isinstance(answer, str)}
    assert errors == {}
    assert len(now["edges"]) == 6 and len(now["graph_overview"]) > 0


def test_a_refused_write_leaves_the_table_at_its_version(s3_uri, s3_server):
    lake = Lake(s3_uri)
    lake.write_table("edges", _rows("edges", 0), model="toy", prompt=P1)
    before = [(c.table, c.version) for c in lake.history()]
    fs, root = lake.location.filesystem()
    from pyarrow.fs import FileSelector

    def objects() -> list[str]:
        return sorted(i.path for i in fs.get_file_info(FileSelector(root, recursive=True)))

    stored = objects()
    secret = "Wrong-Secret-For-The-Test-0"
    dead = f"http://127.0.0.1:{free_port()}"
    cases = [
        ({"AWS_SECRET_ACCESS_KEY": secret}, s3_server.endpoint, "the credentials were refused"),
        ({"AWS_ENDPOINT_URL": dead}, dead, "the endpoint cannot be reached"),
    ]
    for change, endpoint, reason in cases:
        with aws_env({**s3_server.env(), **change}):
            started = time.monotonic()
            with pytest.raises(LakeError) as caught:
                Lake(s3_uri).write_table("edges", _rows("edges", 1), model="toy", prompt=P1)
            assert time.monotonic() - started < 20
        message = str(caught.value)
        assert f"lake {s3_uri} (endpoint {endpoint})" in message and reason in message
        assert "\n" not in message and secret not in message
    assert [(c.table, c.version) for c in Lake(s3_uri).history()] == before
    assert objects() == stored  # not even an orphan data file
    assert _sorted(Lake(s3_uri).read_table("edges", model="toy", prompt=P1)) == _sorted(
        pa.Table.from_pylist(_rows("edges", 0), schema=table("edges").schema)
    )


def test_no_credential_is_stored_in_the_lake_or_its_cache(s3_uri, s3_server, tmp_path):
    """Commit metadata, data files, table info, files and the local cache hold no credential."""
    lake = Lake(s3_uri)
    for round_ in (0, 1):
        for name in ("edges", "scores", "prompts"):
            lake.write_table(name, _rows(name, round_), **_partitions(name)[0])
    lake.write_file("plots", "x.png", b"png", model="toy")
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "config.yaml").write_text("a: 1")
    lake.write_tree("transcoders", "set", folder, model="toy")
    lake.local_file("plots", "x.png", model="toy")
    lake.local_tree("transcoders", "set", model="toy")
    lake.optimize(retention_hours=0)
    shown = [repr(lake), str(lake.history()), str(lake.info())]

    secrets = [s3_server.secret_access_key.encode(), s3_server.access_key_id.encode()]
    location = lake.location
    client = s3_server.s3()
    listing = client.list_objects_v2(Bucket=location.bucket, Prefix=location.key + "/")
    keys = [item["Key"] for item in listing["Contents"]]
    assert any("/_delta_log/" in key for key in keys) and any("/files/" in key for key in keys)
    for key in keys:
        body = client.get_object(Bucket=location.bucket, Key=key)["Body"].read()
        assert not any(secret in body for secret in secrets), key
    cached = [p for p in Path(os.environ["CT_LAKE_CACHE"]).rglob("*") if p.is_file()]
    assert cached
    for path in cached:
        assert not any(secret in path.read_bytes() for secret in secrets), path
    for text in shown:
        assert not any(secret.decode() in text for secret in secrets)
