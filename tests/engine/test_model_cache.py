"""ModelCache: one load per key, the key covers what changes the model, presets load through
the engine's preset loader (a tiny replica on nnsight, offline)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ct_engine import presets
from ct_engine.model_cache import ModelCache
from ct_engine.replicas import build_replica, local_hub
from ct_engine.transcoders import parse_transcoder_ref
from ct_lake.config import ModelEntry

REPO = Path(__file__).resolve().parents[2]


def _toy(**fields) -> ModelEntry:
    return ModelEntry(name="toy", model="toy-world", transcoders="toy-world-plt", **fields)


def test_toy_world_loads_once_per_key():
    cache = ModelCache()
    model = cache.get(_toy())
    assert model.backend == "transformerlens" and model.dtype == torch.float32
    assert model.device == torch.device("cpu") and model.n_layers == 4
    # No device is the default device (the CPU here): the same key, the same model.
    assert cache.get(_toy(device="cpu", batch_size=8)) is model
    assert [name for name, _ in cache.load_events] == ["toy"] and len(cache) == 1

    # What changes the model changes the key: transcoders (override or entry) and dtype.
    clt = cache.get(_toy(), transcoders=str(presets.TRANSCODERS["toy-world-clt"]))
    assert clt is not model and clt.transcoders.n_layers == 4 and clt.dtype == torch.float32
    half = cache.get(_toy(dtype="bfloat16"))
    assert half is not model and half.dtype == torch.bfloat16
    assert len(cache) == 3 and len(cache.load_events) == 3
    assert [k[2:5] for k in cache.loaded()] == [
        ("toy-world-plt", "transformerlens", "float32"),
        (str(presets.TRANSCODERS["toy-world-clt"]), "transformerlens", "float32"),
        ("toy-world-plt", "transformerlens", "bfloat16"),
    ]
    # The same tokens give the float32 model's logits to bfloat16 precision.
    tokens = model.tokenizer("The capital of the country where Mosho lives is")["input_ids"]
    tokens = torch.tensor([model.tokenizer.bos_token_id, *tokens])
    with torch.no_grad():
        full, _ = model.get_activations(tokens)
        low, _ = half.get_activations(tokens)
    assert torch.allclose(full.float(), low.float(), atol=0.25, rtol=0.05)

    cache.clear()
    assert len(cache) == 0 and cache.load_events == []
    assert cache.get(_toy()) is not model


@pytest.fixture
def replica_hub(tmp_path, monkeypatch):
    """``(replica root, hub calls)``: hub downloads served from the replicas' folder, offline."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("CT_CACHE_DIR", str(tmp_path / "ct_cache"))
    with local_hub(tmp_path / "replicas" / "hub") as calls:
        yield tmp_path / "replicas", calls


@pytest.mark.parametrize("name", ["gemma-3-4b-pt", "gemma-3-270m-it-clt"])
def test_a_preset_entry_loads_its_replica_on_nnsight(replica_hub, monkeypatch, name):
    root, calls = replica_hub
    p = presets.preset(name)
    replica = build_replica(name, root)
    # The preset's hub model id names the replica's folder, as a registered name would.
    monkeypatch.setitem(presets.MODELS, p.model_id, replica.model_dir)
    entry = ModelEntry(name="g3", preset=name, device="cpu")
    assert (entry.backend, entry.dtype) == ("nnsight", "float32")

    cache = ModelCache()
    model = cache.get(entry)
    assert model.backend == "nnsight" and model.cfg.original_architecture == p.architecture
    assert model.model_name == p.model_id and model.zero_positions == p.zero_positions
    assert model.scan == parse_transcoder_ref(p.transcoders).scan  # through the (local) hub
    assert calls and calls[0][1] == parse_transcoder_ref(p.transcoders).repo_id
    assert cache.get(entry) is model and len(cache.load_events) == 1
    if name.endswith("-it-clt"):
        assert model.zero_positions == slice(0, 4) and model.transcoders.n_layers == 2


def test_importing_the_cache_does_not_import_torch():
    script = "import sys, ct_engine.model_cache; assert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
