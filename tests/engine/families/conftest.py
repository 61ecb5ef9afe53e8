"""Fixtures: tiny replicas of the preset families, served through a monkeypatched hub."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ct_engine.replicas import Replica, build_replica


@pytest.fixture(scope="session")
def replica_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("replicas")


@pytest.fixture(scope="session")
def replica(replica_root):
    """``replica(preset_name) -> Replica`` built once per session under one root."""

    def make(name: str) -> Replica:
        return build_replica(name, replica_root)

    return make


@pytest.fixture
def hub(replica_root, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple]:
    """Serve hub downloads from the replicas' ``hub`` folder, offline, with a private cache.

    Returns the list of download calls (``("file", repo, filename, revision)`` or
    ``("snapshot", repo, patterns, revision)``).
    """
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("CT_CACHE_DIR", str(tmp_path / "ct_cache"))
    root = replica_root / "hub"
    calls: list[tuple] = []

    def hf_hub_download(repo_id, filename, *, revision=None, **kwargs):
        calls.append(("file", repo_id, filename, revision))
        path = root / repo_id / filename
        if not path.is_file():
            raise huggingface_hub.errors.LocalEntryNotFoundError(f"{repo_id}/{filename}")
        return str(path)

    def snapshot_download(repo_id, *, revision=None, allow_patterns=None, **kwargs):
        calls.append(("snapshot", repo_id, tuple(allow_patterns or ()), revision))
        return str(root / repo_id)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    torch.manual_seed(0)
    return calls
