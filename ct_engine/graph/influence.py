"""Influence of nodes and edges on the logit targets.

With ``Â`` the row-normalised ``|A|`` (each node's incoming absolute attribution sums to 1) and
``w (N,)`` the target weights (zero except ``w[-K:] = logit_probabilities``), the influence of
node ``j`` is ``(w·(Â + Â² + Â³ + …))[j]``: the weighted fraction of logit attribution mass
that passes through ``j`` over any number of hops. The graph is a DAG, so ``Â`` is nilpotent
and the series ends after at most the longest path length.

Every function accepts a dense ``(N, N)`` tensor or a torch sparse (COO/CSR) one, and never
builds a dense ``N×N`` temporary or a list of all its edges: influence streams the matrix in
bounded row blocks (:class:`~ct_engine.graph._edges.RowBlocks`). When every row reads only
from lower-numbered nodes or from nodes with no inputs of their own (attribution graphs: a
feature reads features of lower layers, errors and tokens), one sweep over the row blocks from
the last to the first sums the whole series: each node's total ``z = w + z·Â`` is final
once every row after it has been read. Otherwise (any other matrix) the series is iterated,
one pass per hop. Sums are taken in float64; results come back in the input's dtype and
layout.
"""

from __future__ import annotations

import torch

from ct_engine.graph._edges import EdgeList, RowBlocks

# Row sums are clamped to these before dividing (graph-level and partial, as circuit-tracer).
NORM_EPS = 1e-10
PARTIAL_NORM_EPS = 1e-8


def normalize_matrix(A: torch.Tensor) -> torch.Tensor:
    """``|A|`` with each row divided by ``max(row_sum, 1e-10)``; rows with no inputs stay 0.

    Args:
        A: ``(N, N)`` dense or sparse, rows = targets.

    Returns:
        ``(N, N)`` in ``A``'s layout and dtype.
    """
    return normalized_edges(EdgeList.from_matrix(A)).to_layout_of(A, A.dtype)


def compute_influence(
    A: torch.Tensor, logit_weights: torch.Tensor, max_iter: int = 1000
) -> torch.Tensor:
    """``w·(A + A² + A³ + …)`` for an already normalised ``A``.

    Args:
        A: ``(N, N)`` dense or sparse, nilpotent (a DAG).
        logit_weights: ``(N,)`` target weights ``w``.
        max_iter: how many extra products to allow before giving up.

    Returns:
        ``(N,)`` in ``A``'s dtype.

    Raises:
        RuntimeError: if ``A`` is not nilpotent within ``max_iter`` steps (a cycle).
    """
    blocks = RowBlocks(A)
    weights = logit_weights.to(device=A.device, dtype=torch.float64)
    return influence_from_blocks(blocks, weights, max_iter=max_iter).to(A.dtype)


def compute_node_influence(A: torch.Tensor, logit_weights: torch.Tensor) -> torch.Tensor:
    """Influence of every node: ``compute_influence(normalize_matrix(A), w)``.

    Args:
        A: ``(N, N)`` raw adjacency, dense or sparse.
        logit_weights: ``(N,)`` target weights.

    Returns:
        ``(N,)`` in ``A``'s dtype. Logit nodes get 0 (they have no out-edges).
    """
    blocks = RowBlocks(A)
    weights = logit_weights.to(device=A.device, dtype=torch.float64)
    return node_influence(blocks, weights)[0].to(A.dtype)


def compute_edge_influence(A: torch.Tensor, logit_weights: torch.Tensor) -> torch.Tensor:
    """Edge scores ``E[t, s] = Â[t, s]·φ[t]`` with ``φ = influence(Â, w) + w``.

    Args:
        A: ``(N, N)`` adjacency (in pruning: already restricted to the kept nodes).
        logit_weights: ``(N,)`` target weights.

    Returns:
        ``(N, N)`` in ``A``'s layout and dtype.
    """
    edges = EdgeList.from_matrix(A)
    weights = logit_weights.to(device=edges.values.device, dtype=torch.float64)
    return edge_scores_from_edges(edges, weights).to_layout_of(A, A.dtype)


def compute_partial_influences(
    edge_rows: torch.Tensor,
    logit_weights: torch.Tensor,
    row_to_node_index: torch.Tensor,
    max_iter: int = 128,
    row_abs_sums: torch.Tensor | None = None,
) -> torch.Tensor:
    """Influence through the rows computed so far, for greedy feature ranking.

    Each computed row ``r`` belongs to node ``row_to_node_index[r]``; influence starts at the
    logit columns with the target weights and flows from each computed row's node to its
    sources (row-normalised ``|rows|``, clamped at ``1e-8``). Nodes without a row pass nothing
    on. The result is ``Σ_{k≥1} p_k`` with ``p_0 = w`` and ``p_{k+1} = (p_k[row_nodes] / s) @ |R|``.

    When every row reads only from nodes whose index is below its own (always so in
    attribution, where sources come before targets in node order), the series is summed
    exactly by one triangular solve over the ``st`` computed nodes instead of one pass over
    ``|R|`` per hop; otherwise it is iterated as circuit-tracer does.

    Args:
        edge_rows: ``(st, N_total)`` rows computed so far (rows = targets).
        logit_weights: ``(K,)`` target weights; the last ``K`` columns are the logits.
        row_to_node_index: ``(st,)`` node index of each row.
        max_iter: propagation steps allowed before giving up (iterated case).
        row_abs_sums: ``(st,)`` float64 ``|row|`` sums (:func:`abs_row_sums`) if the caller keeps
            them: a row never changes once computed, so a ranking that refreshes as rows
            arrive sums each row once instead of once per refresh.

    Returns:
        ``(N_total,)`` influence, in ``edge_rows``' dtype and device.

    Raises:
        RuntimeError: ``"Failed to converge"`` if mass still flows after ``max_iter`` steps.
    """
    # |R| is never materialised whole: at 7.5k rows × 57k columns it is a 1.7 GB copy per
    # refresh. Row sums and the final product are taken over row blocks instead.
    index = row_to_node_index.to(device=edge_rows.device, dtype=torch.long)
    if row_abs_sums is None:
        row_abs_sums = abs_row_sums(edge_rows)
    elif row_abs_sums.shape != edge_rows.shape[:1]:
        raise ValueError(f"{len(row_abs_sums)} row sums for {len(edge_rows)} rows")
    inv_sums = row_abs_sums.double().clamp(min=PARTIAL_NORM_EPS).reciprocal().to(edge_rows)
    weights = torch.zeros(edge_rows.shape[1], dtype=edge_rows.dtype, device=edge_rows.device)
    if len(logit_weights):
        weights[-len(logit_weights) :] = logit_weights.to(weights)
    coefficients = _topological_row_coefficients(edge_rows, inv_sums, index, weights)
    if coefficients is not None:
        return _abs_rows_t_mv(edge_rows, coefficients)

    prod, influence = weights, torch.zeros_like(weights)
    for _ in range(max_iter):
        prod = _abs_rows_t_mv(edge_rows, prod[index] * inv_sums)
        if not bool(prod.any()):
            return influence
        influence += prod
    raise RuntimeError("Failed to converge")


_ROW_BLOCK = 512


def _row_blocks(rows: torch.Tensor):
    for start in range(0, rows.shape[0], _ROW_BLOCK):
        yield rows[start : start + _ROW_BLOCK]


def _abs_blocks(rows: torch.Tensor):
    """``(start, |block|)`` over row blocks, each written into one scratch buffer: a fresh
    ``|block|`` per block is a large allocation whose pages the OS maps again every time.
    """
    scratch = rows.new_empty((min(_ROW_BLOCK, rows.shape[0]), rows.shape[1]))
    for start in range(0, rows.shape[0], _ROW_BLOCK):
        block = rows[start : start + _ROW_BLOCK]
        yield start, torch.abs(block, out=scratch[: len(block)])


def abs_row_sums(rows: torch.Tensor) -> torch.Tensor:
    """``(st,)`` float64 sums of ``|rows|`` per row, over row blocks.

    Accumulated in float64 so that a row's sum does not depend on how many rows are summed
    with it (a float32 sum of a single row is split differently across threads).
    """
    sums = [magnitudes.sum(dim=1, dtype=torch.float64) for _, magnitudes in _abs_blocks(rows)]
    return torch.cat(sums) if sums else torch.zeros(0, dtype=torch.float64, device=rows.device)


def _abs_rows_t_mv(rows: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``|rows|ᵀ @ vector`` over row blocks: ``(N_total,)``."""
    out = torch.zeros(rows.shape[1], dtype=rows.dtype, device=rows.device)
    for start, magnitudes in _abs_blocks(rows):
        out += torch.mv(magnitudes.t(), vector[start : start + len(magnitudes)])
    return out


def _topological_row_coefficients(
    edge_rows: torch.Tensor, inv_sums: torch.Tensor, index: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor | None:
    """``(st,)`` coefficients ``c = z[row_nodes] / s`` with ``z = w + (z[row_nodes] / s) @ |R|``.

    Then ``Σ_{k≥1} p_k = c @ |R|``. With the rows sorted by node, ``B[i, j] = |R[i, node_j]|``
    is strictly lower triangular when every row reads only from lower-numbered nodes, and
    ``y = z[nodes]`` solves ``y = w[nodes] + (y / s) @ B``, a unit triangular system. Returns
    ``None`` when ``B`` is not strictly lower triangular (not in topological order).
    """
    if len(index) == 0:
        return None
    order = torch.argsort(index)
    nodes = index[order]
    # B, (st, st): gather the st node columns first, then reorder the (now small) rows.
    scaled = edge_rows.index_select(1, nodes).index_select(0, order).abs_()
    for i, block in enumerate(_row_blocks(scaled)):  # upper triangle, diagonal included
        if bool(torch.triu(block, diagonal=i * _ROW_BLOCK).any()):
            return None
    scaled.mul_(inv_sums[order].unsqueeze(1)).neg_()  # -B[j, i] / s_j at [j, i]
    # (I - diag(1/s) B)^T y^T = w^T: upper unit-triangular in the transposed matrix.
    solution = torch.linalg.solve_triangular(
        scaled.t(), weights[nodes].unsqueeze(1), upper=True, unitriangular=True
    ).squeeze(1)
    coefficients = torch.empty_like(solution)
    coefficients[order] = solution * inv_sums[order]
    return coefficients


def normalized_edges(edges: EdgeList) -> EdgeList:
    """``|values|`` divided by their row's absolute sum (clamped at ``1e-10``)."""
    magnitudes = edges.values.abs()
    sums = edges.with_values(magnitudes).row_sums().clamp(min=NORM_EPS)
    return edges.with_values(magnitudes / sums[edges.rows])


def influence_from_edges(
    edges: EdgeList, weights: torch.Tensor, max_iter: int = 1000
) -> torch.Tensor:
    """``(n,)`` ``w·(M + M² + …)`` for the matrix ``M`` held by ``edges``; see above."""
    current = edges.vecmat(weights)
    total = current.clone()
    for _ in range(max_iter):
        if not bool(current.any()):
            return total
        current = edges.vecmat(current)
        total += current
    if bool(current.any()):
        raise RuntimeError(f"Influence computation failed to converge after {max_iter} iterations")
    return total


def edge_scores_from_edges(edges: EdgeList, weights: torch.Tensor) -> EdgeList:
    """Edge scores ``Â[t, s]·(influence(Â, w) + w)[t]`` on the pattern of ``edges``."""
    norm = normalized_edges(edges)
    phi = influence_from_edges(norm, weights) + weights
    return norm.with_values(norm.values * phi[norm.rows])


def node_influence(blocks: RowBlocks, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Influence on the row-normalised ``|M|`` of ``blocks``, streamed.

    Returns:
        ``(influence (n,), abs_row_sums (n,))``, float64 (the sums, unclamped, for callers
        that need them again).
    """
    sums = blocks.abs_row_sums()
    scale = sums.clamp(min=NORM_EPS).reciprocal()
    return influence_from_blocks(blocks, weights, row_scale=scale, row_sums=sums), sums


def influence_from_blocks(
    blocks: RowBlocks,
    weights: torch.Tensor,
    row_scale: torch.Tensor | None = None,
    row_sums: torch.Tensor | None = None,
    max_iter: int = 1000,
) -> torch.Tensor:
    """``(n,)`` float64 ``w·(M + M² + …)``, streamed over row blocks.

    Args:
        blocks: the matrix.
        weights: ``(n,)`` float64 ``w``.
        row_scale: if given, ``M = |blocks|`` with row ``t`` multiplied by ``row_scale[t]``;
            else ``M`` is the matrix as it is.
        row_sums: ``(n,)`` abs row sums if known (which rows have inputs); else one pass.
        max_iter: products allowed in the iterated case.

    Raises:
        RuntimeError: the series does not end within ``max_iter`` products (a cycle).
    """

    def matrix(start: int, stop: int) -> torch.Tensor:
        block = blocks.block(start, stop)
        if row_scale is None:
            return block
        return block.abs_().mul_(row_scale[start:stop].unsqueeze(1))

    if row_sums is None:
        row_sums = blocks.abs_row_sums()
    has_row = row_sums > 0
    swept = _sweep(blocks.spans(), matrix, weights, has_row)
    if swept is not None:
        return swept

    def vecmat(c: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(c)
        for start, stop in blocks.spans():
            part = c[start:stop]
            if bool(part.any()) and bool(has_row[start:stop].any()):
                out += torch.mv(matrix(start, stop).t(), part)
        return out

    current = vecmat(weights)
    total = current.clone()
    for _ in range(max_iter):
        if not bool(current.any()):
            return total
        current = vecmat(current)
        total += current
    if bool(current.any()):
        raise RuntimeError(f"Influence computation failed to converge after {max_iter} iterations")
    return total


def _sweep(spans, matrix, weights: torch.Tensor, has_row: torch.Tensor) -> torch.Tensor | None:
    """``z - w`` with ``z = w + z·M``, in one pass over the row blocks, last block first.

    Valid when every entry ``M[t, s]`` whose source ``s`` has a row of its own has ``s < t``:
    then when block ``[a, b)`` is read, every row after it has added its share to ``z``, and
    the block's own rows (strictly lower triangular among themselves) are solved exactly.
    Returns ``None`` as soon as an entry breaks that order.
    """
    z = weights.clone()
    for start, stop in reversed(spans):
        if not bool(has_row[start:stop].any()) or not bool(z[start:stop].any()):
            continue  # nothing flows out of these rows (yet: a later break is still caught)
        M = matrix(start, stop)
        if bool(((M[:, stop:] != 0) & has_row[stop:]).any()):
            return None
        inner = M[:, start:stop] * has_row[start:stop].to(M.dtype)
        if bool(torch.triu(inner).any()):
            return None
        y = z[start:stop]
        if bool(inner.any()):
            eye = torch.eye(stop - start, dtype=M.dtype, device=M.device)
            y = torch.linalg.solve_triangular(
                (eye - inner).t(), y.unsqueeze(1), upper=True, unitriangular=True
            ).squeeze(1)
        z += torch.mv(M.t(), y)
    return z - weights
