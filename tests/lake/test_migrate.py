"""``ct lake migrate``: the fixture lake of the previous format (``tests/fixtures/lake_v0``,
written by that version's own code) converted into a Delta lake, row for row and byte for byte.

What the old lake holds is read here straight from its Parquet files with pyarrow (partition
values from the hive paths), independently of :mod:`ct_lake.migrate`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ct_lake.catalog import connect
from ct_lake.lake import Lake
from ct_lake.migrate import MigrationError, migrate
from ct_lake.tables import TABLES

REPO = Path(__file__).resolve().parents[2]
OLD = REPO / "tests" / "fixtures" / "lake_v0" / "lake"
# Tables the previous format never had (added with the Delta lake): a migrated lake starts
# without them, and the catalog's views read them as empty.
SINCE_DELTA = {"feature_stats", "feature_examples", "feature_logits"}
V0_TABLES = {name: spec for name, spec in TABLES.items() if name not in SINCE_DELTA}
LOCKS = {
    "annotations/graph=toy-world__p_5ce1a994da98/.lock",
    "files/graph_files/model=toy-world/.lock",
}


def old_partitions(root: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], pa.Table]:
    """``(table, ((column, value), ...)) -> rows with the partition columns`` of an old lake."""
    found = {}
    for name, spec in V0_TABLES.items():
        stars = "/".join(f"{column}=*" for column in spec.partitions)
        for path in sorted(root.glob(f"{name}/{stars}/data.parquet")):
            parts = path.relative_to(root / name).parts[:-1]
            keys = tuple(tuple(part.split("=", 1)) for part in parts)
            data = pq.read_table(path)
            for column, value in keys:
                data = data.append_column(column, pa.array([value] * data.num_rows, pa.string()))
            found[(name, keys)] = data
    return found


def old_files(root: Path) -> dict[str, bytes]:
    """Every file under ``files/`` except the old writers' lock files: relative path -> bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted((root / "files").rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


def sorted_rows(data: pa.Table) -> pa.Table:
    """``data`` in a canonical order: sorted by every column that is not a list or map."""
    keys = [(f.name, "ascending") for f in data.schema if not pa.types.is_nested(f.type)]
    return data.take(pc.sort_indices(data, sort_keys=keys))


def run_ct(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ct_cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    new = tmp_path_factory.mktemp("migrated") / "lake"
    report = migrate(OLD, new)
    return new, report


def test_fixture_is_a_previous_format_lake():
    tables = {name for name, _ in old_partitions(OLD)}
    assert tables == set(V0_TABLES), "the fixture should hold every table of the old format"
    assert not list(OLD.glob("*/_delta_log"))


def test_report_counts_every_partition_and_row(migrated):
    new, report = migrated
    expected = {}
    for (name, _), data in old_partitions(OLD).items():
        partitions, rows = expected.get(name, (0, 0))
        expected[name] = (partitions + 1, rows + data.num_rows)
    assert {t.name: (t.partitions, t.rows) for t in report.tables} == expected
    assert report.files == len(old_files(OLD))
    assert report.file_bytes == sum(len(b) for b in old_files(OLD).values())
    assert report.complete and not report.unknown and not report.dropped_columns
    assert set(report.ignored) == LOCKS
    assert report.new.uri == str(new)
    # one Delta commit per partition, each naming its partition
    commits = Lake(new).history()
    assert sorted((c.table, c.partition) for c in commits) == sorted(
        (name, "/".join(f"{column}={value}" for column, value in keys))
        for name, keys in old_partitions(OLD)
    )


def test_rows_equal_per_partition(migrated):
    new, _ = migrated
    lake = Lake(new)
    old = old_partitions(OLD)
    for name in SINCE_DELTA:
        assert not (new / name).exists() and lake.scan(name).num_rows == 0, name
    for name, spec in V0_TABLES.items():
        assert (new / name / "_delta_log").is_dir(), name  # a Delta table now
        scanned = lake.scan(name)
        assert scanned.num_rows == sum(d.num_rows for (t, _), d in old.items() if t == name)
        stored = {tuple(sorted(p.items())) for p in lake.partitions(name)}
        assert stored == {tuple(sorted(keys)) for (t, keys) in old if t == name}
        for (table, keys), expected in old.items():
            if table != name:
                continue
            mask = None
            for column, value in keys:
                match = pc.equal(scanned[column].cast(pa.string()), value)
                mask = match if mask is None else pc.and_(mask, match)
            got = scanned.filter(mask).select(expected.column_names)
            assert got.num_rows == expected.num_rows, (name, keys)
            assert sorted_rows(got.cast(expected.schema)).equals(sorted_rows(expected)), (
                name,
                keys,
            )
            # the file columns come back with the table's types (what readers rely on)
            read = lake.read_table(name, **dict(keys))
            assert [(f.name, f.type) for f in read.schema] == [
                (f.name, f.type) for f in spec.schema
            ]


def test_every_file_copied_byte_identical(migrated):
    new, _ = migrated
    files = old_files(OLD)
    copied = {
        path.relative_to(new).as_posix(): path.read_bytes()
        for path in sorted((new / "files").rglob("*"))
        if path.is_file()
    }
    assert copied.keys() == files.keys()
    for rel, data in files.items():
        assert copied[rel] == data, rel
    # and through the lake's own API, as readers get them
    lake = Lake(new)
    assert (
        lake.read_bytes("graphs", "graph.safetensors", model="toy-world", prompt="p_5ce1a994da98")
        == (files["files/graphs/model=toy-world/prompt=p_5ce1a994da98/graph.safetensors"])
    )
    tree = lake.local_tree("transcoders", "set", model="toy-world")
    assert (tree / "config.yaml").read_bytes() == (
        files["files/transcoders/model=toy-world/set/config.yaml"]
    )


def test_catalog_answers_graph_overview(migrated):
    new, _ = migrated
    old = old_partitions(OLD)
    texts = {
        dict(keys)["prompt"]: d["text"][0].as_py() for (t, keys), d in old.items() if t == "prompts"
    }
    expected = sorted(
        (
            dict(keys)["model"],
            dict(keys)["prompt"],
            texts[dict(keys)["prompt"]],
            d["n_nodes"][0].as_py(),
            d["top_target"][0].as_py(),
        )
        for (t, keys), d in old.items()
        if t == "graphs"
    )
    con = connect(Lake(new))
    rows = con.execute(
        "SELECT model, prompt, prompt_text, n_nodes, top_target FROM graph_overview"
    ).fetchall()
    assert sorted(rows) == expected
    assert len(expected) == 2


def test_cli_prints_summary(tmp_path):
    new = tmp_path / "lake"
    result = run_ct("lake", "migrate", str(OLD), str(new))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in V0_TABLES:
        parts = [d for (t, _), d in old_partitions(OLD).items() if t == name]
        assert any(
            line.split() == [name, str(len(parts)), str(sum(d.num_rows for d in parts))]
            for line in lines
        ), (name, result.stdout)
    assert f"files: {len(old_files(OLD))} " in result.stdout
    assert lines[-1] == f"new lake: {new}"
    assert Lake(new).read_table("prompts", prompt="p_5ce1a994da98")["text"][0].as_py() == (
        "The capital of the country where Mosho lives is"
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ct lake migrate: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_cli_refuses_bad_inputs(tmp_path):
    missing = tmp_path / "nowhere"
    assert str(missing) in one_line_error(
        run_ct("lake", "migrate", str(missing), str(tmp_path / "a"))
    )

    not_a_lake = tmp_path / "notes"
    not_a_lake.mkdir()
    (not_a_lake / "readme.txt").write_text("hello")
    line = one_line_error(run_ct("lake", "migrate", str(not_a_lake), str(tmp_path / "b")))
    assert "not a lake of the previous format" in line and str(not_a_lake) in line

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    line = one_line_error(run_ct("lake", "migrate", str(OLD), str(busy)))
    assert "already holds data" in line and str(busy) in line
    assert sorted(p.name for p in busy.iterdir()) == ["something"]
    for target in ("a", "b"):
        assert not (tmp_path / target).exists()


def test_refuses_a_delta_lake_and_overlapping_folders(migrated, tmp_path):
    new, _ = migrated
    with pytest.raises(MigrationError, match="already a Delta lake"):
        migrate(new, tmp_path / "again")
    copy = tmp_path / "old"
    shutil.copytree(OLD, copy)
    with pytest.raises(MigrationError, match="overlaps"):
        migrate(copy, copy / "delta", force=True)
    with pytest.raises(MigrationError, match="must be a local folder"):
        migrate("s3://bucket/old-lake", tmp_path / "from-s3")
    assert not (tmp_path / "again").exists() and not (tmp_path / "from-s3").exists()


def test_unreadable_file_refused_before_anything_is_written(tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(OLD, copy)
    broken = copy / "nodes" / "model=toy-world" / "prompt=p_58df47448459" / "data.parquet"
    broken.write_bytes(broken.read_bytes()[:100])
    new = tmp_path / "new"
    with pytest.raises(MigrationError) as err:
        migrate(copy, new)
    message = str(err.value)
    assert str(broken) in message and "\n" not in message
    assert not new.exists()


def test_interrupted_migration_finishes_when_run_again(tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(OLD, copy)
    damaged = copy / "edges" / "model=toy-world" / "prompt=p_5ce1a994da98" / "data.parquet"
    good = damaged.read_bytes()
    body = bytearray(good)
    for i in range(40, 400):  # the data pages, not the footer: found only when rows are read
        body[i] ^= 0xFF
    damaged.write_bytes(bytes(body))
    new = tmp_path / "new"
    with pytest.raises(MigrationError) as err:
        migrate(copy, new)
    message = str(err.value)
    assert str(damaged) in message and "run the migration again with --force" in message
    assert "\n" not in message
    assert Lake(new).has_partition("prompts", prompt="p_5ce1a994da98")  # written before it
    assert not Lake(new).has_partition("edges", model="toy-world", prompt="p_5ce1a994da98")

    damaged.write_bytes(good)
    report = migrate(copy, new, force=True)
    expected = old_partitions(OLD)
    assert report.rows == sum(d.num_rows for d in expected.values())
    for (name, keys), data in expected.items():
        assert Lake(new).read_table(name, **dict(keys)).num_rows == data.num_rows, (name, keys)


def test_force_rerun_gives_the_same_lake(tmp_path):
    new = tmp_path / "lake"
    first = migrate(OLD, new)
    before = {name: sorted_rows(Lake(new).scan(name)) for name in TABLES}
    with pytest.raises(MigrationError, match="already holds data"):
        migrate(OLD, new)
    again = migrate(OLD, new, force=True)
    assert again.tables == first.tables
    for name in TABLES:
        after = sorted_rows(Lake(new).scan(name))
        assert after.equals(before[name].select(after.column_names)), name


def test_unknown_tables_columns_and_files_are_reported(tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(OLD, copy)
    mystery = copy / "mystery" / "model=toy-world" / "data.parquet"
    mystery.parent.mkdir(parents=True)
    pq.write_table(pa.table({"x": [1, 2]}), mystery)
    extra = copy / "edges" / "model=toy-world" / "prompt=p_58df47448459" / "data.parquet"
    data = pq.read_table(extra)
    pq.write_table(data.append_column("note", pa.array(["e"] * data.num_rows)), extra)
    (copy / "files" / "stray.txt").write_text("stray")
    stray_partition = copy / "scores" / "model=toy-world" / "oops"
    stray_partition.mkdir()

    new = tmp_path / "new"
    result = run_ct("lake", "migrate", str(copy), str(new))
    assert result.returncode == 1, result.stderr
    stderr = result.stderr
    assert "not migrated: mystery" in stderr
    assert "not migrated: files/stray.txt" in stderr
    assert "not migrated: scores/model=toy-world/oops" in stderr
    assert "not migrated: column edges.note (1 partition)" in stderr
    assert "incomplete: 4 entries" in stderr
    # everything else is there, the known columns of the widened file included
    got = Lake(new).read_table("edges", model="toy-world", prompt="p_58df47448459")
    assert sorted_rows(got).equals(sorted_rows(data))


def test_migrate_into_s3(s3_uri, s3_server):
    report = migrate(OLD, s3_uri)
    assert report.new.uri == s3_uri and report.complete
    lake = Lake(s3_uri)
    old = old_partitions(OLD)
    for (name, keys), expected in old.items():
        got = lake.read_table(name, **dict(keys))
        file_columns = expected.select(TABLES[name].schema.names)
        assert sorted_rows(got.cast(file_columns.schema)).equals(sorted_rows(file_columns))
    for rel, data in old_files(OLD).items():
        parts = rel.split("/")
        kind, keys, rest = parts[1], {}, parts[2:]
        while rest and rest[0].split("=")[0] in ("model", "prompt"):
            column, value = rest.pop(0).split("=", 1)
            keys[column] = value
        assert lake.read_bytes(kind, "/".join(rest), **keys) == data, rel
    with pytest.raises(MigrationError, match="already holds data"):
        migrate(OLD, s3_uri)

    # refused credentials: one line naming the endpoint, never the secret, nothing written
    bucket = s3_server.new_bucket()
    env = {**s3_server.env(), "AWS_SECRET_ACCESS_KEY": "wrong-secret-0123456789"}
    result = run_ct("lake", "migrate", str(OLD), f"s3://{bucket}/lake", env=env)
    line = one_line_error(result)
    assert s3_server.endpoint in line and "credentials" in line
    assert "wrong-secret" not in result.stderr + result.stdout
    assert s3_server.s3().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
