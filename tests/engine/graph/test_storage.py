"""Pickle-free storage: safetensors + JSON, exact round trips, atomic writes."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open

from ct_engine.graph import Graph
from tests.engine.graph.helpers import random_graph, to_layout


def _assert_same_graph(a: Graph, b: Graph) -> None:
    for name in (
        "input_tokens",
        "active_features",
        "activation_values",
        "selected_features",
        "logit_probabilities",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and torch.equal(x, y), name
    A, B = a.adjacency_matrix, b.adjacency_matrix
    assert A.layout == B.layout and A.dtype == B.dtype and A.shape == B.shape
    if A.layout == torch.sparse_coo:
        assert A.is_coalesced() == B.is_coalesced()
        assert torch.equal(A._indices(), B._indices()) and torch.equal(A._values(), B._values())
    elif A.layout == torch.sparse_csr:
        assert torch.equal(A.crow_indices(), B.crow_indices())
        assert torch.equal(A.col_indices(), B.col_indices())
        assert torch.equal(A.values(), B.values())
    else:  # bitwise, so that -0.0 and NaN payloads survive
        assert torch.equal(A.view(torch.int32), B.view(torch.int32))
    assert a.input_string == b.input_string
    assert a.logit_targets == b.logit_targets
    assert (a.vocab_size, a.cfg, a.scan, a.timings, a.meta) == (
        b.vocab_size,
        b.cfg,
        b.scan,
        b.timings,
        b.meta,
    )


def _decorated(g: Graph) -> Graph:
    g.input_string = '<bos>Ünïcode ✓ "quotes"\n'
    g.scan = ["scan-a", "scan-b"]
    g.timings = {"logit_rows": 0.125, "feature_rows": 3.5}
    g.meta = {"custom_target_vectors": [None, [0.1, -2.5]], "note": "x"}
    return g


def _stored_adjacency(path) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["ct_graph"])["adjacency"]


def test_round_trip_sparse_graph_held_dense_is_stored_sparse(tmp_path):
    g = _decorated(random_graph(seed=0, density=0.1))
    g.adjacency_matrix[0, 0] = -0.0
    path = tmp_path / "g.safetensors"
    g.save(path)
    assert _stored_adjacency(path) == {
        "shape": [g.n_nodes] * 2,
        "layout": "dense",
        "storage": "sparse",
    }
    _assert_same_graph(g, Graph.load(path))
    assert path.stat().st_size < g.n_nodes**2 * 4


def test_round_trip_full_dense_graph_is_stored_dense(tmp_path):
    g = random_graph(seed=1)
    g.adjacency_matrix = torch.randn(g.n_nodes, g.n_nodes)
    path = tmp_path / "g.safetensors"
    g.save(path)
    assert _stored_adjacency(path)["storage"] == "dense"
    _assert_same_graph(g, Graph.load(path))


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_round_trip_sparse_layouts(tmp_path, layout):
    g = _decorated(random_graph(seed=2, layout=layout))
    g.save(tmp_path / "g.safetensors")
    _assert_same_graph(g, Graph.load(tmp_path / "g.safetensors"))


def test_round_trip_uncoalesced_coo(tmp_path):
    g = random_graph(seed=3)
    rows, cols, values = g.nonzero_edges()
    duplicated = torch.sparse_coo_tensor(
        torch.stack([torch.cat([rows, rows[:5]]), torch.cat([cols, cols[:5]])]),
        torch.cat([values / 2, values[:5] / 2]),
        (g.n_nodes, g.n_nodes),
    )
    g.adjacency_matrix = duplicated
    g.save(tmp_path / "g.safetensors")
    loaded = Graph.load(tmp_path / "g.safetensors")
    _assert_same_graph(g, loaded)
    assert not loaded.adjacency_matrix.is_coalesced()


def test_save_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "g.safetensors"
    first, second = random_graph(seed=4), random_graph(seed=5)
    first.save(path)
    second.save(path)
    _assert_same_graph(second, Graph.load(path))
    assert os.listdir(tmp_path) == ["g.safetensors"]  # no temporary left behind

    second.meta = {"not json": object()}
    with pytest.raises(TypeError, match="JSON"):
        second.save(path)
    second.meta = {}
    _assert_same_graph(second, Graph.load(path))  # the old file is untouched
    assert os.listdir(tmp_path) == ["g.safetensors"]


def test_load_rejects_other_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a ct-graph"):
        Graph.load(tmp_path / "other.safetensors")


def test_empty_adjacency_round_trips(tmp_path):
    g = random_graph(seed=6)
    g.adjacency_matrix = to_layout(torch.zeros(g.n_nodes, g.n_nodes), "dense")
    g.save(tmp_path / "g.safetensors")
    _assert_same_graph(g, Graph.load(tmp_path / "g.safetensors"))
