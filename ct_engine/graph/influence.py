"""Influence of nodes and edges on the logit targets.

With ``Â`` the row-normalised ``|A|`` (each node's incoming absolute attribution sums to 1) and
``w (N,)`` the target weights (zero except ``w[-K:] = logit_probabilities``), the influence of
node ``j`` is ``(w·(Â + Â² + Â³ + …))[j]``: the weighted fraction of logit attribution mass
that passes through ``j`` over any number of hops. The graph is a DAG, so ``Â`` is nilpotent
and the series ends after at most the longest path length.

Every function accepts a dense ``(N, N)`` tensor or a torch sparse (COO/CSR) one, and works
on the nonzero entries only (no dense ``N×N`` temporaries). Sums are taken in float64;
results come back in the input's dtype and layout.
"""

from __future__ import annotations

import torch

from ct_engine.graph._edges import EdgeList

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
    edges = EdgeList.from_matrix(A)
    weights = logit_weights.to(device=edges.values.device, dtype=torch.float64)
    return influence_from_edges(edges, weights, max_iter).to(A.dtype)


def compute_node_influence(A: torch.Tensor, logit_weights: torch.Tensor) -> torch.Tensor:
    """Influence of every node: ``compute_influence(normalize_matrix(A), w)``.

    Args:
        A: ``(N, N)`` raw adjacency, dense or sparse.
        logit_weights: ``(N,)`` target weights.

    Returns:
        ``(N,)`` in ``A``'s dtype. Logit nodes get 0 (they have no out-edges).
    """
    edges = normalized_edges(EdgeList.from_matrix(A))
    weights = logit_weights.to(device=edges.values.device, dtype=torch.float64)
    return influence_from_edges(edges, weights).to(A.dtype)


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

    Returns:
        ``(N_total,)`` influence, in ``edge_rows``' dtype and device.

    Raises:
        RuntimeError: ``"Failed to converge"`` if mass still flows after ``max_iter`` steps.
    """
    # |R| is never materialised whole: at 7.5k rows × 57k columns it is a 1.7 GB copy per
    # refresh. Row sums and the final product are taken over row blocks instead.
    index = row_to_node_index.to(device=edge_rows.device, dtype=torch.long)
    inv_sums = torch.cat(
        [block.abs().sum(dim=1) for block in _row_blocks(edge_rows)] or [edge_rows.new_zeros(0)]
    )
    inv_sums = inv_sums.clamp(min=PARTIAL_NORM_EPS).reciprocal()
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


def _abs_rows_t_mv(rows: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``|rows|ᵀ @ vector`` over row blocks: ``(N_total,)``."""
    out = torch.zeros(rows.shape[1], dtype=rows.dtype, device=rows.device)
    for i, block in enumerate(_row_blocks(rows)):
        start = i * _ROW_BLOCK
        out += torch.mv(block.abs().t(), vector[start : start + len(block)])
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
