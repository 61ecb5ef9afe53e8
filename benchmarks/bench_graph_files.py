"""Benchmark: writing viewer graph files (``create_graph_files``) for large graphs.

Builds the pruning benchmark's synthetic layered graph (sparse adjacency) at a few sizes,
then times pruning plus writing ``<slug>.json`` and ``graph-metadata.json``. Writes
``benchmarks/results/graph_files.md``.

    .venv/bin/python benchmarks/bench_graph_files.py [--nodes 5000 20000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench_prune import synthetic_graph

from ct_engine.graph.files import create_graph_files

RESULTS = Path(__file__).parent / "results" / "graph_files.md"


class _Tokenizer:
    """Decodes synthetic token ids; the synthetic graph has no real tokenizer."""

    def decode(self, ids: list[int]) -> str:
        return f"t{ids[0]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[5000, 20000])
    args = ap.parse_args()
    lines = [
        "# Graph-file benchmark (`benchmarks/bench_graph_files.py`)",
        "",
        "Synthetic layered graphs (20 layers, 100 positions, 10 logits, ~300 edges per "
        "feature row), pruned at 0.8 / 0.98, written as viewer JSON. 2-core CPU.",
        "",
        "| nodes | edges | kept nodes | links | seconds | file size (MiB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n in args.nodes:
        graph = synthetic_graph(n, 20, 100, 10, 300, seed=0)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            path = create_graph_files(graph, "bench", out, tokenizer=_Tokenizer(), scan="bench")
            seconds = time.perf_counter() - start
            doc = json.loads(path.read_text())
            size = path.stat().st_size / 2**20
        edges = graph.adjacency_matrix._nnz()
        row = (
            f"| {n} | {edges} | {len(doc['nodes'])} | {len(doc['links'])} "
            f"| {seconds:.1f} | {size:.1f} |"
        )
        print(row)
        lines.append(row)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
