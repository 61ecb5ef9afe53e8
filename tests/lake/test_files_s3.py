"""LakeFiles on an S3 lake (real moto server): uploads, the local cache, trees, cost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ct_lake.files import TREE_MANIFEST, LakeFiles, cache_root
from ct_lake.storage import LakeError, Location
from tests.s3server import aws_env, free_port

PROMPT = "p_0123456789ab"
REPO = Path(__file__).resolve().parents[2]


class Files(LakeFiles):
    def __init__(self, root):
        self.location = Location.parse(root)


def _objects(s3_server, uri: str) -> dict[str, bytes]:
    """Every object under the lake (but pyarrow's empty folder markers, ``.../``)."""
    location = Location.parse(uri)
    client = s3_server.s3()
    listing = client.list_objects_v2(Bucket=location.bucket, Prefix=location.key + "/")
    return {
        item["Key"][len(location.key) + 1 :]: client.get_object(
            Bucket=location.bucket, Key=item["Key"]
        )["Body"].read()
        for item in listing.get("Contents", [])
        if not item["Key"].endswith("/")
    }


def test_files_are_objects_at_the_documented_layout(s3_uri, s3_server):
    files = Files(s3_uri)
    uri = files.write_file("graphs", "graph.safetensors", b"abc", model="toy", prompt=PROMPT)
    assert uri == f"{s3_uri}/files/graphs/model=toy/prompt={PROMPT}/graph.safetensors"
    assert _objects(s3_server, s3_uri) == {
        f"files/graphs/model=toy/prompt={PROMPT}/graph.safetensors": b"abc"
    }
    assert files.has_file("graphs", "graph.safetensors", model="toy", prompt=PROMPT)
    assert not files.has_file("graphs", "graph.safetensors", model="toy", prompt="p_ffffffffffff")
    assert files.read_bytes("graphs", "graph.safetensors", model="toy", prompt=PROMPT) == b"abc"
    assert files.list_files("graphs", model="toy") == [f"prompt={PROMPT}/graph.safetensors"]
    assert files.list_files("plots", model="toy") == []
    with pytest.raises(FileNotFoundError):
        files.read_bytes("plots", "none.png", model="toy")
    with pytest.raises(FileNotFoundError):
        files.local_file("plots", "none.png", model="toy")


def test_local_file_downloads_once_and_again_when_the_object_changes(s3_uri, tmp_path):
    files = Files(s3_uri)
    files.write_file("graph_files", "a.json", b'{"v": 1}', model="toy")
    path = files.local_file("graph_files", "a.json", model="toy")
    cache = Path(os.environ["CT_LAKE_CACHE"])
    assert path == files.file_path("graph_files", "a.json", model="toy")
    assert path.is_relative_to(cache) and path.read_bytes() == b'{"v": 1}'
    assert path.parent.name == "model=toy"
    inode = path.stat().st_ino
    assert files.local_file("graph_files", "a.json", model="toy").stat().st_ino == inode
    # Same size, new content, within the same second: the ETag tells them apart.
    files.write_file("graph_files", "a.json", b'{"v": 2}', model="toy")
    assert files.local_file("graph_files", "a.json", model="toy").read_bytes() == b'{"v": 2}'
    # A cache copy damaged by hand is noticed through its size and fetched again.
    path.write_bytes(b"{}")
    assert files.local_file("graph_files", "a.json", model="toy").read_bytes() == b'{"v": 2}'
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_writing_the_cache_path_uploads_without_downloading_back(s3_uri, s3_server):
    files = Files(s3_uri)
    path = files.file_path("plots", "x.png", model="toy")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"png-bytes")
    files.write_file("plots", "x.png", path, model="toy")
    assert _objects(s3_server, s3_uri) == {"files/plots/model=toy/x.png": b"png-bytes"}
    inode = path.stat().st_ino
    assert files.local_file("plots", "x.png", model="toy").stat().st_ino == inode


def test_cache_folder_is_per_lake(s3_uri, s3_server):
    one, two = Files(s3_uri), Files(s3_uri + "-other")
    assert cache_root(one.location) != cache_root(two.location)
    assert cache_root(one.location).parent == Path(os.environ["CT_LAKE_CACHE"])
    here = cache_root(one.location)
    with aws_env({**s3_server.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}):
        # The same bucket name behind another endpoint is another lake.
        assert cache_root(Files(s3_uri).location) != here


_DOWNLOADER = """
import sys
from ct_lake.files import LakeFiles
from ct_lake.storage import Location

class Files(LakeFiles):
    def __init__(self, root):
        self.location = Location.parse(root)

files = Files(sys.argv[1])
for _ in range(5):
    data = files.local_file("graphs", "graph.safetensors", model="toy").read_bytes()
    assert data == bytes(range(256)) * 4096, "partial or wrong cache copy"
print("ok")
"""


def test_processes_download_the_same_file_at_once(s3_uri):
    files = Files(s3_uri)
    files.write_file("graphs", "graph.safetensors", bytes(range(256)) * 4096, model="toy")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _DOWNLOADER, s3_uri], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0]
    assert outputs == ["ok\n"] * 3
    folder = files.file_path("graphs", "graph.safetensors", model="toy").parent
    assert sorted(p.name for p in folder.iterdir()) == ["graph.safetensors"]


def _folder(path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def test_trees_round_trip_through_the_manifest(s3_uri, s3_server, tmp_path):
    files = Files(s3_uri)
    assert not files.has_tree("transcoders", "set", model="toy")
    with pytest.raises(FileNotFoundError):
        files.local_tree("transcoders", "set", model="toy")
    first = _folder(
        tmp_path / "v1",
        {"config.yaml": b"a: 1", "layer_0.safetensors": b"w0", "sub/.keep": b"", "sub/x": b"x"},
    )
    uri = files.write_tree("transcoders", "set", first, model="toy")
    assert uri == f"{s3_uri}/files/transcoders/model=toy/set"
    assert files.has_tree("transcoders", "set", model="toy")
    tree = files.local_tree("transcoders", "set", model="toy")
    assert tree == files.file_path("transcoders", "set", model="toy")
    stored = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
    assert stored == ["config.yaml", "layer_0.safetensors", "sub/.keep", "sub/x"]
    assert (tree / "layer_0.safetensors").read_bytes() == b"w0"

    second = _folder(tmp_path / "v2", {"config.yaml": b"a: 2", "layer_0.safetensors": b"w0"})
    files.write_tree("transcoders", "set", second, model="toy")
    objects = _objects(s3_server, s3_uri)
    prefix = "files/transcoders/model=toy/set/"
    assert sorted(objects) == [
        prefix + TREE_MANIFEST,
        prefix + "config.yaml",
        prefix + "layer_0.safetensors",
    ]
    unchanged = (tree / "layer_0.safetensors").stat().st_ino
    assert files.local_tree("transcoders", "set", model="toy") == tree
    stored = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
    assert stored == ["config.yaml", "layer_0.safetensors"]
    assert (tree / "config.yaml").read_bytes() == b"a: 2"
    assert (tree / "layer_0.safetensors").stat().st_ino == unchanged  # not fetched again


def test_a_tree_written_from_its_cache_folder_is_not_downloaded_back(s3_uri):
    files = Files(s3_uri)
    folder = _folder(files.file_path("transcoders", "set", model="toy"), {"config.yaml": b"a"})
    inode = (folder / "config.yaml").stat().st_ino
    files.write_tree("transcoders", "set", folder, model="toy")
    assert files.local_tree("transcoders", "set", model="toy") == folder
    assert (folder / "config.yaml").stat().st_ino == inode


def test_a_tree_without_its_manifest_does_not_exist(s3_uri, s3_server):
    # A writer killed before the manifest: its files are there, the tree is not.
    location = Location.parse(s3_uri)
    s3_server.s3().put_object(
        Bucket=location.bucket, Key=f"{location.key}/files/transcoders/model=toy/set/config.yaml"
    )
    files = Files(s3_uri)
    assert not files.has_tree("transcoders", "set", model="toy")
    with pytest.raises(FileNotFoundError):
        files.local_tree("transcoders", "set", model="toy")


def test_traversal_is_refused_before_any_request(s3_uri, s3_server):
    files = Files(s3_uri)
    for name in ("../x", "/x", "a/../../x"):
        with pytest.raises(ValueError, match="bad file name"):
            files.write_file("plots", name, b"x", model="toy")
    assert _objects(s3_server, s3_uri) == {}


def test_storage_failures_are_one_lake_error(s3_uri, s3_server):
    files = Files(s3_uri)
    files.write_file("plots", "x.png", b"png", model="toy")
    with aws_env({**s3_server.env(), "AWS_SECRET_ACCESS_KEY": "Not-The-Secret-42"}):
        with pytest.raises(LakeError, match="credentials were refused") as caught:
            files.write_file("plots", "y.png", b"png", model="toy")
        assert "Not-The-Secret-42" not in str(caught.value)
        assert s3_server.endpoint in str(caught.value)
    dead = f"http://127.0.0.1:{free_port()}"
    with aws_env({**s3_server.env(), "AWS_ENDPOINT_URL": dead}):
        started = time.monotonic()
        with pytest.raises(LakeError, match=f"endpoint {dead}.*cannot be reached"):
            files.read_bytes("plots", "x.png", model="toy")
        assert time.monotonic() - started < 20
    assert _objects(s3_server, s3_uri) == {"files/plots/model=toy/x.png": b"png"}


def test_small_file_cost(s3_uri, tmp_path):
    """The figures quoted in ct_lake.files: a small write and read against the local server."""
    s3, local = Files(s3_uri), Files(tmp_path / "lake")
    data = os.urandom(1024)
    timings = {}
    for label, files in (("s3", s3), ("local", local)):
        started = time.perf_counter()
        for i in range(20):
            files.write_file("plots", f"{i}.bin", data, model="toy")
        write = (time.perf_counter() - started) / 20
        started = time.perf_counter()
        for i in range(20):
            assert files.read_bytes("plots", f"{i}.bin", model="toy") == data
        read = (time.perf_counter() - started) / 20
        for i in range(20):
            files.local_file("plots", f"{i}.bin", model="toy")
        started = time.perf_counter()
        for i in range(20):
            files.local_file("plots", f"{i}.bin", model="toy")
        cached = (time.perf_counter() - started) / 20
        timings[label] = (write, read, cached)
    print(
        "small file cost (ms, write/read/cached local_file): "
        + "; ".join(f"{k} " + "/".join(f"{v * 1000:.2f}" for v in t) for k, t in timings.items())
    )
    # Loose bounds: they catch a pathological slowdown (e.g. retries on every call), not noise.
    assert all(value < 1.0 for value in timings["s3"])


_SLOW_WRITER = """
import sys
from pathlib import Path
from ct_lake.files import LakeFiles
from ct_lake.storage import Location

class Files(LakeFiles):
    def __init__(self, root):
        self.location = Location.parse(root)

Files(sys.argv[1]).write_file("graphs", "graph.safetensors", Path(sys.argv[2]), model="toy")
"""


def _open_writer_end(fifo: Path, proc: subprocess.Popen, timeout: float = 60) -> int:
    """Open the FIFO for writing once the reader has opened it (fail if the reader died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            assert proc.poll() is None, "the writer exited before reading its source"
            time.sleep(0.05)
            continue
        os.set_blocking(fd, True)
        return fd
    raise AssertionError("the writer never opened its source")


@pytest.mark.parametrize("where", ["s3", "local"])
def test_a_writer_killed_mid_upload_leaves_the_previous_file(s3_uri, tmp_path, where):
    root = s3_uri if where == "s3" else str(tmp_path / "lake")
    files = Files(root)
    files.write_file("graphs", "graph.safetensors", b"previous", model="toy")
    fifo = tmp_path / "source"
    os.mkfifo(fifo)  # the writer reads its source from here: the test decides when it stops
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, root, str(fifo)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        pipe = _open_writer_end(fifo, proc)
        with open(pipe, "wb") as stream:
            stream.write(os.urandom(12 << 20))  # past S3's 5 MiB part size: a multipart upload
            stream.flush()
            proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert files.read_bytes("graphs", "graph.safetensors", model="toy") == b"previous"
    assert files.list_files("graphs", model="toy") == ["graph.safetensors"]
    assert files.local_file("graphs", "graph.safetensors", model="toy").read_bytes() == b"previous"
    if where == "local":
        assert files.sweep_files(older_than_s=0) == 1  # the killed writer's temporary file
