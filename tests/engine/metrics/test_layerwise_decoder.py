"""The layer-by-layer decoder used inside the all-replaced forward pass."""

from __future__ import annotations

import pytest
import torch

from ct_engine.metrics.layerwise import LayerwiseDecoder, output_biases
from ct_engine.transcoders import load_transcoders

KINDS = ["plt_jumprelu", "plt_skip", "plt_topk", "clt", "clt_skip"]


@pytest.mark.parametrize("lazy_decoder", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_layerwise_equals_decode_of_encode(transcoder_dir, kind, lazy_decoder):
    tc = load_transcoders(transcoder_dir("llama", kind), lazy_decoder=lazy_decoder)
    torch.manual_seed(0)
    x = torch.randn(tc.n_layers, 2, 5, tc.d_model)  # (L, B, T, D)
    expected = tc.decode(tc.encode(x), x)
    decoder = LayerwiseDecoder(tc, output_biases(tc))
    for layer in range(tc.n_layers):
        decoder.encode_and_add(layer, x[layer])
        got = decoder.output(layer, x[layer])
        torch.testing.assert_close(got, expected[layer], rtol=1e-5, atol=1e-5)


def test_cross_layer_output_needs_every_earlier_source(transcoder_dir):
    tc = load_transcoders(transcoder_dir("llama", "clt"))
    decoder = LayerwiseDecoder(tc, output_biases(tc))
    x = torch.randn(3, tc.d_model)
    decoder.encode_and_add(1, x)
    with pytest.raises(RuntimeError, match=r"source layers \[0\]"):
        decoder.output(1, x)


def test_output_biases_are_b_dec(transcoder_dir):
    tc = load_transcoders(transcoder_dir("llama", "clt_skip"))
    torch.testing.assert_close(output_biases(tc), tc.b_dec)
