"""What the graph assets derive from a graph, derived once per process.

A range run executes every asset of a graph in one process, each looping over the run's
partitions, and reads each graph once (:func:`ct_engine.graph.cache.load_graph` hands every
asset the same object while the file is unchanged). ``pruned_graph`` and ``graph_files`` both
need the graph pruned at the config's thresholds; :func:`pruned` prunes it once and hands the
second asset the first one's result. Entries are keyed by the graph object itself (held
weakly, so a graph the graph cache lets go is forgotten here too) and the thresholds.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

_KEEP = 64  # thresholds × graphs remembered: a range run's graphs, one setting each
_PRUNED: OrderedDict[tuple[int, float, float], tuple[weakref.ref, object]] = OrderedDict()
_LOCK = threading.RLock()  # a weakref callback may run while it is held
COUNTS = {"pruned": 0, "reused": 0}  # for tests and benchmarks: prunes computed and reused


def pruned(graph, node_threshold: float, edge_threshold: float):
    """``prune_graph(graph, node_threshold, edge_threshold)``, computed once per graph object
    and thresholds in this process."""
    from ct_engine.graph import prune_graph

    key = (id(graph), float(node_threshold), float(edge_threshold))
    with _LOCK:
        found = _PRUNED.get(key)
        if found is not None and found[0]() is graph:
            _PRUNED.move_to_end(key)
            COUNTS["reused"] += 1
            return found[1]
    result = prune_graph(graph, node_threshold, edge_threshold)
    with _LOCK:
        _PRUNED[key] = (weakref.ref(graph, lambda _, key=key: _forget(key)), result)
        while len(_PRUNED) > _KEEP:
            _PRUNED.popitem(last=False)
        COUNTS["pruned"] += 1
    return result


def _forget(key) -> None:
    with _LOCK:
        _PRUNED.pop(key, None)
