"""Reference parsing, scan ids, cache locations, and offline behaviour for hub references."""

import shutil
import time
from pathlib import Path

import pytest
import torch
import yaml

from ct_engine.transcoders import (
    TranscoderDownloadError,
    TranscoderRef,
    cache_entry_path,
    cache_root,
    empty_cache,
    is_cached,
    load_transcoders,
    parse_hf_uri,
    parse_transcoder_ref,
    save_transcoders,
    save_transcoders_to_cache,
)


@pytest.mark.parametrize(
    "text,repo_id,subfolder,revision,scan",
    [
        ("gemma", "mwhanna/gemma-scope-transcoders", None, None, "mwhanna/gemma-scope-transcoders"),
        ("llama", "mntss/transcoder-Llama-3.2-1B", None, None, "mntss/transcoder-Llama-3.2-1B"),
        ("owner/repo", "owner/repo", None, None, "owner/repo"),
        ("owner/repo@v2", "owner/repo", None, "v2", "owner/repo@v2"),
        (
            "mwhanna/gemma-scope-2-1b-pt/clt/width_262k_l0_medium_affine",
            "mwhanna/gemma-scope-2-1b-pt",
            "clt/width_262k_l0_medium_affine",
            None,
            "mwhanna/gemma-scope-2-1b-pt//clt/width_262k_l0_medium_affine",
        ),
        ("a/b/c/d@new-training", "a/b", "c/d", "new-training", "a/b//c/d@new-training"),
        ("hf://owner/repo", "owner/repo", None, None, "owner/repo"),
        ("hf://owner/repo/sub/dir?revision=abc123", "owner/repo", "sub/dir", "abc123", None),
        ("hf://owner/repo/x?revision=refs/pr/3", "owner/repo", "x", "refs/pr/3", None),
    ],
)
def test_parse_hub_refs(text, repo_id, subfolder, revision, scan, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ref = parse_transcoder_ref(text)
    assert (ref.repo_id, ref.subfolder, ref.revision, ref.local_path) == (
        repo_id,
        subfolder,
        revision,
        None,
    )
    assert not ref.is_local
    if scan is not None:
        assert ref.scan == scan


def test_scan_and_cache_key():
    ref = TranscoderRef(repo_id="o/r", subfolder="s/t", revision="refs/pr/1")
    assert ref.scan == "o/r//s/t@refs/pr/1"
    assert ref.cache_key == "o/r/s/t@refs--pr--1"
    assert str(ref) == "o/r/s/t@refs/pr/1"
    assert parse_transcoder_ref(str(ref)) == ref


def test_parse_hf_uri():
    assert parse_hf_uri("hf://o/r/layer_0/params.npz?revision=v1") == (
        "o/r",
        "layer_0/params.npz",
        "v1",
    )
    assert parse_hf_uri("hf://o/r") == ("o/r", "", None)
    with pytest.raises(ValueError):
        parse_hf_uri("hf://only-owner")
    with pytest.raises(ValueError):
        parse_transcoder_ref("hf://")


@pytest.mark.parametrize(
    "text", ["./owner/repo", "/abs/path/x", "~/transcoders", "single", "a b/c"]
)
def test_parse_local_refs(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ref = parse_transcoder_ref(text)
    assert ref.is_local and ref.repo_id is None and ref.scan is None
    assert ref.local_path == Path(text).expanduser()


def test_existing_path_wins(tmp_path, monkeypatch):
    """A string that names an existing path is local even if it looks like a hub ref."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "repo").mkdir(parents=True)
    (tmp_path / "gemma").mkdir()
    assert parse_transcoder_ref("owner/repo").local_path == Path("owner/repo")
    assert parse_transcoder_ref("gemma").is_local
    assert not parse_transcoder_ref("owner/other").is_local
    assert parse_transcoder_ref(Path("anything")).is_local


def test_unknown_hub_ref_fails_fast_offline(tmp_path):
    start = time.monotonic()
    with pytest.raises(TranscoderDownloadError, match="HF_HUB_OFFLINE") as info:
        load_transcoders("nobody-xyz/no-such-transcoders", cache_dir=tmp_path / "cache")
    assert time.monotonic() - start < 10
    assert "nobody-xyz/no-such-transcoders" in str(info.value)
    with pytest.raises(TranscoderDownloadError):
        save_transcoders_to_cache("hf://nobody-xyz/nothing/sub?revision=r1", tmp_path / "c")


def test_hub_ref_is_served_from_cache_offline(ct_folder, tmp_path):
    """A hub reference with a complete cache entry loads without touching the hub."""
    source = load_transcoders(ct_folder(kind="clt", skip=True))
    source.scan = "owner/repo//sub@v1"
    entry = cache_entry_path("owner/repo/sub@v1", cache_dir=tmp_path / "cache")
    assert entry == tmp_path / "cache" / "owner" / "repo" / "sub@v1"
    save_transcoders(source, entry)
    assert is_cached("owner/repo/sub@v1", tmp_path / "cache")
    tc = load_transcoders("owner/repo/sub@v1", cache_dir=tmp_path / "cache", lazy_encoder=True)
    assert tc.scan == "owner/repo//sub@v1" and tc.skip_connection and tc.lazy_encoder


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("CT_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("CT_CACHE_DIR")
    assert cache_root() == Path.home() / ".cache" / "ct_lakehouse" / "transcoders"


def test_cache_uses_env_root_and_empty_cache(ct_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("CT_CACHE_DIR", str(tmp_path / "env"))
    folder = ct_folder()
    entry = save_transcoders_to_cache(folder)
    assert entry.parent.parent == tmp_path / "env" and entry.parent.name == "local"
    assert is_cached(folder)
    assert save_transcoders_to_cache(folder) == entry  # already cached: kept
    empty_cache(folder)
    assert not is_cached(folder)
    save_transcoders_to_cache(folder)
    empty_cache()
    assert not (tmp_path / "env").exists()


def test_local_cache_keys_differ_per_folder(tmp_path):
    a = parse_transcoder_ref(tmp_path / "x" / "tc")
    b = parse_transcoder_ref(tmp_path / "y" / "tc")
    assert a.cache_key != b.cache_key
    assert a.cache_key.startswith("local/tc-")


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """Serve hub downloads from local folders ``tmp_path/hub/<owner>/<repo>``."""
    import huggingface_hub

    root = tmp_path / "hub"
    calls = []

    def hf_hub_download(repo_id, filename, *, revision=None, **kwargs):
        calls.append(("file", repo_id, filename, revision))
        path = root / repo_id / filename
        if not path.is_file():
            raise huggingface_hub.errors.LocalEntryNotFoundError(f"{repo_id}/{filename}")
        return str(path)

    def snapshot_download(repo_id, *, revision=None, allow_patterns=None, **kwargs):
        calls.append(("snapshot", repo_id, tuple(allow_patterns), revision))
        return str(root / repo_id)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return root, calls


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_hub_folder_load_and_cache(fake_hub, ct_folder, tmp_path, kind):
    root, calls = fake_hub
    folder = ct_folder(name="hub/owner/repo/sub/set", kind=kind, skip=True)
    local = load_transcoders(folder)
    tc = load_transcoders("owner/repo/sub/set@v1", cache_dir=tmp_path / "cache")
    assert tc.scan == "owner/repo//sub/set@v1"
    assert (tc.config["repo_id"], tc.config["revision"]) == ("owner/repo", "v1")
    assert calls[0] == ("file", "owner/repo", "sub/set/config.yaml", "v1")
    assert calls[1][0] == "snapshot" and all(p.startswith("sub/set/") for p in calls[1][2])
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(tc(x), local(x))

    entry = save_transcoders_to_cache("owner/repo/sub/set@v1", tmp_path / "cache")
    assert entry == tmp_path / "cache" / "owner" / "repo" / "sub" / "set@v1"
    n_calls = len(calls)
    cached = load_transcoders("owner/repo/sub/set@v1", cache_dir=tmp_path / "cache")
    assert len(calls) == n_calls, "served from the cache"
    assert cached.scan == "owner/repo//sub/set@v1" and "repo_id" not in cached.config
    torch.testing.assert_close(cached(x), local(x))


def test_hub_listed_hf_uris(fake_hub, gemmascope_folder, tmp_path):
    """A config listing hf:// files (GemmaScope style) downloads each one."""
    root, calls = fake_hub
    folder, _ = gemmascope_folder()
    shutil.copytree(folder, root / "google" / "scope")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["transcoders"] = [f"hf://google/scope/{p}?revision=r2" for p in config["transcoders"]]
    (root / "mine" / "cfg").mkdir(parents=True)
    (root / "mine" / "cfg" / "config.yaml").write_text(yaml.safe_dump(config))
    tc = load_transcoders("mine/cfg")
    assert ("file", "google/scope", "layer_1/width_16k/params.npz", "r2") in calls
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(tc(x), load_transcoders(folder)(x))
