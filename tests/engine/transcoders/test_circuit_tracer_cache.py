"""circuit-tracer's caching API: its argument names, and its cache folder reused read-only."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from ct_engine.tiny import build_random_transcoders
from ct_engine.transcoders import load_transcoders
from ct_engine.transcoders.cache import (
    CIRCUIT_TRACER_CACHE_ENV_VAR,
    cache_entry_path,
    circuit_tracer_cache_root,
    empty_cache,
    is_cached,
)
from ct_engine.transcoders.errors import TranscoderDownloadError
from ct_engine.transcoders.loading import save_transcoders_to_cache

D, F, L = 16, 64, 3


@pytest.fixture
def ct_home(tmp_path, monkeypatch) -> Path:
    """A circuit-tracer cache root of this test's own (its env var, as circuit-tracer reads)."""
    root = tmp_path / "circuit_tracer"
    monkeypatch.setenv(CIRCUIT_TRACER_CACHE_ENV_VAR, str(root))
    return root


def _ct_entry(root: Path, key: str, kind: str = "plt", scan: str | None = None) -> Path:
    """An entry as circuit-tracer's cache writer leaves it: weights, then ``config.yaml``."""
    entry = build_random_transcoders(
        root / key, n_layers=L, d_model=D, d_transcoder=F, kind=kind, seed=3
    )
    if scan is not None:
        config = yaml.safe_load((entry / "config.yaml").read_text())
        (entry / "config.yaml").write_text(yaml.safe_dump({**config, "scan": scan}))
    return entry


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under ``root`` with its content hash and modification time."""
    return {
        str(p.relative_to(root)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
            p.stat().st_mtime_ns,
        )
        for p in sorted(root.rglob("*"))
    }


def test_argument_names_are_circuit_tracers():
    from ct_engine import utils

    assert utils.save_transcoders_to_cache is save_transcoders_to_cache
    assert utils.empty_cache is empty_cache
    save = inspect.signature(save_transcoders_to_cache).parameters
    assert list(save)[:6] == [
        "hf_ref",
        "cache_dir",
        "sequential",
        "device",
        "dtype",
        "delete_hf_cache",
    ]
    assert save["sequential"].default is True and save["delete_hf_cache"].default is True
    assert save["dtype"].default is torch.float32
    assert list(inspect.signature(empty_cache).parameters) == ["hf_ref", "cache_dir"]


def test_default_root_is_circuit_tracers(monkeypatch):
    monkeypatch.delenv(CIRCUIT_TRACER_CACHE_ENV_VAR, raising=False)
    assert circuit_tracer_cache_root() == Path.home() / ".cache" / "circuit_tracer"


def test_ignored_arguments_are_accepted(ct_folder, tmp_path):
    folder = ct_folder()
    entry = save_transcoders_to_cache(
        hf_ref=folder,
        cache_dir=tmp_path / "cache",
        sequential=False,
        device="cpu",
        dtype=torch.float16,
        delete_hf_cache=False,
    )
    assert is_cached(folder, tmp_path / "cache")
    assert load_transcoders(folder).scan == load_transcoders(entry).scan
    with safe_open(str(entry / "layer_0.safetensors"), framework="pt") as f:
        assert f.get_tensor("W_enc").dtype == torch.float16
    empty_cache(hf_ref=folder, cache_dir=tmp_path / "cache")
    assert not entry.exists()


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_hub_ref_loads_from_circuit_tracers_cache_read_only(ct_home, tmp_path, kind):
    ct_entry = _ct_entry(ct_home, "owner/repo/sub@v1", kind=kind)
    before = _snapshot(ct_home)
    # No entry of ours, offline, hub unreachable: circuit-tracer's entry serves the load.
    tc = load_transcoders("owner/repo/sub@v1", cache_dir=tmp_path / "ours", lazy_encoder=True)
    assert tc.scan == "owner/repo//sub@v1"  # named by the reference, not by the folder
    assert {s.path.parent for s in tc.lazy_sources} == {ct_entry}
    x = torch.randn(L, 4, D)
    torch.testing.assert_close(tc(x), load_transcoders(ct_entry)(x))
    assert not (tmp_path / "ours").exists()
    assert _snapshot(ct_home) == before


def test_save_to_cache_converts_from_circuit_tracers_entry(ct_home, tmp_path):
    ct_entry = _ct_entry(ct_home, "owner/repo", scan="owner/repo")
    before = _snapshot(ct_home)
    ours = save_transcoders_to_cache("owner/repo", tmp_path / "ours")
    assert ours == cache_entry_path("owner/repo", tmp_path / "ours") != ct_entry
    assert is_cached("owner/repo", tmp_path / "ours")
    x = torch.randn(L, 4, D)
    torch.testing.assert_close(
        load_transcoders("owner/repo", cache_dir=tmp_path / "ours")(x),
        load_transcoders(ct_entry)(x),
    )
    # Emptying our cache, an entry or all of it, leaves circuit-tracer's alone.
    empty_cache("owner/repo", tmp_path / "ours")
    empty_cache(cache_dir=tmp_path / "ours")
    assert not (tmp_path / "ours").exists()
    assert _snapshot(ct_home) == before


def test_our_entry_wins_and_partial_entries_are_skipped(ct_home, ct_folder, tmp_path):
    # circuit-tracer writes config.yaml last: a folder without it is an unfinished entry.
    partial = _ct_entry(ct_home, "owner/partial")
    (partial / "config.yaml").unlink()
    with pytest.raises(TranscoderDownloadError, match="owner/partial"):
        load_transcoders("owner/partial", cache_dir=tmp_path / "ours")

    _ct_entry(ct_home, "owner/both")
    mine = ct_folder(name="mine", kind="clt")
    save_transcoders_to_cache(mine, tmp_path / "scratch")
    ours = cache_entry_path("owner/both", tmp_path / "ours")
    ours.parent.mkdir(parents=True)
    cache_entry_path(mine, tmp_path / "scratch").rename(ours)
    assert load_transcoders("owner/both", cache_dir=tmp_path / "ours").is_cross_layer
