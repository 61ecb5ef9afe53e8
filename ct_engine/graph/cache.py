"""Graphs read in this process, cached by file identity (path, size, mtime).

The assets downstream of attribution and the viewer read the same graph files again and again;
a range run executes every asset in one process, each looping over every partition. The cache
holds graphs up to a memory budget so that each graph is read at most once per run:
``CT_GRAPH_CACHE_MB``, by default a quarter of the machine's memory (at least 1 GiB). A range
run reads its graphs in the same order for every asset, so a range whose graphs exceed the
budget is read again by each asset (least recently used goes first). A graph read again once
the budget let it go is a new object:
``on_load`` lets the caller give it what was stored with it (its node influence, say) before
anything derives from it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

_GRAPHS: OrderedDict[tuple, tuple[object, int]] = OrderedDict()


MIN_DEFAULT_BUDGET = 1 << 30


def _budget_bytes() -> int:
    if "CT_GRAPH_CACHE_MB" in os.environ:
        return int(float(os.environ["CT_GRAPH_CACHE_MB"]) * 2**20)
    return max(MIN_DEFAULT_BUDGET, _total_memory() // 4)


def _total_memory() -> int:
    """The machine's memory in bytes, or that of the process's cgroup when it is smaller."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def _key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _graph_bytes(graph) -> int:
    import torch

    A = graph.adjacency_matrix
    if A.layout == torch.sparse_coo:
        size = A._indices().nbytes + A._values().nbytes
    elif A.layout == torch.strided:
        size = A.nbytes
    else:
        size = A.values().nbytes * 3
    return size + graph.active_features.nbytes + graph.activation_values.nbytes


def remember_graph(path: Path, graph) -> None:
    """Put a graph just written to ``path`` in the cache (the next asset skips the read)."""
    _GRAPHS[_key(path)] = (graph, _graph_bytes(graph))
    _GRAPHS.move_to_end(_key(path))
    while len(_GRAPHS) > 1 and sum(size for _, size in _GRAPHS.values()) > _budget_bytes():
        _GRAPHS.popitem(last=False)


def load_graph(path: Path, on_load: Callable[[object], None] | None = None):
    """``Graph.load(path)``, cached while the file is unchanged (path, size, mtime).

    ``on_load``: called with the graph when it is read from the file (not when the cache
    holds it), before it is cached and returned.
    """
    from ct_engine.graph import Graph

    key = _key(path)
    if key not in _GRAPHS:
        graph = Graph.load(path)
        if on_load is not None:
            on_load(graph)
        remember_graph(path, graph)
    _GRAPHS.move_to_end(key)
    return _GRAPHS[key][0]
