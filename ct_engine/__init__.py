"""ct_engine: exact attribution graphs over transcoders, in plain PyTorch.

    from ct_engine import ReplacementModel, attribute, Graph

Heavy submodules are imported lazily so that ``import ct_engine`` stays cheap.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Large CPU tensors on transparent huge pages. Attribution allocates and frees batch-sized
# buffers in every forward and backward pass, and faulting them in 4 KiB pages took a
# tenth of a 256-token run's time (benchmarks/results/attribution.md). PyTorch reads the
# variable at its first allocation, so it only takes effect when ct_engine is imported before
# torch has allocated (the ``ct`` command, Dagster's code location); a value the user set
# wins (``THP_MEM_ALLOC_ENABLE=0`` turns it off). Linux only; elsewhere it is ignored.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

_EXPORTS = {
    "ReplacementModel": "ct_engine.replacement",
    "attribute": "ct_engine.attribution",
    "CustomTarget": "ct_engine.attribution",
    "Graph": "ct_engine.graph",
    "prune_graph": "ct_engine.graph",
    "compute_graph_scores": "ct_engine.graph",
    "load_transcoders": "ct_engine.transcoders",
}

__all__ = [
    "CustomTarget",
    "Graph",
    "ReplacementModel",
    "attribute",
    "compute_graph_scores",
    "load_transcoders",
    "prune_graph",
]

if TYPE_CHECKING:
    from ct_engine.attribution import CustomTarget, attribute
    from ct_engine.graph import Graph, compute_graph_scores, prune_graph
    from ct_engine.replacement import ReplacementModel
    from ct_engine.transcoders import load_transcoders


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ct_engine' has no attribute {name!r}")
