"""Fixtures: tiny replicas of the preset families, served through a monkeypatched hub."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ct_engine.replicas import Replica, build_replica, local_hub


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
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("CT_CACHE_DIR", str(tmp_path / "ct_cache"))
    torch.manual_seed(0)
    with local_hub(replica_root / "hub") as calls:
        yield calls
