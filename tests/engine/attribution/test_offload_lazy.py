"""Offloading and lazy transcoder loading do not change the graph.

Runs on CUDA when available (where offloading really moves the transcoders), else on CPU,
where ``offload`` is a no-op; the move-and-restore logic itself is checked with a stub.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ct_engine.attribution import attribute
from ct_engine.attribution.attribute import _offloaded
from ct_engine.replacement import ReplacementModel
from tests.engine.conftest import PROMPT

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _devices(model) -> set[str]:
    return {str(p.device) for p in model.transcoders.parameters()} | {
        str(p.device) for p in model.impl.bridge.parameters()
    }


@pytest.mark.parametrize("kind", ["plt_jumprelu", "clt"])
def test_offload_modes_same_adjacency(tiny_model_dir, transcoder_dir, kind):
    model = ReplacementModel.from_pretrained(
        tiny_model_dir("llama"), transcoder_dir("llama", kind), device=DEVICE
    )
    before = _devices(model)
    graphs = {}
    for mode in (None, "cpu", "disk"):
        graphs[mode] = attribute(PROMPT, model, batch_size=16, max_feature_nodes=40, offload=mode)
        assert _devices(model) == before, f"parameters moved by offload={mode!r}"
    ref = graphs[None].adjacency_matrix
    for mode in ("cpu", "disk"):
        torch.testing.assert_close(graphs[mode].adjacency_matrix, ref, atol=1e-5, rtol=1e-3)
        assert torch.equal(graphs[mode].selected_features, graphs[None].selected_features)


def test_offloaded_moves_and_restores():
    moves = []
    tc = SimpleNamespace(skip_connection=False, to=lambda device: moves.append(str(device)))
    model = SimpleNamespace(transcoders=tc, device=torch.device("cuda", 0))
    with _offloaded(model, "cpu"):
        assert moves == ["cpu"]
    assert moves == ["cpu", "cuda:0"]
    moves.clear()
    with pytest.raises(RuntimeError), _offloaded(model, "disk"):
        raise RuntimeError("boom")
    assert moves == ["cpu", "cuda:0"], "restored after an error"
    moves.clear()
    tc.skip_connection = True  # skip transcoders stay: the frozen forward applies them
    with _offloaded(model, "cpu"):
        pass
    model.device = torch.device("cpu")
    tc.skip_connection = False
    with _offloaded(model, "cpu"):
        pass
    assert moves == []


@pytest.mark.parametrize(
    "family,kind",
    [("llama", "plt_skip"), ("gemma2", "plt_jumprelu"), ("llama", "clt_skip"), ("gemma2", "clt")],
)
def test_lazy_loading_same_graph(tiny_model_dir, transcoder_dir, family, kind):
    graphs = {}
    for lazy_encoder in (False, True):
        for lazy_decoder in (False, True):
            model = ReplacementModel.from_pretrained(
                tiny_model_dir(family),
                transcoder_dir(family, kind),
                device=DEVICE,
                lazy_encoder=lazy_encoder,
                lazy_decoder=lazy_decoder,
            )
            assert model.transcoders.lazy_encoder == lazy_encoder
            assert model.transcoders.lazy_decoder == lazy_decoder
            graphs[lazy_encoder, lazy_decoder] = attribute(PROMPT, model, batch_size=32)
    ref = graphs[False, False]
    for key, graph in graphs.items():
        assert torch.equal(graph.active_features, ref.active_features), key
        assert torch.equal(graph.selected_features, ref.selected_features), key
        torch.testing.assert_close(graph.activation_values, ref.activation_values)
        torch.testing.assert_close(
            graph.adjacency_matrix, ref.adjacency_matrix, atol=1e-6, rtol=1e-5, msg=str(key)
        )
