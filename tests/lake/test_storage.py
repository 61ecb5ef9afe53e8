"""Location: parsing lake roots, options from the AWS environment, secret-free errors."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from pyarrow.fs import SubTreeFileSystem

from ct_lake.storage import LakeError, Location
from tests.s3server import aws_env, free_port


def test_local_paths_resolve_against_the_base(tmp_path):
    assert Location.parse("lake", base=tmp_path).uri == (tmp_path / "lake").as_posix()
    assert Location.parse(tmp_path / "a" / ".." / "b").uri == (tmp_path / "b").as_posix()
    location = Location.parse(str(tmp_path))
    assert location.is_local and location.local_path == tmp_path
    assert location.storage_options() == {}
    assert location.child("t", "model=m").uri == f"{tmp_path.as_posix()}/t/model=m"
    assert Location.parse(location) is location


def test_s3_uris_are_normalized():
    location = Location.parse("s3://my-bucket/some/prefix/")
    assert location.uri == "s3://my-bucket/some/prefix"
    assert not location.is_local
    assert (location.bucket, location.key) == ("my-bucket", "some/prefix")
    assert Location.parse("s3://my-bucket").key == ""
    assert location.child("files", "x.json").uri == "s3://my-bucket/some/prefix/files/x.json"
    with pytest.raises(LakeError, match="is on S3"):
        _ = location.local_path


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("s3://", "not an S3 bucket name"),
        ("s3://Bad_Bucket/x", "not an S3 bucket name"),
        ("s3://bucket/a/../b", "no '..'"),
        ("s3://bucket/a//b", "no '..'"),
        ("gs://bucket/x", "unsupported scheme 'gs'"),
        ("", "empty"),
    ],
)
def test_bad_roots_are_one_clear_error(root, message):
    with pytest.raises(LakeError, match=message):
        Location.parse(root)


@pytest.mark.parametrize("part", ["..", ".", "", "/etc", "a/../b", "a\\b"])
def test_child_refuses_traversal(part):
    with pytest.raises(LakeError, match="bad path part"):
        Location.parse("s3://bucket/lake").child(part)


def test_options_come_from_the_environment_and_secrets_stay_out_of_repr():
    env = {
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
        "AWS_ENDPOINT_URL": "http://ignored:1",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_ACCESS_KEY_ID": "AKIATESTKEY",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t-Very-Secret-Key",
        "AWS_SESSION_TOKEN": "t0ken-Very-Secret",
    }
    with aws_env(env):
        location = Location.parse("s3://bucket/lake")
        options = location.storage_options()
        assert options["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
        assert options["AWS_REGION"] == "eu-west-3"
        assert options["AWS_ALLOW_HTTP"] == "true"  # implied by the http:// endpoint
        assert options["AWS_SECRET_ACCESS_KEY"] == "s3cr3t-Very-Secret-Key"
        assert options["conditional_put"] == "etag"
        assert "AWS_S3_ALLOW_UNSAFE_RENAME" not in options
        shown = f"{location!r} {location} {location.describe()}"
        assert "127.0.0.1:9000" in location.describe()
        assert repr(location) == "Location('s3://bucket/lake', endpoint='http://127.0.0.1:9000')"
        assert "s3cr3t" not in shown and "t0ken" not in shown and "AKIATESTKEY" not in shown
        err = location.error(OSError("403 Forbidden, key s3cr3t-Very-Secret-Key"), "write")
        assert "s3cr3t" not in str(err)
        assert "credentials were refused" in str(err)
    with aws_env({}):
        options = Location.parse("s3://bucket/lake").storage_options()
        assert options["AWS_REGION"] == "us-east-1"
        assert "AWS_ENDPOINT_URL" not in options and "AWS_ALLOW_HTTP" not in options
        assert "AWS_ACCESS_KEY_ID" not in options


def _rows(tag: str, n: int = 3) -> pa.Table:
    return pa.table({"model": ["m"] * n, "tag": [tag] * n, "i": list(range(n))})


def test_wrong_secret_is_refused_quickly_and_leaves_the_table(s3_uri, s3_server):
    location = Location.parse(s3_uri).child("t")
    write_deltalake(location.uri, _rows("v0"), storage_options=location.storage_options())
    secret = "Wrong-Secret-Value-123"
    with aws_env({**s3_server.env(), "AWS_SECRET_ACCESS_KEY": secret}):
        started = time.monotonic()
        with pytest.raises(LakeError) as caught:
            with location.errors("write"):
                write_deltalake(
                    location.uri,
                    _rows("v1"),
                    mode="overwrite",
                    storage_options=location.storage_options(),
                )
        elapsed = time.monotonic() - started
        message = str(caught.value)
        assert message.startswith(
            f"cannot write lake {location.uri} (endpoint {s3_server.endpoint})"
        )
        assert "credentials were refused" in message
        assert secret not in message and secret not in repr(location)
        assert s3_server.endpoint in repr(location)
        assert "\n" not in message
        assert elapsed < 10
    table = DeltaTable(location.uri, storage_options=location.storage_options())
    assert table.version() == 0
    # Read through pyarrow's filesystem: deltalake's own Python one can abort the interpreter
    # at exit.
    fs, path = location.filesystem()
    rows = table.to_pyarrow_table(filesystem=SubTreeFileSystem(path, fs))
    assert rows.column("tag").to_pylist() == ["v0"] * 3


def test_unknown_access_key_is_refused(s3_uri, s3_server):
    location = Location.parse(s3_uri)
    with aws_env({**s3_server.env(), "AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY00000000"}):
        with pytest.raises(LakeError, match="credentials were refused"):
            with location.errors("read"):
                DeltaTable(location.child("t").uri, storage_options=location.storage_options())


def test_unreachable_endpoint_fails_in_seconds(s3_uri, s3_server):
    location = Location.parse(s3_uri).child("t")
    write_deltalake(location.uri, _rows("v0"), storage_options=location.storage_options())
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with aws_env({**s3_server.env(), "AWS_ENDPOINT_URL": dead}):
        for action in (
            lambda: write_deltalake(
                location.uri,
                _rows("v1"),
                mode="overwrite",
                storage_options=location.storage_options(),
            ),
            lambda: location.filesystem()[0].get_file_info(location.filesystem()[1]),
        ):
            started = time.monotonic()
            with pytest.raises(LakeError) as caught:
                with location.errors("write"):
                    action()
            assert time.monotonic() - started < 20
            assert str(caught.value) == (
                f"cannot write lake {location.uri} (endpoint {dead}): "
                "the endpoint cannot be reached"
            )
    table = DeltaTable(location.uri, storage_options=location.storage_options())
    assert table.version() == 0


def test_missing_bucket_is_named(s3_server):
    with aws_env(s3_server.env()):
        location = Location.parse("s3://no-such-bucket-here/lake")
        with pytest.raises(LakeError, match="bucket 'no-such-bucket-here' does not exist"):
            with location.errors("write"):
                write_deltalake(
                    location.child("t").uri, _rows("v0"), storage_options=location.storage_options()
                )


def test_local_errors_pass_through(tmp_path: Path):
    location = Location.parse(tmp_path)
    with pytest.raises(FileNotFoundError):
        with location.errors("read"):
            (tmp_path / "missing").read_bytes()


def test_data_mistakes_are_not_storage_errors(s3_uri):
    location = Location.parse(s3_uri)
    with pytest.raises(pa.ArrowInvalid):
        with location.errors("write"):
            pa.array(["x"]).cast(pa.int32())


@pytest.mark.slow
def test_an_endpoint_that_never_answers_fails_in_seconds(s3_server):
    """A server that accepts connections and then stays silent: the slowest dead endpoint."""
    import socket
    import threading

    from ct_lake.lake import Lake

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(silent.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        with aws_env({**s3_server.env(), "AWS_ENDPOINT_URL": endpoint}):
            lake = Lake("s3://bucket/lake")
            for action in (
                lambda: lake.write_table(
                    "edges",
                    [{"target": 1, "source": 2, "weight": 0.5}],
                    model="m",
                    prompt="p_000000000001",
                ),
                lambda: lake.read_bytes("plots", "x.png", model="m"),
            ):
                started = time.monotonic()
                with pytest.raises(LakeError, match=f"endpoint {endpoint}.*cannot be reached"):
                    action()
                assert time.monotonic() - started < 40
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        silent.close()
