"""Uncapped rows written straight to CSR give the dense adjacency, entry for entry."""

from __future__ import annotations

import pytest
import torch

from ct_engine.attribution import attribute
from ct_engine.attribution.memory import estimate_memory
from ct_engine.attribution.sparse_rows import CsrRows

from ..conftest import PROMPT


@pytest.mark.parametrize(
    ("family", "kind", "copies"),
    [
        ("llama", "plt_jumprelu", 1),
        # 33 tokens: all four prefix buckets, several batches each
        pytest.param("gemma2", "clt_skip", 4, marks=pytest.mark.slow),
    ],
)
def test_sparse_adjacency_equals_the_dense_one(replacement_model, family, kind, copies):
    model = replacement_model(family, kind)
    prompt = " ".join([PROMPT] * copies)
    dense = attribute(prompt, model, batch_size=128, sparse=False)
    sparse = attribute(prompt, model, batch_size=128, sparse=True)
    A = sparse.adjacency_matrix
    assert A.layout == torch.sparse_csr
    assert A.col_indices().dtype == torch.int32
    expected = dense.adjacency_matrix
    assert A.values().numel() == int((expected != 0).sum())
    assert torch.equal(A.to_dense(), expected)
    assert torch.equal(sparse.active_features, dense.active_features)
    # The estimate counts the reserved CSR entries: at least the real ones, 8 bytes each.
    kwargs = dict(batch_size=128, n_targets=sparse.n_logits)
    reserved = estimate_memory(model, prompt, sparse=True, **kwargs).adjacency_bytes
    assert (
        8 * A.values().numel() <= reserved < 2 * 8 * A.values().numel() + 8 * (A.shape[0] + 1) * 4
    )
    assert (
        estimate_memory(model, prompt, sparse=False, **kwargs).adjacency_bytes
        == 4 * A.shape[0] ** 2
    )


def test_small_graphs_stay_dense_and_capped_graphs_can_be_sparse(replacement_model):
    model = replacement_model("llama", "plt_jumprelu")
    assert attribute(PROMPT, model, batch_size=16).adjacency_matrix.layout == torch.strided
    capped = attribute(PROMPT, model, batch_size=16, max_feature_nodes=20)
    sparse = attribute(PROMPT, model, batch_size=16, max_feature_nodes=20, sparse=True)
    assert sparse.adjacency_matrix.layout == torch.sparse_csr
    assert torch.equal(sparse.adjacency_matrix.to_dense(), capped.adjacency_matrix)


def test_rows_in_any_order_are_compacted_in_place():
    bounds = torch.tensor([3, 0, 4, 2, 0])
    rows = CsrRows(bounds, n_cols=5)
    rows.write(torch.tensor([3]), torch.tensor([[0.0, 7.0, 0.0, 0.0, 8.0]]))
    rows.write(torch.tensor([2, 0]), torch.tensor([[1.0, 0, 2, 0, 3], [0, 0, 0, 0, 4.0]]))
    expected = torch.zeros(5, 5)
    expected[0, 4] = 4
    expected[2, [0, 2, 4]] = torch.tensor([1.0, 2, 3])
    expected[3, [1, 4]] = torch.tensor([7.0, 8])
    A = rows.finish()
    assert A.crow_indices().tolist() == [0, 1, 1, 4, 6, 6]
    assert torch.equal(A.to_dense(), expected)
    with pytest.raises(RuntimeError, match="more nonzero sources"):
        rows.write(torch.tensor([3]), torch.ones(1, 5))
