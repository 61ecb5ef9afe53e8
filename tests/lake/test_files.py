"""LakeFiles on a local lake: real paths, atomic writes, validated keys, no traversal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ct_lake.files import LakeFiles
from ct_lake.storage import Location

PROMPT = "p_0123456789ab"


class Files(LakeFiles):
    """The smallest host of the mixin: a lake location."""

    def __init__(self, root):
        self.location = Location.parse(root)


def test_files_live_at_the_documented_layout(tmp_path):
    files = Files(tmp_path)
    uri = files.write_file("graphs", "graph.safetensors", b"abc", model="toy", prompt=PROMPT)
    expected = tmp_path / "files/graphs/model=toy" / f"prompt={PROMPT}" / "graph.safetensors"
    assert uri == expected.as_posix()
    assert files.file_path("graphs", "graph.safetensors", model="toy", prompt=PROMPT) == expected
    assert files.file_uri("graphs", "graph.safetensors", model="toy", prompt=PROMPT) == uri
    assert expected.read_bytes() == b"abc"
    # A local lake hands out the real file, no copy.
    assert files.local_file("graphs", "graph.safetensors", model="toy", prompt=PROMPT) == expected
    assert files.read_bytes("graphs", "graph.safetensors", model="toy", prompt=PROMPT) == b"abc"
    assert files.has_file("graphs", "graph.safetensors", model="toy", prompt=PROMPT)
    assert not files.has_file("graphs", "graph.safetensors", model="toy")


def test_rewrite_replaces_atomically_and_leaves_no_temporary(tmp_path):
    files = Files(tmp_path)
    source = tmp_path / "src.json"
    source.write_text('{"v": 1}')
    files.write_file("graph_files", "a.json", source, model="toy")
    target = files.file_path("graph_files", "a.json", model="toy")
    inode = os.stat(target).st_ino
    files.write_file("graph_files", "a.json", b'{"v": 2}', model="toy")
    assert target.read_text() == '{"v": 2}'
    assert os.stat(target).st_ino != inode  # a new file renamed over the old one
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_writing_the_file_path_itself_publishes_it(tmp_path):
    files = Files(tmp_path)
    path = files.file_path("plots", "x.png", model="toy")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"png")
    assert files.write_file("plots", "x.png", path, model="toy") == path.as_posix()
    assert path.read_bytes() == b"png"


def test_list_files_skips_temporaries(tmp_path):
    files = Files(tmp_path)
    assert files.list_files("graph_files", model="toy") == []
    files.write_file("graph_files", "b.json", b"1", model="toy")
    files.write_file("graph_files", "a.json", b"2", model="toy")
    files.write_file("graphs", "graph.safetensors", b"3", model="toy", prompt=PROMPT)
    (files.file_path("graph_files", "a.json", model="toy").parent / ".a.json.x.tmp").write_text("")
    assert files.list_files("graph_files", model="toy") == ["a.json", "b.json"]
    assert files.list_files("graphs", model="toy") == [f"prompt={PROMPT}/graph.safetensors"]
    assert files.sweep_files(older_than_s=0) == 1


@pytest.mark.parametrize(
    "name", ["../x", "a/../../x", "/etc/passwd", "", ".hidden", "a//b", "a\\b", "./a"]
)
def test_names_cannot_escape(tmp_path, name):
    files = Files(tmp_path / "lake")
    with pytest.raises(ValueError, match="bad file name"):
        files.write_file("plots", name, b"x", model="toy")
    with pytest.raises(ValueError, match="bad file name"):
        files.file_path("plots", name, model="toy")
    assert not (tmp_path / "x").exists() and not (tmp_path / "lake").exists()


@pytest.mark.parametrize(
    ("kind", "keys", "message"),
    [
        ("..", {"model": "toy"}, "bad file kind"),
        ("a/b", {"model": "toy"}, "bad file kind"),
        ("plots", {"model": "../toy"}, "not a valid key"),
        ("plots", {"model": "Toy"}, "not a valid key"),
        ("plots", {"model": "toy", "prompt": "../../x"}, "not a prompt key"),
        ("plots", {"prompt": PROMPT}, "needs a model"),
        ("plots", {"model": "toy", "run": "1"}, "keyed by model and prompt"),
    ],
)
def test_kinds_and_keys_are_validated(tmp_path, kind, keys, message):
    with pytest.raises(ValueError, match=message):
        Files(tmp_path).write_file(kind, "x.png", b"x", **keys)


def _folder(path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


def test_trees_replace_the_whole_folder(tmp_path):
    files = Files(tmp_path / "lake")
    first = _folder(tmp_path / "v1", {"config.yaml": "a", "layers/0.safetensors": "w0"})
    uri = files.write_tree("transcoders", "set", first, model="toy")
    tree = files.local_tree("transcoders", "set", model="toy")
    assert tree.as_posix() == uri == (tmp_path / "lake/files/transcoders/model=toy/set").as_posix()
    assert (tree / "layers/0.safetensors").read_text() == "w0"
    assert files.has_tree("transcoders", "set", model="toy")
    second = _folder(tmp_path / "v2", {"config.yaml": "b"})
    files.write_tree("transcoders", "set", second, model="toy")
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*")) == ["config.yaml"]
    assert (tree / "config.yaml").read_text() == "b"
    assert sorted(p.name for p in tree.parent.iterdir()) == ["set"]  # nothing left aside
    with pytest.raises(FileNotFoundError):
        files.local_tree("transcoders", "set", model="other")
