"""compute_attribution_components, encode/decode and decoder slices for PLT and CLT sets."""

import pytest
import torch

from ct_engine.transcoders import (
    AttributionComponents,
    CrossLayerTranscoder,
    TranscoderSet,
    load_transcoders,
)

D, F, L = 16, 64, 3  # the sizes the conftest builders use
T = 9
PLT_CASES = [
    ("relu", False),
    ("relu", True),
    ("jump_relu", False),
    ("jump_relu", True),
    ("topk", False),
    ("topk", True),
]
CLT_CASES = [("relu", False), ("jump_relu", False), ("jump_relu", True)]


def _inputs(n_pos: int = T) -> torch.Tensor:
    return torch.randn(L, n_pos, D)


def _check_common(tc, comp: AttributionComponents, x: torch.Tensor) -> None:
    """Checks shared by PLTs and CLTs: reconstruction, zeroing, ordering, encoder rows."""
    n_layers, n_pos, _ = x.shape
    acts = tc.encode(x)
    acts[:, 0] = 0
    dense = tc.decode(acts, x)
    assert comp.reconstruction.shape == (n_layers, n_pos, D)
    torch.testing.assert_close(comp.reconstruction, dense, atol=1e-5, rtol=1e-5)
    # Position ≥ 1 matches the plain dense forward; position 0 carries no feature.
    torch.testing.assert_close(comp.reconstruction[:, 1:], tc(x)[:, 1:], atol=1e-5, rtol=1e-5)

    am = comp.activation_matrix
    assert am.is_sparse and am.is_coalesced() and am.shape == (n_layers, n_pos, F)
    idx = am.indices()
    assert (idx[1] != 0).all(), "position 0 must be zeroed"
    assert (am.values() != 0).all(), "exact zeros must not be stored"
    torch.testing.assert_close(am.to_dense(), acts)
    keys = (idx[0] * n_pos + idx[1]) * F + idx[2]
    assert torch.equal(keys, keys.sort().values), "indices sorted by (layer, pos, feature)"

    n_act = am._nnz()
    assert comp.n_active == n_act
    assert comp.encoder_vecs.shape == (n_act, D)
    expected_enc = torch.stack([tc.encoder_weight(int(l))[int(f)] for l, _, f in idx.T])
    torch.testing.assert_close(comp.encoder_vecs, expected_enc)

    n_dec = comp.n_decoder_rows
    assert comp.decoder_vecs.shape == (n_dec, D)
    assert comp.decoder_locations.shape == (2, n_dec)
    assert comp.encoder_to_decoder_map.shape == (n_dec,)
    loc_keys = comp.decoder_locations[0] * n_pos + comp.decoder_locations[1]
    assert torch.equal(loc_keys, loc_keys.sort().values), "decoder rows sorted by (layer, pos)"
    offsets = comp.decoder_layer_offsets()
    for layer in range(n_layers):
        block = comp.decoder_locations[0, offsets[layer] : offsets[layer + 1]]
        assert (block == layer).all()

    # Decoder rows + b_dec + skip add up to the reconstruction.
    summed = (
        torch.zeros(n_layers * n_pos, D)
        .index_add_(0, loc_keys, comp.decoder_vecs)
        .reshape(n_layers, n_pos, D)
    )
    expected = comp.reconstruction - tc.decode(torch.zeros_like(acts), x)
    torch.testing.assert_close(summed, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("activation,skip", PLT_CASES)
def test_plt_components_match_dense(ct_folder, activation, skip):
    tc = load_transcoders(ct_folder(activation=activation, skip=skip, k=6), lazy_decoder=False)
    assert isinstance(tc, TranscoderSet) and not tc.is_cross_layer
    assert tc.activation_name == activation and tc.skip_connection == skip
    x = _inputs()
    comp = tc.compute_attribution_components(x)
    _check_common(tc, comp, x)
    n_act = comp.n_active
    assert n_act > 0 and comp.n_decoder_rows == n_act
    assert torch.equal(comp.encoder_to_decoder_map, torch.arange(n_act))
    idx = comp.activation_matrix.indices()
    assert torch.equal(comp.decoder_locations, idx[:2])
    values = comp.activation_matrix.values()
    expected = torch.stack(
        [v * tc.decoder_weight(int(l))[int(f)] for (l, _, f), v in zip(idx.T, values, strict=True)]
    )
    torch.testing.assert_close(comp.decoder_vecs, expected)


@pytest.mark.parametrize("activation,skip", CLT_CASES)
def test_clt_components_match_dense(ct_folder, activation, skip):
    tc = load_transcoders(ct_folder(kind="clt", activation=activation, skip=skip))
    assert isinstance(tc, CrossLayerTranscoder) and tc.is_cross_layer
    assert tc.activation_name == activation and tc.skip_connection == skip
    x = _inputs()
    comp = tc.compute_attribution_components(x)
    _check_common(tc, comp, x)
    idx, values = comp.activation_matrix.indices(), comp.activation_matrix.values()
    assert comp.n_decoder_rows == int((L - idx[0]).sum()) >= comp.n_active
    # Every decoder row is a·W_dec[i][f, j − i] of the feature the map points to.
    src = idx[:, comp.encoder_to_decoder_map]
    out_layer, pos = comp.decoder_locations
    assert torch.equal(pos, src[1]) and (out_layer >= src[0]).all()
    expected = torch.stack(
        [
            values[a] * tc.decoder_weight(int(i))[int(f), int(j - i)]
            for a, (i, _, f), j in zip(comp.encoder_to_decoder_map, src.T, out_layer, strict=True)
        ]
    )
    torch.testing.assert_close(comp.decoder_vecs, expected)


def test_clt_decode_sums_source_layers(ct_folder):
    """Output layer j = Σ_{i≤j} a_i·W_dec[i][:, j−i] + b_dec[j] + x_j·W_skip[j] (no transpose)."""
    tc = load_transcoders(ct_folder(kind="clt", skip=True), lazy_decoder=False)
    x = _inputs()
    acts = tc.encode(x)
    for j in range(L):
        expected = tc.b_dec[j] + x[j] @ tc.W_skip[j]
        for i in range(j + 1):
            expected = expected + acts[i] @ tc.W_dec[i][:, j - i]
        torch.testing.assert_close(tc.decode(acts, x)[j], expected, atol=1e-5, rtol=1e-5)


def test_plt_decode_uses_transposed_skip(ct_folder):
    """PLT: ŷ = a·W_dec + b_dec + x·W_skipᵀ."""
    tc = load_transcoders(ct_folder(skip=True), lazy_decoder=False)
    x = _inputs()
    acts = tc.encode(x)
    for layer, plt in enumerate(tc):
        expected = acts[layer] @ plt.W_dec + plt.b_dec + x[layer] @ plt.W_skip.T
        torch.testing.assert_close(tc.decode(acts, x)[layer], expected, atol=1e-5, rtol=1e-5)
        assert torch.equal(tc.compute_skip(layer, x[layer]), x[layer] @ plt.W_skip.T)


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_decode_with_skip_needs_x(ct_folder, kind):
    tc = load_transcoders(ct_folder(kind=kind, skip=True))
    with pytest.raises(ValueError, match="skip"):
        tc.decode(tc.encode(_inputs()))
    plain = load_transcoders(ct_folder(name="noskip", kind=kind))
    assert plain.compute_skip(0, _inputs()[0]) is None
    assert plain.decode(plain.encode(_inputs())).shape == (L, T, D)


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_encode_shapes_and_preactivations(ct_folder, kind):
    tc = load_transcoders(ct_folder(kind=kind))
    x = torch.randn(L, 2, T, D)
    assert tc.encode(x).shape == (L, 2, T, F)
    z = tc.encode_layer(x[1], 1, apply_activation_function=False)
    b_enc = tc.b_enc[1] if kind == "clt" else tc[1].b_enc
    torch.testing.assert_close(z, x[1] @ tc.encoder_weight(1).T + b_enc)
    torch.testing.assert_close(tc.apply_activation_function(1, z), tc.encode_layer(x[1], 1))
    assert tc.encode_layer(x[0].double(), 0).dtype == torch.float32
    assert tc.decode(tc.encode(x), x).shape == (L, 2, T, D)


@pytest.mark.parametrize("kind", ["plt", "clt"])
@pytest.mark.parametrize("skip", [False, True])
def test_lazy_and_eager_identical(ct_folder, kind, skip):
    folder = ct_folder(kind=kind, skip=skip)
    eager = load_transcoders(folder, lazy_encoder=False, lazy_decoder=False)
    lazy = load_transcoders(folder, lazy_encoder=True, lazy_decoder=True)
    assert not eager.lazy_encoder and not eager.lazy_decoder
    assert lazy.lazy_encoder and lazy.lazy_decoder
    x = _inputs()
    torch.testing.assert_close(lazy(x), eager(x))
    a, b = lazy.compute_attribution_components(x), eager.compute_attribution_components(x)
    for name, value in a.as_dict().items():
        other = b.as_dict()[name]
        if value.is_sparse:
            value, other = value.to_dense(), other.to_dense()
        assert torch.equal(value, other), name
    ids = torch.tensor([5, 1, 5, 0])
    assert torch.equal(lazy.decoder_vectors(1, ids), eager.decoder_vectors(1, ids))


def test_decoder_vector_shapes(ct_folder):
    ids = torch.tensor([3, 7, 11])
    plt = load_transcoders(ct_folder(kind="plt"))
    clt = load_transcoders(ct_folder(name="clt", kind="clt"))
    for layer in range(L):
        assert plt.decoder_vectors(layer, ids).shape == (3, D)
        assert clt.decoder_vectors(layer, ids).shape == (3, L - layer, D)
    assert plt.decoder_vectors(0, torch.tensor([], dtype=torch.long)).shape == (0, D)
    assert clt.decoder_vectors(1, torch.tensor([], dtype=torch.long)).shape == (0, L - 1, D)


def test_clt_last_position_without_active_features(ct_folder):
    """[suspected bug] circuit-tracer sizes the CLT reconstruction by the last
    active position + 1; ours is sized by T, also when the last positions have no feature."""
    tc = load_transcoders(ct_folder(kind="clt", skip=True), lazy_decoder=False)
    tc.b_enc.data.fill_(-0.5)  # x = 0 ⇒ z = −0.5 ⇒ nothing active
    x = 3 * _inputs()
    x[:, -2:] = 0
    comp = tc.compute_attribution_components(x)
    assert comp.n_active > 0
    assert int(comp.activation_matrix.indices()[1].max()) < T - 2
    assert comp.reconstruction.shape == (L, T, D)
    torch.testing.assert_close(comp.reconstruction[:, 1:], tc(x)[:, 1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_no_active_features(ct_folder, kind):
    tc = load_transcoders(ct_folder(kind=kind, activation="relu", skip=True))
    if kind == "clt":
        tc.b_enc.data.fill_(-1.0)
    else:
        for plt in tc:
            plt.b_enc.data.fill_(-1.0)
    x = torch.zeros(L, T, D)
    comp = tc.compute_attribution_components(x)
    assert comp.n_active == 0 and comp.n_decoder_rows == 0
    assert comp.decoder_vecs.shape == (0, D) and comp.decoder_locations.shape == (2, 0)
    assert comp.reconstruction.shape == (L, T, D)
    torch.testing.assert_close(comp.reconstruction, tc(x))


def test_zero_positions_slice(ct_folder):
    tc = load_transcoders(ct_folder(activation="relu"))
    comp = tc.compute_attribution_components(_inputs(), zero_positions=slice(0, 3))
    assert (comp.activation_matrix.indices()[1] >= 3).all()
    comp = tc.compute_attribution_components(_inputs(), zero_positions=slice(0, 0))
    assert (comp.activation_matrix.indices()[1] == 0).any()


@pytest.mark.parametrize("kind", ["plt", "clt"])
@pytest.mark.parametrize("lazy", [False, True])
def test_to_dtype_moves_everything(ct_folder, kind, lazy):
    folder = ct_folder(kind=kind, skip=True)
    tc = load_transcoders(folder, lazy_encoder=lazy, lazy_decoder=lazy).to(torch.float64)
    ref = load_transcoders(folder, dtype=torch.float64, lazy_decoder=False)
    assert tc.dtype == torch.float64 and all(p.dtype == torch.float64 for p in tc.parameters())
    x = _inputs().double()
    out = tc(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref(x))
    comp = tc.compute_attribution_components(x)
    assert comp.decoder_vecs.dtype == torch.float64 and comp.encoder_vecs.dtype == torch.float64
    assert tc.decoder_vectors(0, torch.tensor([1])).dtype == torch.float64


def test_compute_attribution_components_has_no_grad(ct_folder):
    tc = load_transcoders(ct_folder())
    x = _inputs().requires_grad_(True)
    comp = tc.compute_attribution_components(x)
    assert not comp.reconstruction.requires_grad and not comp.decoder_vecs.requires_grad
    assert not any(p.requires_grad for p in tc.parameters())
