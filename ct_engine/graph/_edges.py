"""Edge lists and row blocks: how pruning and scoring read an ``(n, n)`` matrix.

Row ``t`` is a target, column ``s`` a source. Two working forms:

* :class:`EdgeList`, the nonzero entries as three ``(E,)`` vectors (24 bytes an entry), for
  the node-pruned graph and other small edge sets;
* :class:`RowBlocks`, the whole matrix read as dense float64 row blocks of a bounded size,
  one block at a time: passes over a real-density graph (hundreds of millions of nonzero
  entries, a fifth of ``n²``) then need a few blocks of memory beyond the matrix itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

# Dense matrices are scanned for nonzeros in row blocks of about this many entries.
_DENSE_BLOCK_ENTRIES = 1 << 24
# RowBlocks: float64 entries per block (64 MiB).
ROW_BLOCK_ENTRIES = 1 << 23


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


BlockMap = Callable[[int, int, torch.Tensor], torch.Tensor]


class RowBlocks:
    """An ``(n, n)`` dense, COO or CSR matrix read as dense float64 row blocks.

    Duplicate COO/CSR entries are summed. ``block_map(start, stop, block)``, if given, is
    applied to every block (in place or returning a new one) before it is handed out: a
    pass over a transformed matrix (e.g. columns merged) without building it.

    Args:
        A: the matrix; kept by reference, never copied whole.
        block_map: optional transformation of each ``(stop - start, n)`` block.
        max_entries: entries per block (rows per block = ``max_entries // n``, at least 1).
    """

    def __init__(
        self, A: torch.Tensor, block_map: BlockMap | None = None, max_entries: int | None = None
    ):
        if A.dim() != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"expected a square matrix, got shape {tuple(A.shape)}")
        if A.layout not in (torch.strided, torch.sparse_coo, torch.sparse_csr):
            raise TypeError(f"unsupported adjacency layout {A.layout}")
        if A.layout == torch.sparse_coo and not A.is_coalesced():
            A = A.coalesce()
        self.A = A
        self.n = A.shape[0]
        self.device = A.device
        self.block_map = block_map
        entries = ROW_BLOCK_ENTRIES if max_entries is None else max_entries
        self.rows_per_block = max(1, entries // max(self.n, 1))
        if A.layout == torch.sparse_coo:
            self._coo_rows = A.indices()[0]

    def spans(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of every block, ascending."""
        step = self.rows_per_block
        return [(a, min(a + step, self.n)) for a in range(0, self.n, step)]

    def block(self, start: int, stop: int) -> torch.Tensor:
        """``(stop - start, n)`` float64: rows ``[start, stop)``, a fresh tensor."""
        A, n = self.A, self.n
        if A.layout == torch.strided:
            # always a copy: callers change blocks in place (A itself may be float64)
            out = A[start:stop].to(torch.float64, copy=True)
        else:
            if A.layout == torch.sparse_csr:
                crow = A.crow_indices()
                lo, hi = int(crow[start]), int(crow[stop])
                counts = (crow[start + 1 : stop + 1] - crow[start:stop]).long()
                local = torch.repeat_interleave(
                    torch.arange(stop - start, device=self.device), counts
                )
                cols, values = A.col_indices()[lo:hi].long(), A.values()[lo:hi]
            else:
                bounds = torch.tensor([start, stop], device=self.device)
                lo, hi = torch.searchsorted(self._coo_rows, bounds).tolist()
                local = self._coo_rows[lo:hi] - start
                cols, values = A.indices()[1, lo:hi], A.values()[lo:hi]
            out = torch.zeros((stop - start) * n, dtype=torch.float64, device=self.device)
            out.index_add_(0, local * n + cols, values.to(torch.float64))
            out = out.view(stop - start, n)
        return out if self.block_map is None else self.block_map(start, stop, out)

    def __iter__(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``(start, stop, block)`` in ascending row order."""
        for start, stop in self.spans():
            yield start, stop, self.block(start, stop)

    def abs_row_sums(self) -> torch.Tensor:
        """``(n,)`` float64: ``Σ_s |M[t, s]|`` of every row."""
        out = torch.zeros(self.n, dtype=torch.float64, device=self.device)
        for start, stop, block in self:
            out[start:stop] = block.abs().sum(1)
        return out

    def edges(self, keep_rows: torch.Tensor, keep_cols: torch.Tensor) -> EdgeList:
        """The nonzero entries in kept rows and columns (``(n,)`` bool masks), float64."""
        rows, cols, values = [], [], []
        for start, stop, block in self:
            kept = keep_rows[start:stop]
            if not bool(kept.any()):
                continue
            block = block * (kept.unsqueeze(1) & keep_cols).to(block.dtype)
            r, c = block.nonzero(as_tuple=True)
            rows.append(r + start)
            cols.append(c)
            values.append(block[r, c])
        if not rows:
            empty = torch.zeros(0, dtype=torch.long, device=self.device)
            return EdgeList(empty, empty, torch.zeros(0, dtype=torch.float64), self.n)
        return EdgeList(torch.cat(rows), torch.cat(cols), torch.cat(values), self.n)

    def entries(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``(E,)`` float64: the entries at row-sorted coordinates ``(rows, cols)``."""
        out = torch.zeros(len(rows), dtype=torch.float64, device=self.device)
        for start, stop in self.spans():
            bounds = torch.tensor([start, stop], device=rows.device)
            lo, hi = torch.searchsorted(rows, bounds).tolist()
            if hi > lo:
                block = self.block(start, stop)
                out[lo:hi] = block[rows[lo:hi] - start, cols[lo:hi]]
        return out
