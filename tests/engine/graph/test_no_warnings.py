"""The graph functions a materialization runs print no library warning.

Each case runs in a fresh interpreter with every warning an error: torch reports some (the
sparse invariant checks) once per process, so an earlier test could otherwise hide them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

_SCRIPT = """
import warnings
warnings.simplefilter("error")
import torch
from ct_engine.graph import compute_graph_scores, compute_pruned_graph_scores, prune_graph
from ct_engine.graph.storage import load_graph, save_graph
from tests.engine.graph.helpers import random_graph

graph = random_graph(seed=3, layout="coo")
graph.adjacency_matrix = graph.adjacency_matrix.coalesce()
node_mask, edge_mask, _ = prune_graph(graph, 0.8, 0.98)
print(compute_graph_scores(graph))
print(compute_pruned_graph_scores(graph, node_mask))
save_graph(graph, "g.safetensors")
back = load_graph("g.safetensors")
assert torch.equal(back.adjacency_matrix.to_dense(), graph.adjacency_matrix.to_dense())
print("ok")
"""


def test_scores_pruning_and_storage_warn_nothing(tmp_path):
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", _SCRIPT],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "ok"
