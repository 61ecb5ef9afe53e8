"""Attribution graphs: the ``Graph`` object, storage, circuit-tracer exchange, pruning, scores.

from ct_engine.graph import Graph, prune_graph, compute_graph_scores

graph.save("g.safetensors")          # pickle-free, exact round trip
graph.to_pt("g.pt")                  # loadable by circuit-tracer 0.5.0's Graph.from_pt
graph = Graph.from_pt("g.pt")        # restricted unpickler: refuses code-executing files
node_mask, edge_mask, cumulative = prune_graph(graph, 0.8, 0.98)
replacement, completeness = compute_graph_scores(graph)
"""

from ct_engine.graph._pt_pickle import UnsafePickleError
from ct_engine.graph.config import LogitTarget, ModelConfig
from ct_engine.graph.graph import Graph, NodeInfo, NodeKind
from ct_engine.graph.influence import (
    compute_edge_influence,
    compute_influence,
    compute_node_influence,
    compute_partial_influences,
    normalize_matrix,
)
from ct_engine.graph.pruning import (
    EdgeMask,
    PruneResult,
    find_threshold,
    graph_node_influence,
    prune_graph,
    remember_node_influence,
    target_weights,
)
from ct_engine.graph.scores import compute_graph_scores, compute_pruned_graph_scores

__all__ = [
    "EdgeMask",
    "Graph",
    "LogitTarget",
    "ModelConfig",
    "NodeInfo",
    "NodeKind",
    "PruneResult",
    "UnsafePickleError",
    "compute_edge_influence",
    "compute_graph_scores",
    "compute_pruned_graph_scores",
    "compute_influence",
    "compute_node_influence",
    "compute_partial_influences",
    "find_threshold",
    "graph_node_influence",
    "normalize_matrix",
    "prune_graph",
    "remember_node_influence",
    "target_weights",
]
