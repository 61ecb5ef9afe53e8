"""scan_name: what a viewer's ``scan`` says about a transcoder set, never a local path."""

from __future__ import annotations

import pytest

from ct_engine.presets import TRANSCODERS
from ct_engine.transcoders.refs import scan_name


@pytest.mark.parametrize(
    ("scan", "name"),
    [
        ("toy-world-plt", "toy-world-plt"),  # a registered name
        ("mntss/gemma-scope-transcoders", "mntss/gemma-scope-transcoders"),  # a hub id
        (
            "mwhanna/gemma-scope-transcoders//layers@v2",
            "mwhanna/gemma-scope-transcoders//layers@v2",
        ),
        ("gemma", "mwhanna/gemma-scope-transcoders"),  # a shortcut: its repository
        ("hf://owner/repo/sub?revision=main", "owner/repo//sub@main"),
        ("/data/sets/my-plt", "my-plt"),  # an absolute folder: its name
        ("/data/sets/my-plt/", "my-plt"),
        ("./my-plt", "my-plt"),
        ("~/sets/my-plt", "my-plt"),
        (None, None),
    ],
)
def test_scan_names(scan, name):
    assert scan_name(scan) == name


def test_a_shipped_folder_is_named_by_its_registered_name():
    assert scan_name(TRANSCODERS["toy-world-clt"]) == "toy-world-clt"
    assert scan_name(str(TRANSCODERS["toy-world-plt"])) == "toy-world-plt"


def test_a_local_folder_is_named_by_its_config_scan(tmp_path, monkeypatch):
    named = tmp_path / "checkpoint-7"
    named.mkdir()
    (named / "config.yaml").write_text("model_kind: transcoder_set\nscan: my-team/plt-v3\n")
    assert scan_name(str(named)) == "my-team/plt-v3"
    # A config whose scan is itself a path (a set cached from a local folder) gives no name.
    (named / "config.yaml").write_text(f"scan: {tmp_path / 'elsewhere'}\n")
    assert scan_name(str(named)) == "checkpoint-7"
    # A relative folder that exists is local, even when it reads like a hub id.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sets" / "plt").mkdir(parents=True)
    assert scan_name("sets/plt") == "plt"
