"""Graph pruning by influence, on sparse edge lists.

``prune_graph`` keeps the nodes that carry ``node_threshold`` of the total node influence
(tokens and logits always), then the edges that carry ``edge_threshold`` of the total edge
influence of the node-pruned graph, then repeatedly drops feature and error nodes left without
a kept outgoing edge and feature nodes left without a kept incoming edge.

Nothing here builds a dense ``N×N`` float matrix, sorts ``N²`` entries or copies the whole
graph's edges: node influence streams the adjacency in row blocks
(:mod:`ct_engine.graph.influence`), only the edges between kept nodes are collected, and the
edge threshold is found among those with a positive score. Memory beyond the adjacency is a
few row blocks plus the node-pruned graph's edges (24 bytes each).

**Threshold semantics.** ``find_threshold`` sorts scores in descending order and returns the
score at which the cumulative share first reaches ``τ``; keeping ``score >= threshold`` keeps
the smallest top set whose share is at least ``τ`` (plus ties). The share is
``cumsum / cumsum[-1]`` in float64, so it reaches exactly 1 at the last positive score: for any
``τ <= 1`` the threshold is a positive score whenever some score is positive, and ``τ = 1``
keeps every item whose score is positive (circuit-tracer divides a float32 cumsum by a
separately computed float32 sum, so whether its ``τ = 1`` cut also keeps the zero tail depends
on rounding).

**Zero tail.** circuit-tracer picks the edge threshold over all ``N²`` entries, zeros included.
The cut can only land in the zeros when no edge has a positive score (no target weight reaches
any edge; e.g. all-zero ``logit_probabilities``). Its threshold is then 0 and its mask keeps
every entry of the matrix, zeros included, and no node is removed afterwards (every node then
has kept entries both ways). :class:`EdgeMask` reproduces that exactly with
``includes_zero_entries=True``: ``rows``/``cols`` list the real (nonzero) edges of the
node-pruned graph and ``dense()`` is all true, as circuit-tracer's mask. (circuit-tracer's
JSON export would then also emit a zero-weight edge for every pair of kept nodes.)
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ct_engine.graph._edges import RowBlocks
from ct_engine.graph.graph import Graph
from ct_engine.graph.influence import edge_scores_from_edges, node_influence


@dataclass(frozen=True)
class EdgeMask:
    """The kept edges of a pruned graph as coordinate lists (row-major order).

    A dense ``(N, N)`` bool mask is ``N²`` bytes (3.6 GB at 60k nodes), so the kept edges are
    stored as index pairs; ``dense()`` builds circuit-tracer's mask when it is affordable.

    Attributes:
        rows: ``(E,)`` long, target node of each kept edge.
        cols: ``(E,)`` long, source node of each kept edge.
        n_nodes: ``N``.
        includes_zero_entries: the zero-tail corner case (module docstring): the mask keeps
            every entry, zeros included, so ``dense()`` is all true; ``rows``/``cols`` then
            list every nonzero entry of the node-pruned adjacency.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    n_nodes: int
    includes_zero_entries: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_nodes, self.n_nodes)

    def __len__(self) -> int:
        """Number of listed (nonzero) kept edges."""
        return len(self.rows)

    def dense(self) -> torch.Tensor:
        """``(N, N)`` bool, ``[target, source]``, equal to circuit-tracer's ``edge_mask``."""
        if self.includes_zero_entries:
            return torch.ones(self.shape, dtype=torch.bool, device=self.rows.device)
        out = torch.zeros(self.shape, dtype=torch.bool, device=self.rows.device)
        out[self.rows, self.cols] = True
        return out

    def to_sparse_coo(self) -> torch.Tensor:
        """``(N, N)`` sparse COO bool tensor of the listed edges."""
        return torch.sparse_coo_tensor(
            torch.stack([self.rows, self.cols]),
            torch.ones(len(self.rows), dtype=torch.bool, device=self.rows.device),
            self.shape,
            is_coalesced=True,
            check_invariants=False,
        )

    def values_in(self, adjacency: torch.Tensor) -> torch.Tensor:
        """``(E,)``: the adjacency entries of the listed edges (dense or sparse adjacency)."""
        if adjacency.layout == torch.strided:
            return adjacency[self.rows, self.cols]
        # Read in row blocks: a copy of every edge of a real-density graph would not fit.
        return RowBlocks(adjacency).entries(self.rows, self.cols).to(adjacency.dtype)


class PruneResult(NamedTuple):
    """Result of :func:`prune_graph` (unpacks like circuit-tracer's).

    Attributes:
        node_mask: ``(N,)`` bool, nodes kept.
        edge_mask: kept edges (:class:`EdgeMask`; ``edge_mask.dense()`` for the ``(N, N)``
            bool mask).
        cumulative_scores: ``(N,)`` cumulative share of node influence up to and including
            each node in descending-influence order (the JSON ``influence`` field).
    """

    node_mask: torch.Tensor
    edge_mask: EdgeMask
    cumulative_scores: torch.Tensor


def find_threshold(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """The score whose descending cumulative share first reaches ``threshold``.

    Args:
        scores: ``(M,)`` non-negative scores, ``M >= 1``.
        threshold: ``τ`` in ``[0, 1]``.

    Returns:
        A 0-d tensor in ``scores``' dtype; keep ``scores >= it``. If the scores sum to zero
        this is the largest score (0), so everything is kept.
    """
    ordered = torch.sort(scores.flatten(), descending=True).values
    index = _cut_index(ordered.to(torch.float64), threshold)
    return ordered[min(index, len(ordered) - 1)]


def prune_graph(
    graph: Graph, node_threshold: float = 0.8, edge_threshold: float = 0.98
) -> PruneResult:
    """Prune ``graph`` by node and edge influence.

    Args:
        graph: the graph (dense or sparse adjacency).
        node_threshold: share of total node influence the kept nodes must carry.
        edge_threshold: share of total edge influence the kept edges must carry.

    Returns:
        :class:`PruneResult` ``(node_mask (N,), edge_mask, cumulative_scores (N,))``.

    Raises:
        ValueError: a threshold outside ``[0, 1]``.
    """
    _check_threshold("node_threshold", node_threshold)
    _check_threshold("edge_threshold", edge_threshold)
    n = graph.n_nodes
    always_kept = graph.token_slice.start  # tokens and logits: [always_kept, N)
    device = graph.adjacency_matrix.device

    blocks = RowBlocks(graph.adjacency_matrix)
    weights = target_weights(graph).to(device)

    influence = graph_node_influence(graph)
    node_mask = influence >= find_threshold(influence, node_threshold)
    node_mask[always_kept:] = True

    pruned = blocks.edges(node_mask, node_mask)
    scores = edge_scores_from_edges(pruned, weights)
    scores = scores.select(scores.values > 0)
    ordered = torch.sort(scores.values, descending=True).values
    cut = _cut_index(ordered, edge_threshold)
    if cut >= len(ordered) and len(ordered) < n * n:
        edge_mask = EdgeMask(pruned.rows, pruned.cols, n, includes_zero_entries=True)
    else:
        kept = scores.select(scores.values >= ordered[min(cut, len(ordered) - 1)])
        del ordered, scores
        node_mask, rows, cols = _drop_dangling(
            node_mask, kept.rows, kept.cols, always_kept, graph.n_features
        )
        edge_mask = EdgeMask(rows, cols, n)

    cumulative = _cumulative_shares(influence).to(graph.adjacency_matrix.dtype)
    return PruneResult(node_mask, edge_mask, cumulative)


# graph -> (what it was computed from, influence); held weakly (Graph compares by identity), so
# a graph let go is forgotten here too.
_INFLUENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# for tests and benchmarks: computed, answered from the memo, and given by remember_node_influence
INFLUENCE_COUNTS = {"computed": 0, "reused": 0, "remembered": 0}


def graph_node_influence(graph: Graph) -> torch.Tensor:
    """Node influence of ``graph`` on its weighted targets, computed once per graph object.

    Pruning, the full graph's scores and the lake's node table all need it, and each
    computation is two passes over the adjacency. The result is kept with the graph while its
    adjacency and target probabilities are the same tensors, unchanged in place; a graph read
    again from storage can be given the influence stored with it
    (:func:`remember_node_influence`).

    Returns:
        ``(N,)`` float64 on the adjacency's device (see
        :func:`ct_engine.graph.influence.node_influence`). Do not change it in place.
    """
    A, source = graph.adjacency_matrix, _source(graph)  # taken before the computation
    found = _INFLUENCE.get(graph)
    if found is not None and _same_source(found[0], source):
        INFLUENCE_COUNTS["reused"] += 1
        return found[1]
    weights = target_weights(graph).to(A.device)
    influence, _ = node_influence(RowBlocks(A), weights)
    _INFLUENCE[graph] = (source, influence)
    INFLUENCE_COUNTS["computed"] += 1
    return influence


def remember_node_influence(graph: Graph, influence) -> None:
    """Give ``graph`` its node influence, known from an earlier computation, so that
    :func:`graph_node_influence` (pruning, scores) does not compute it again.

    For a graph read again from storage, with the influence stored when it was written: the
    caller vouches that it is :func:`graph_node_influence` of a graph with the same adjacency
    and target probabilities; it is kept as given, so results are bit-identical to computing it.

    Args:
        graph: the graph.
        influence: ``(N,)`` float64 tensor or numpy array (a stored column, read without
            torch), in node order (moved to the adjacency's device).

    Raises:
        ValueError: another shape or dtype (a float32 copy would not give the same masks).
    """
    influence = torch.as_tensor(influence)
    if influence.shape != (graph.n_nodes,) or influence.dtype != torch.float64:
        raise ValueError(
            f"node influence of a graph of {graph.n_nodes} nodes must be ({graph.n_nodes},) "
            f"float64, got {tuple(influence.shape)} {influence.dtype}"
        )
    _INFLUENCE[graph] = (_source(graph), influence.to(graph.adjacency_matrix.device))
    INFLUENCE_COUNTS["remembered"] += 1


def _source(graph: Graph) -> tuple:
    """What a memo entry is made from: the adjacency and target probabilities (held weakly, so
    a replaced adjacency is not kept alive by the memo) and their in-place versions."""
    A, probabilities = graph.adjacency_matrix, graph.logit_probabilities
    return (weakref.ref(A), weakref.ref(probabilities), (A._version, probabilities._version))


def _same_source(kept: tuple, now: tuple) -> bool:
    return kept[0]() is now[0]() and kept[1]() is now[1]() and kept[2] == now[2]


def target_weights(graph: Graph) -> torch.Tensor:
    """``(N,)`` float64: zero except the logit nodes, which get ``logit_probabilities``."""
    weights = torch.zeros(graph.n_nodes, dtype=torch.float64)
    weights[graph.logit_slice] = graph.logit_probabilities.detach().cpu().to(torch.float64)
    return weights


def _check_threshold(name: str, value: float) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be between 0.0 and 1.0, got {value!r}")


def _cut_index(ordered: torch.Tensor, threshold: float) -> int:
    """Index of the first descending-sorted score whose cumulative share reaches ``τ``.

    Returns ``len(ordered)`` for an empty input; ``0`` when the scores sum to zero.
    """
    if len(ordered) == 0:
        return 0
    cumulative = torch.cumsum(ordered.to(torch.float64), dim=0)
    total = cumulative[-1]
    if not bool(total > 0):
        return 0
    share = cumulative / total
    target = torch.tensor([threshold], dtype=torch.float64, device=share.device)
    return int(torch.searchsorted(share, target).item())


def _drop_dangling(
    node_mask: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    n_checked: int,
    n_features: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Iterate to a fixed point: nodes ``[0, n_checked)`` (features and errors) need a kept
    outgoing edge, features ``[0, n_features)`` a kept incoming edge; edges touching dropped
    nodes are dropped.

    Returns:
        ``(node_mask (N,), rows (E',), cols (E',))``.
    """
    node_mask = node_mask.clone()
    n = len(node_mask)
    while True:
        alive = node_mask[rows] & node_mask[cols]
        if not bool(alive.all()):
            rows, cols = rows[alive], cols[alive]
        has_out = torch.zeros(n, dtype=torch.bool, device=node_mask.device)
        has_out[cols] = True
        has_in = torch.zeros(n, dtype=torch.bool, device=node_mask.device)
        has_in[rows] = True
        updated = node_mask.clone()
        updated[:n_checked] &= has_out[:n_checked]
        updated[:n_features] &= has_in[:n_features]
        if torch.equal(updated, node_mask):
            return node_mask, rows, cols
        node_mask = updated


def _cumulative_shares(influence: torch.Tensor) -> torch.Tensor:
    """``(N,)``: each node's cumulative influence share in descending order (ties by index).

    All zeros when the total influence is zero (circuit-tracer's ``0/0`` gives NaN there).
    """
    ordered, order = torch.sort(influence, descending=True, stable=True)
    cumulative = torch.cumsum(ordered, dim=0)
    total = cumulative[-1] if len(cumulative) else torch.tensor(0.0, dtype=influence.dtype)
    shares = cumulative / total if bool(total > 0) else torch.zeros_like(cumulative)
    out = torch.empty_like(shares)
    out[order] = shares
    return out
