"""Readers for every format, our writer, and load → cache → reload round-trips."""

from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from ct_engine.transcoders import (
    CrossLayerTranscoder,
    Transcoders,
    TranscoderSet,
    cache_entry_path,
    is_cached,
    load_transcoders,
    save_transcoders,
    save_transcoders_to_cache,
)

D, F, L = 16, 64, 3  # the sizes the conftest builders use
T = 7


def _assert_same(a: Transcoders, b: Transcoders) -> None:
    """Same kind, dims, activation, skip, hooks, weights and behaviour."""
    assert type(a) is type(b)
    assert (a.n_layers, a.d_model, a.d_transcoder) == (b.n_layers, b.d_model, b.d_transcoder)
    assert (a.activation_name, a.topk_k, a.skip_connection) == (
        b.activation_name,
        b.topk_k,
        b.skip_connection,
    )
    assert (a.feature_input_hook, a.feature_output_hook) == (
        b.feature_input_hook,
        b.feature_output_hook,
    )
    for layer in range(a.n_layers):
        assert torch.equal(a.encoder_weight(layer), b.encoder_weight(layer))
        assert torch.equal(a.decoder_weight(layer), b.decoder_weight(layer))
        x = torch.randn(4, a.d_model)
        if a.skip_connection:
            assert torch.equal(a.compute_skip(layer, x), b.compute_skip(layer, x))
    x = torch.randn(a.n_layers, T, a.d_model)
    assert torch.equal(a.encode(x), b.encode(x))
    assert torch.equal(a(x), b(x))
    ca, cb = a.compute_attribution_components(x), b.compute_attribution_components(x)
    assert torch.equal(ca.decoder_vecs, cb.decoder_vecs)
    assert torch.equal(ca.reconstruction, cb.reconstruction)


def _round_trip(tc: Transcoders, ref, tmp_path: Path) -> Transcoders:
    """Save through the cache API and through save_transcoders; both reload identically."""
    entry = save_transcoders_to_cache(ref, cache_dir=tmp_path / "cache")
    assert entry == cache_entry_path(ref, cache_dir=tmp_path / "cache")
    assert is_cached(ref, cache_dir=tmp_path / "cache")
    cached = load_transcoders(entry)
    _assert_same(tc, cached)
    direct = load_transcoders(save_transcoders(tc, tmp_path / "direct"))
    _assert_same(tc, direct)
    return cached


@pytest.mark.parametrize(
    "activation,skip", [("relu", False), ("jump_relu", False), ("jump_relu", True)]
)
def test_circuit_tracer_plt_round_trip(ct_folder, tmp_path, activation, skip):
    folder = ct_folder(activation=activation, skip=skip, model_name="tiny/llama")
    tc = load_transcoders(folder)
    assert isinstance(tc, TranscoderSet) and tc.n_layers == L
    with safe_open(str(folder / "layer_1.safetensors"), framework="pt") as f:
        assert torch.equal(tc[1].W_enc, f.get_tensor("W_enc"))
        assert torch.equal(tc[1].b_dec, f.get_tensor("b_dec"))
        if skip:
            assert torch.equal(tc[1].W_skip, f.get_tensor("W_skip"))
    assert tc.scan == str(folder)
    cached = _round_trip(tc, folder, tmp_path)
    entry = cache_entry_path(folder, cache_dir=tmp_path / "cache")
    config = yaml.safe_load((entry / "config.yaml").read_text())
    assert config["model_name"] == "tiny/llama" and config["scan"] == str(folder)
    assert cached.scan == str(folder)


def test_topk_k_survives_caching(ct_folder, tmp_path):
    """[suspected bug] circuit-tracer re-saves a TopK set without k and it reloads
    as ReLU; our cache keeps `activation: topk` and `k`."""
    folder = ct_folder(activation="topk", k=5, skip=True)
    tc = load_transcoders(folder)
    assert tc.activation_name == "topk" and tc.topk_k == 5
    cached = _round_trip(tc, folder, tmp_path)
    assert cached.activation_name == "topk" and cached.topk_k == 5
    entry = cache_entry_path(folder, cache_dir=tmp_path / "cache")
    config = yaml.safe_load((entry / "config.yaml").read_text())
    assert (config["activation"], config["k"]) == ("topk", 5)


def test_plt_k_from_layer_file(ct_folder):
    """circuit-tracer's layer writer stores `k` as a scalar tensor in the layer file."""
    from safetensors.torch import load_file, save_file

    folder = ct_folder(activation="topk", k=5)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    del config["k"]
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    for i in range(L):
        path = folder / f"layer_{i}.safetensors"
        tensors = load_file(str(path))
        tensors["k"] = torch.tensor(4)
        save_file(tensors, str(path))
    assert load_transcoders(folder).topk_k == 4


@pytest.mark.parametrize("activation,skip", [("relu", False), ("jump_relu", True)])
def test_circuit_tracer_clt_round_trip(ct_folder, tmp_path, activation, skip):
    folder = ct_folder(kind="clt", activation=activation, skip=skip)
    tc = load_transcoders(folder, lazy_decoder=False)
    assert isinstance(tc, CrossLayerTranscoder) and tc.n_layers == L
    with safe_open(str(folder / "W_dec_1.safetensors"), framework="pt") as f:
        assert torch.equal(tc.W_dec[1], f.get_tensor("W_dec_1"))
    assert tc.W_dec[1].shape == (F, L - 1, D)
    _round_trip(tc, folder, tmp_path)


def test_clt_skip_survives_caching(ct_folder, tmp_path):
    """[suspected bug] circuit-tracer's CLT format neither reads nor writes a skip,
    so caching an affine CLT silently drops it; ours stores `W_skip_{i}` and reloads it."""
    folder = ct_folder(kind="clt", skip=True)
    tc = load_transcoders(folder)
    assert tc.skip_connection
    cached = _round_trip(tc, folder, tmp_path)
    assert cached.skip_connection
    assert torch.equal(cached.W_skip, tc.W_skip)
    entry = cache_entry_path(folder, cache_dir=tmp_path / "cache")
    with safe_open(str(entry / "W_enc_2.safetensors"), framework="pt") as f:
        assert torch.equal(f.get_tensor("W_skip_2"), tc.W_skip[2])


def _jump(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return z * (z > theta)


def test_gemmascope_npz(gemmascope_folder, tmp_path):
    folder, raw = gemmascope_folder()
    tc = load_transcoders(folder, lazy_encoder=True, lazy_decoder=True)
    assert not tc.lazy_encoder and not tc.lazy_decoder, "npz laziness is silently disabled"
    assert tc.activation_name == "jump_relu" and tc.config["model_name"] == "google/gemma-2-2b"
    x = torch.randn(L, T, D)
    for i, r in enumerate(raw):
        w_enc = torch.from_numpy(r["W_enc"])
        assert torch.equal(tc[i].W_enc, w_enc.T)
        a = _jump(x[i] @ w_enc + torch.from_numpy(r["b_enc"]), torch.from_numpy(r["threshold"]))
        expected = a @ torch.from_numpy(r["W_dec"]) + torch.from_numpy(r["b_dec"])
        torch.testing.assert_close(tc(x)[i], expected, atol=1e-5, rtol=1e-5)
    cached = _round_trip(tc, folder, tmp_path)
    lazy = load_transcoders(cache_entry_path(folder, tmp_path / "cache"), lazy_encoder=True)
    assert lazy.lazy_encoder and lazy.lazy_decoder, "the cached copy can be lazy"
    _assert_same(cached, lazy)


@pytest.mark.parametrize("lazy", [False, True])
def test_gemmascope2_plt_affine_skip(gemmascope2_plt_folder, tmp_path, lazy):
    folder, raw = gemmascope2_plt_folder(skip=True)
    tc = load_transcoders(folder, lazy_encoder=lazy, lazy_decoder=lazy)
    assert tc.skip_connection and tc.activation_name == "jump_relu"
    assert tc.lazy_encoder == lazy
    x = torch.randn(L, T, D)
    out = tc(x)
    for i, r in enumerate(raw):
        assert torch.equal(tc[i].W_skip, r["affine_skip_connection"].T)
        a = _jump(x[i] @ r["w_enc"] + r["b_enc"], r["threshold"])
        expected = a @ r["w_dec"] + r["b_dec"] + x[i] @ r["affine_skip_connection"]
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=1e-5)
    _round_trip(tc, folder, tmp_path)


@pytest.mark.parametrize("lazy", [False, True])
def test_gemmascope2_clt_all_layers_and_affine_skip(gemmascope2_clt_folder, tmp_path, lazy):
    """[suspected bug] circuit-tracer stacks range(max(keys)) and loses the last
    layer; every listed layer is loaded here. The affine skip is stacked untransposed."""
    folder, raw = gemmascope2_clt_folder(n_layers=4, skip=True)
    tc = load_transcoders(folder, lazy_encoder=lazy, lazy_decoder=lazy, n_layers=4)
    assert isinstance(tc, CrossLayerTranscoder) and tc.n_layers == 4
    assert torch.equal(tc.encoder_weight(3), raw[3]["w_enc"].T)
    assert torch.equal(tc.decoder_weight(3), raw[3]["w_dec"][:, 3:])
    assert torch.equal(tc.W_skip[3], raw[3]["affine_skip_connection"])
    x = torch.randn(4, T, D)
    out = tc(x)
    acts = [_jump(x[i] @ r["w_enc"] + r["b_enc"], r["threshold"]) for i, r in enumerate(raw)]
    for j in range(4):
        expected = raw[j]["b_dec"] + x[j] @ raw[j]["affine_skip_connection"]
        for i in range(j + 1):
            expected = expected + acts[i] @ raw[i]["w_dec"][:, j]
        torch.testing.assert_close(out[j], expected, atol=1e-5, rtol=1e-5)
    cached = _round_trip(tc, folder, tmp_path)
    assert cached.skip_connection and cached.n_layers == 4


def test_listed_circuit_tracer_layer_files(ct_folder, tmp_path):
    """A `transcoders:` list may name circuit-tracer layer files (the Llama skip-PLT config)."""
    folder = ct_folder(skip=True)
    listed = tmp_path / "listed"
    listed.mkdir()
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["transcoders"] = [str(folder / f"layer_{i}.safetensors") for i in range(L)]
    (listed / "config.yaml").write_text(yaml.safe_dump(config))
    _assert_same(load_transcoders(folder), load_transcoders(listed))


def test_save_replaces_existing_directory_atomically(ct_folder, tmp_path, monkeypatch):
    import ct_engine.transcoders.saving as saving

    first = load_transcoders(ct_folder(name="a", activation="relu"))
    second = load_transcoders(ct_folder(name="b", activation="jump_relu", seed=1))
    target = tmp_path / "out" / "entry"
    save_transcoders(first, target)
    save_transcoders(second, target)
    _assert_same(second, load_transcoders(target))
    assert sorted(p.name for p in target.parent.iterdir()) == ["entry"], "no temp dirs left"

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(saving, "write_transcoder_set", boom)
    with pytest.raises(RuntimeError):
        save_transcoders(first, target)
    _assert_same(second, load_transcoders(target))
    assert sorted(p.name for p in target.parent.iterdir()) == ["entry"]


def test_save_refuses_to_overwrite_lazy_source(ct_folder):
    folder = ct_folder()
    tc = load_transcoders(folder, lazy_decoder=True)
    with pytest.raises(ValueError, match="lazily"):
        save_transcoders(tc, folder)
    save_transcoders(load_transcoders(folder, lazy_decoder=False), folder)


def test_cache_entry_without_config_is_not_cached(ct_folder, tmp_path):
    folder = ct_folder()
    entry = cache_entry_path(folder, tmp_path / "cache")
    entry.mkdir(parents=True)
    (entry / "layer_0.safetensors").write_bytes(b"partial")
    assert not is_cached(folder, tmp_path / "cache")
    save_transcoders_to_cache(folder, tmp_path / "cache")
    assert is_cached(folder, tmp_path / "cache")


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_config_activation_overrides_thresholds(ct_folder, kind):
    """Precedence: config `activation` > threshold tensors present (JumpReLU) > ReLU."""
    folder = ct_folder(kind=kind, activation="jump_relu")
    assert load_transcoders(folder).activation_name == "jump_relu"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump({**config, "activation": "relu"}))
    tc = load_transcoders(folder)
    assert tc.activation_name == "relu"
    x = torch.randn(L, T, D)
    assert torch.equal(tc.encode(x), torch.relu(tc.encode(x, apply_activation_function=False)))
    relu_folder = ct_folder(name="plain", kind=kind, activation="relu")
    (relu_folder / "config.yaml").write_text(yaml.safe_dump(config))  # no activation key
    assert load_transcoders(relu_folder).activation_name == "relu"
