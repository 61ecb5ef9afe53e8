"""Adjacency rows written straight into their final sparse (CSR) form as they are computed.

An uncapped graph of a long prompt is about a fifth dense (every feature reads every feature of
a lower layer at its position or before), yet a dense ``N × N`` float32 buffer of a 256-token
prompt is 12 GiB. Only the nonzero entries are kept instead, 8 bytes each (float32 value,
int32 column).

Rows are computed out of node order (bucketed by prompt prefix), so each row gets a slot whose
size is an upper bound of its nonzero count known in advance: a source can only reach a target
through the layers and positions before it (:func:`row_bounds`). The slots are carved out of one
allocation whose pages are touched only where rows are written; when every row is in, the rows
are moved left over the unused ends of their slots (in place, in node order) and the CSR tensor
is a view of the front of the buffers. Nothing ``N × N`` is ever allocated.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ct_engine.attribution.context import AttributionContext

# attribute(sparse=None): a CSR adjacency once a dense float32 one would be larger than this.
SPARSE_FROM_BYTES = 1 << 30


def bound_entries(counts: torch.Tensor, n_targets: int) -> int:
    """``Σ`` of :func:`row_bounds` from ``counts (L, T)``, the active features per layer and
    position (fractional counts allowed): the entries a CSR adjacency reserves."""
    L, T = counts.shape
    padded = torch.zeros(L + 1, T, dtype=torch.float64)
    padded[1:] = counts.double()
    below = padded.cumsum(0).cumsum(1)[:L]  # features of layers < l at positions <= p
    layer = torch.arange(L, dtype=torch.float64).unsqueeze(1)
    pos = torch.arange(T, dtype=torch.float64).unsqueeze(0)
    per_feature = below + (layer + 1) * (pos + 1)
    row_size = float(counts.sum()) + (L + 1) * T
    return math.ceil(float((counts.double() * per_feature).sum()) + n_targets * row_size)


def row_bounds(ctx: AttributionContext, n_targets: int) -> torch.Tensor:
    """``(N,)`` long: at most how many nonzero sources each node's row can have.

    A feature read at layer ``l``, position ``p`` depends only on what was written before
    layer ``l`` at positions ``<= p`` (causal attention): the features of layers ``< l`` at
    positions ``<= p``, the errors of layers ``< l`` at positions ``<= p`` and the tokens at
    positions ``<= p``. Error and token nodes have no rows; a logit row may read every source.
    """
    L, T, n_act = ctx.n_layers, ctx.n_pos, ctx.n_features
    layers, positions = ctx.components.activation_matrix.indices()[:2].cpu()
    counts = torch.zeros(L + 1, T, dtype=torch.long)  # counts[l, p]: features of layer l - 1
    counts.index_put_((layers + 1, positions), torch.ones_like(layers), accumulate=True)
    # below[l, p] = features of layers < l at positions <= p
    below = counts.cumsum(0).cumsum(1)
    bounds = torch.zeros(ctx.row_size + n_targets, dtype=torch.long)
    bounds[:n_act] = below[layers, positions] + (layers + 1) * (positions + 1)
    bounds[ctx.row_size :] = ctx.row_size
    return bounds


class CsrRows:
    """Collects the nonzero entries of adjacency rows, in any order, into a CSR matrix.

    Args:
        bounds: ``(N,)`` long, the most nonzero entries each row may have (0: no row).
        n_cols: the number of columns of the rows handed to :meth:`write` (source columns).
    """

    def __init__(self, bounds: torch.Tensor, n_cols: int):
        self.n = len(bounds)
        self.n_cols = n_cols
        self.bounds = bounds
        self.offsets = torch.zeros(self.n + 1, dtype=torch.long)
        torch.cumsum(bounds, 0, out=self.offsets[1:])
        capacity = int(self.offsets[-1])
        fits_int32 = max(capacity, self.n) < 2**31
        self.index_dtype = torch.int32 if fits_int32 else torch.int64
        # torch.empty: pages become resident only where rows are written.
        self.values = torch.empty(capacity, dtype=torch.float32)
        self.cols = torch.empty(capacity, dtype=self.index_dtype)
        self.counts = torch.zeros(self.n, dtype=torch.long)

    def write(self, nodes: torch.Tensor, block: torch.Tensor) -> None:
        """Store the rows ``block (n, n_cols)`` (any device) of the nodes ``nodes (n,)``."""
        nonzero = block != 0
        counts = nonzero.sum(1).cpu()
        nodes = nodes.cpu()
        if bool((counts > self.bounds[nodes]).any()):
            bad = int(nodes[(counts > self.bounds[nodes]).nonzero()[0, 0]])
            raise RuntimeError(
                f"row {bad} has more nonzero sources than the layers and positions before it "
                "allow; the model's transcoders do not read and write in layer order"
            )
        r, c = nonzero.nonzero(as_tuple=True)
        values = block[r, c].float().cpu()
        r, c = r.cpu(), c.cpu()
        first = counts.cumsum(0) - counts  # where each row's entries start in (r, c)
        dest = self.offsets[nodes][r] + torch.arange(len(r)) - first[r]
        self.values[dest] = values
        self.cols[dest] = c.to(self.index_dtype)
        self.counts[nodes] = counts

    def finish(self) -> torch.Tensor:
        """The ``(N, N)`` float32 CSR matrix (rows never written are empty)."""
        starts = self.offsets[:-1]
        crow = torch.zeros(self.n + 1, dtype=torch.long)
        torch.cumsum(self.counts, 0, out=crow[1:])
        nnz = int(crow[-1])
        moved = (starts != crow[:-1]) & (self.counts > 0)
        if bool(moved.any()):
            # Left moves in node order never overwrite a row not yet moved; numpy copies
            # overlapping ranges correctly.
            values, cols = self.values.numpy(), self.cols.numpy()
            src, dst, size = (t[moved].tolist() for t in (starts, crow[:-1], self.counts))
            for s, d, k in zip(src, dst, size, strict=True):
                np.copyto(values[d : d + k], values[s : s + k])
                np.copyto(cols[d : d + k], cols[s : s + k])
        with warnings.catch_warnings():  # torch calls its CSR support "beta" on first use
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                crow.to(self.index_dtype),
                self.cols[:nnz],
                self.values[:nnz],
                (self.n, self.n),
                check_invariants=False,
            )
