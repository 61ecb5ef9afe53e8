"""Edge lists: the nonzero entries of an ``(n, n)`` matrix, the working form of pruning.

Pruning and scoring only ever touch nonzero edges, so they run on three ``(E,)`` vectors
instead of dense ``(n, n)`` temporaries. Row ``t`` is a target, column ``s`` a source.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Dense matrices are scanned for nonzeros in row blocks of about this many entries.
_DENSE_BLOCK_ENTRIES = 1 << 24


@dataclass(frozen=True)
class EdgeList:
    """Nonzero entries of an ``(n, n)`` matrix in row-major order (sorted, no duplicates).

    Attributes:
        rows: ``(E,)`` long, target index of each entry.
        cols: ``(E,)`` long, source index of each entry.
        values: ``(E,)`` the entries.
        n: the matrix size.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    n: int

    @classmethod
    def from_matrix(cls, A: torch.Tensor, dtype: torch.dtype = torch.float64) -> EdgeList:
        """Collect the nonzero entries of a dense, COO or CSR ``(n, n)`` tensor.

        Duplicate COO/CSR entries are summed; explicit zeros are dropped.
        """
        if A.dim() != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"expected a square matrix, got shape {tuple(A.shape)}")
        n = A.shape[0]
        if A.layout == torch.sparse_csr:
            crow = A.crow_indices()
            rows = torch.repeat_interleave(
                torch.arange(n, device=crow.device), crow[1:] - crow[:-1]
            )
            cols, values = A.col_indices().long(), A.values()
            key = rows * n + cols
            if len(key) > 1 and not bool((key[1:] > key[:-1]).all()):
                return cls.from_matrix(A.to_sparse_coo(), dtype)
        elif A.layout == torch.sparse_coo:
            A = A if A.is_coalesced() else A.coalesce()
            rows, cols = A.indices()
            values = A.values()
        elif A.layout == torch.strided:
            rows, cols, values = _dense_nonzero(A)
        else:
            raise TypeError(f"unsupported adjacency layout {A.layout}")
        keep = values != 0
        if not bool(keep.all()):
            rows, cols, values = rows[keep], cols[keep], values[keep]
        return cls(rows.long(), cols.long(), values.to(dtype), n)

    def with_values(self, values: torch.Tensor) -> EdgeList:
        """The same pattern with new ``(E,)`` values."""
        return EdgeList(self.rows, self.cols, values, self.n)

    def select(self, keep: torch.Tensor) -> EdgeList:
        """The entries where the ``(E,)`` bool mask ``keep`` is true."""
        return EdgeList(self.rows[keep], self.cols[keep], self.values[keep], self.n)

    def row_sums(self) -> torch.Tensor:
        """``(n,)``: sum of each row's entries."""
        out = torch.zeros(self.n, dtype=self.values.dtype, device=self.values.device)
        return out.index_add_(0, self.rows, self.values)

    def vecmat(self, c: torch.Tensor) -> torch.Tensor:
        """``(n,)``: ``c @ M`` for the row vector ``c (n,)``, i.e. ``out[s] = Σ_t c[t]·M[t, s]``."""
        out = torch.zeros(self.n, dtype=self.values.dtype, device=self.values.device)
        return out.index_add_(0, self.cols, c[self.rows] * self.values)

    def to_dense(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(n, n)`` dense matrix."""
        dtype = dtype or self.values.dtype
        out = torch.zeros(self.n, self.n, dtype=dtype, device=self.values.device)
        out[self.rows, self.cols] = self.values.to(dtype)
        return out

    def to_sparse_coo(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(n, n)`` coalesced sparse COO matrix."""
        dtype = dtype or self.values.dtype
        return torch.sparse_coo_tensor(
            torch.stack([self.rows, self.cols]),
            self.values.to(dtype),
            (self.n, self.n),
            is_coalesced=True,
            check_invariants=False,
        )

    def to_layout_of(self, A: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """This matrix in the layout of ``A`` (dense, COO or CSR)."""
        if A.layout == torch.strided:
            return self.to_dense(dtype)
        coo = self.to_sparse_coo(dtype)
        return coo.to_sparse_csr() if A.layout == torch.sparse_csr else coo


def _dense_nonzero(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row-major nonzero coordinates and values of a dense matrix, scanned in row blocks."""
    n = A.shape[0]
    block = max(1, _DENSE_BLOCK_ENTRIES // max(n, 1))
    rows, cols, values = [], [], []
    for start in range(0, n, block):
        chunk = A[start : start + block]
        r, c = chunk.nonzero(as_tuple=True)
        rows.append(r + start)
        cols.append(c)
        values.append(chunk[r, c])
    if not rows:
        empty = torch.zeros(0, dtype=torch.long, device=A.device)
        return empty, empty, torch.zeros(0, dtype=A.dtype, device=A.device)
    return torch.cat(rows), torch.cat(cols), torch.cat(values)
