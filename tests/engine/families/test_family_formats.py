"""Every preset's replica transcoders load through the hub path in their repo's exact format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open

from ct_engine.presets import PRESETS, preset
from ct_engine.replicas import ReplicaSpec, write_replica_transcoders
from ct_engine.transcoders import (
    CrossLayerTranscoder,
    TranscoderSet,
    load_transcoders,
    parse_transcoder_ref,
)

SPEC = ReplicaSpec()


@pytest.fixture
def hub_transcoders(replica_root, hub):
    """``hub_transcoders(name) -> (root of the hub, parsed ref)``, written on first use."""

    def make(name: str):
        root = replica_root / "hub"
        ref = parse_transcoder_ref(preset(name).transcoders)
        if not (root / ref.repo_id / (ref.subfolder or "") / "config.yaml").exists():
            write_replica_transcoders(root, name, SPEC)
        return root, ref

    return make


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_replica_transcoders_load_from_the_hub(name, hub_transcoders, hub):
    p = preset(name)
    root, ref = hub_transcoders(name)
    config = yaml.safe_load(
        (root / ref.repo_id / (ref.subfolder or "") / "config.yaml").read_text()
    )
    assert config["model_kind"] == p.model_kind and config["model_name"] == p.model_id
    tc = load_transcoders(p.transcoders, d_model=SPEC.d_model, n_layers=SPEC.n_layers)
    assert isinstance(tc, CrossLayerTranscoder if p.is_cross_layer else TranscoderSet)
    assert (tc.feature_input_hook, tc.feature_output_hook) == p.hooks
    assert tc.activation_name == p.activation
    assert tc.skip_connection == p.skip
    assert (tc.n_layers, tc.d_model, tc.d_transcoder) == (
        SPEC.n_layers,
        SPEC.d_model,
        SPEC.d_transcoder,
    )
    assert tc.scan == ref.scan
    assert hub[0] == ("file", ref.repo_id, f"{ref.subfolder or ''}/config.yaml".lstrip("/"), None)
    x = torch.randn(3, SPEC.d_model)
    x_layers = x.expand(SPEC.n_layers, 3, SPEC.d_model)
    assert tc.encode(x_layers).shape == (SPEC.n_layers, 3, SPEC.d_transcoder)
    if p.file_format in ("gemmascope-npz", "gemmascope2-plt", "gemmascope2-clt"):
        # config lists one hf:// file per layer in a second (google/...) repo
        assert len(config["transcoders"]) == SPEC.n_layers
        assert all(e.startswith("hf://google/") for e in config["transcoders"])
        assert sum(c[0] == "file" for c in hub) == 1 + SPEC.n_layers


def _listed_file(root, config_entry: str):
    return root / config_entry.removeprefix("hf://")


def test_gemmascope_npz_layout(hub_transcoders, hub):
    root, ref = hub_transcoders("gemma-2-2b")
    config = yaml.safe_load((root / ref.repo_id / "config.yaml").read_text())
    entry = config["transcoders"][1]
    assert entry.startswith("hf://google/gemma-scope-2b-pt-transcoders/layer_1/width_16k/")
    assert entry.split("/")[-2].startswith("average_l0_") and entry.endswith("/params.npz")
    with np.load(_listed_file(root, entry)) as npz:
        raw = {k: torch.from_numpy(npz[k]) for k in npz.files}
    assert set(raw) == {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"}
    assert raw["W_enc"].shape == (SPEC.d_model, SPEC.d_transcoder)  # (D, F) on disk
    tc = load_transcoders("gemma")
    torch.testing.assert_close(tc.encoder_weight(1), raw["W_enc"].T)


@pytest.mark.parametrize("name", ["gemma-3-1b-it", "gemma-3-270m-pt-clt"])
def test_gemmascope2_layout_and_affine_skip(name, hub_transcoders, hub):
    p = preset(name)
    root, ref = hub_transcoders(name)
    config = yaml.safe_load((root / ref.repo_id / ref.subfolder / "config.yaml").read_text())
    entry = config["transcoders"][0]
    google_repo = "google/" + ref.repo_id.split("/")[1]
    if p.is_cross_layer:
        assert entry == f"hf://{google_repo}/{ref.subfolder}/params_layer_0.safetensors"
    else:
        assert entry == (
            f"hf://{google_repo}/transcoder_all/layer_0_width_16k_l0_small_affine/params.safetensors"
        )
    with safe_open(str(_listed_file(root, entry)), framework="pt") as f:
        raw = {k: f.get_tensor(k) for k in f.keys()}
    assert set(raw) == {"w_enc", "w_dec", "b_enc", "b_dec", "threshold", "affine_skip_connection"}
    n_out = (SPEC.n_layers,) if p.is_cross_layer else ()
    assert raw["w_dec"].shape == (SPEC.d_transcoder, *n_out, SPEC.d_model)
    tc = load_transcoders(p.transcoders)
    torch.testing.assert_close(tc.encoder_weight(0), raw["w_enc"].T)
    x = torch.randn(5, SPEC.d_model)
    torch.testing.assert_close(tc.compute_skip(0, x), x @ raw["affine_skip_connection"])


def test_circuit_tracer_layouts(hub_transcoders, hub):
    """Llama skip PLTs: layer_{i}.safetensors with W_skip, no threshold; CLTs: W_enc_{i} /
    W_dec_{i} with threshold_{i} and no W_skip; Qwen-3 PLTs: JumpReLU layer files."""
    root, ref = hub_transcoders("llama-3.2-1b")
    with safe_open(str(root / ref.repo_id / "layer_0.safetensors"), framework="pt") as f:
        assert set(f.keys()) == {"W_enc", "W_dec", "b_enc", "b_dec", "W_skip"}
        w_skip = f.get_tensor("W_skip")
    x = torch.randn(4, SPEC.d_model)
    torch.testing.assert_close(load_transcoders("llama").compute_skip(0, x), x @ w_skip.T)

    root, ref = hub_transcoders("qwen3-1.7b")
    with safe_open(str(root / ref.repo_id / "layer_1.safetensors"), framework="pt") as f:
        assert "activation_function.threshold" in set(f.keys())

    root, ref = hub_transcoders("gpt-oss-20b-clt")
    folder = root / ref.repo_id
    names = sorted(p.name for p in folder.glob("*.safetensors"))
    assert names == ["W_dec_0.safetensors", "W_dec_1.safetensors"] + [
        "W_enc_0.safetensors",
        "W_enc_1.safetensors",
    ]
    with safe_open(str(folder / "W_enc_1.safetensors"), framework="pt") as f:
        assert set(f.keys()) == {"W_enc_1", "b_enc_1", "b_dec_1", "threshold_1"}
    with safe_open(str(folder / "W_dec_0.safetensors"), framework="pt") as f:
        assert f.get_slice("W_dec_0").get_shape() == [SPEC.d_transcoder, 2, SPEC.d_model]
