"""Benchmark: pruning and scoring a large attribution graph on the CPU, at real density.

Builds a synthetic graph with the structure of a real one (``L`` layers × ``T`` positions of
error and token nodes, the remaining nodes features at random (layer, pos ≥ 1) cells, ``K``
logit rows), stores it, and times ``prune_graph`` and ``compute_graph_scores`` in a fresh child
process so that its peak RSS is the pruning's own (plus the loaded graph and torch), not the
generator's.

Density (``--edges-per-feature``):

* ``full`` (default): each feature row reads every feature and error of the layers before it
  at positions ≤ its own and every token ≤ its position, as a real uncapped graph does (the
  benchmark model's 256-token graph is 21.7% dense). Defaults: that graph's shape (8 layers,
  256 positions, 54,737 features, 10 logits: 57,051 nodes, about 700 million edges), built
  row block by row block straight into CSR (:class:`ct_engine.attribution.sparse_rows.CsrRows`);
* a number ``E``: about ``E`` random such sources per feature row (sparse COO; the earlier
  benchmark used 300, 60,000 nodes, 20 layers × 200 positions).

    prlimit --as=$((9 << 30)) .venv/bin/python benchmarks/bench_prune.py \
        [--nodes 57051 --layers 8 --positions 256] [--edges-per-feature full|300] [--out FILE]

Also reports the graph file's size per edge and its write and read times. Appends a dated
section to ``benchmarks/results/prune.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ct_engine.graph import (  # noqa: E402
    Graph,
    LogitTarget,
    ModelConfig,
    compute_graph_scores,
    prune_graph,
)

RESULTS = ROOT / "benchmarks" / "results" / "prune.md"


def synthetic_graph(
    n_nodes: int, n_layers: int, n_pos: int, n_logits: int, edges_per_feature: int, seed: int
) -> Graph:
    """A random layered attribution graph with a sparse COO adjacency (see module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    L, T, K = n_layers, n_pos, n_logits
    S = n_nodes - (L + 1) * T - K
    if S <= 0:
        raise ValueError("too few nodes for the error/token/logit nodes")
    # Features, sorted by (layer, pos) like coalesced activations.
    cell = torch.randint(0, L, (S,), generator=gen) * T + torch.randint(1, T, (S,), generator=gen)
    cell = torch.sort(cell).values
    feat_layer, feat_pos = cell // T, cell % T
    cell_count = torch.bincount(cell, minlength=L * T)
    cell_start = torch.cumsum(cell_count, 0) - cell_count

    # Feature rows: each source is a token (5 %), an error (15 %) or a feature (80 %) of an
    # earlier layer at a position <= the target's; an empty feature cell falls back to its error.
    E = edges_per_feature
    rows = torch.arange(S).repeat_interleave(E)
    layer = feat_layer.repeat_interleave(E)
    pos = feat_pos.repeat_interleave(E)
    src_pos = (torch.rand(S * E, generator=gen) * (pos + 1)).long()
    src_layer = (torch.rand(S * E, generator=gen) * layer).long()
    kind = torch.rand(S * E, generator=gen)
    is_token = (kind < 0.05) | (layer == 0)
    src_cell = src_layer * T + src_pos
    count = cell_count[src_cell]
    is_feature = ~is_token & (kind >= 0.2) & (count > 0)
    pick = (torch.rand(S * E, generator=gen) * count).long()
    cols = torch.where(
        is_feature,
        cell_start[src_cell] + pick,
        torch.where(is_token, S + L * T + src_pos, S + src_layer * T + src_pos),
    )
    del layer, pos, src_pos, src_layer, kind, is_token, src_cell, count, is_feature, pick
    scale = torch.exp(torch.randn(S, generator=gen)).repeat_interleave(E)
    values = torch.randn(S * E, generator=gen) * scale
    del scale

    # Logit rows read from about half of all feature, error and token nodes.
    n_src = S + (L + 1) * T
    logit_rows, logit_cols = [], []
    for k in range(K):
        keep = (torch.rand(n_src, generator=gen) < 0.5).nonzero().squeeze(1)
        logit_cols.append(keep)
        logit_rows.append(torch.full_like(keep, n_nodes - K + k))
    rows = torch.cat([rows, *logit_rows])
    cols = torch.cat([cols, *logit_cols])
    values = torch.cat([values, torch.randn(len(rows) - len(values), generator=gen) * 2])
    adjacency = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), values, (n_nodes, n_nodes), check_invariants=False
    ).coalesce()
    del rows, cols, values

    probs = torch.softmax(torch.randn(K, generator=gen), 0) * 0.9
    active = torch.stack([feat_layer, feat_pos, torch.randint(0, 16384, (S,), generator=gen)], 1)
    return Graph(
        input_string="synthetic",
        input_tokens=torch.randint(0, 1000, (T,), generator=gen),
        active_features=active,
        activation_values=torch.rand(S, generator=gen),
        selected_features=torch.arange(S),
        adjacency_matrix=adjacency,
        logit_targets=[LogitTarget(f"t{k}", k) for k in range(K)],
        logit_probabilities=probs,
        vocab_size=1000,
        cfg=ModelConfig(L, 2304, 256, 8, 9216, 256000, "synthetic", "synthetic", "Synthetic"),
    )


def full_density_graph(n_nodes: int, n_layers: int, n_pos: int, n_logits: int, seed: int):
    """Every structurally possible edge present (see the module docstring); CSR adjacency."""
    from ct_engine.attribution.sparse_rows import CsrRows

    gen = torch.Generator().manual_seed(seed)
    L, T, K = n_layers, n_pos, n_logits
    S = n_nodes - (L + 1) * T - K
    cell = torch.randint(0, L, (S,), generator=gen) * T + torch.randint(1, T, (S,), generator=gen)
    cell = torch.sort(cell).values
    feat_layer, feat_pos = cell // T, cell % T
    n_src = S + (L + 1) * T
    src_layer = torch.cat([feat_layer, torch.arange(L).repeat_interleave(T), torch.full((T,), -1)])
    src_pos = torch.cat([feat_pos, torch.arange(T).repeat(L), torch.arange(T)])
    counts = torch.zeros(L + 1, T, dtype=torch.long)
    counts.index_put_((feat_layer + 1, feat_pos), torch.ones_like(feat_layer), accumulate=True)
    bounds = torch.zeros(n_nodes, dtype=torch.long)
    below = counts.cumsum(0).cumsum(1)
    bounds[:S] = below[feat_layer, feat_pos] + (feat_layer + 1) * (feat_pos + 1)
    bounds[n_src:] = n_src
    rows = CsrRows(bounds, n_src)
    step = max(1, (1 << 24) // n_src)
    for start in range(0, S, step):
        stop = min(start + step, S)
        layer, pos = feat_layer[start:stop, None], feat_pos[start:stop, None]
        reach = (src_layer[None] < layer) & (src_pos[None] <= pos)
        scale = torch.exp(torch.randn(stop - start, 1, generator=gen))
        block = torch.randn(stop - start, n_src, generator=gen) * scale * reach
        rows.write(torch.arange(start, stop), block)
    rows.write(torch.arange(n_src, n_nodes), torch.randn(K, n_src, generator=gen) * 2)
    adjacency = rows.finish()
    probs = torch.softmax(torch.randn(K, generator=gen), 0) * 0.9
    active = torch.stack([feat_layer, feat_pos, torch.randint(0, 16384, (S,), generator=gen)], 1)
    return Graph(
        input_string="synthetic",
        input_tokens=torch.randint(0, 1000, (T,), generator=gen),
        active_features=active,
        activation_values=torch.rand(S, generator=gen),
        selected_features=torch.arange(S),
        adjacency_matrix=adjacency,
        logit_targets=[LogitTarget(f"t{k}", k) for k in range(K)],
        logit_probabilities=probs,
        vocab_size=1000,
        cfg=ModelConfig(L, 256, 32, 8, 1024, 73, "synthetic", "synthetic", "Synthetic"),
    )


def run_saved(path: str) -> dict:
    """Child process: load the graph, prune and score it, report times and peak RSS."""
    start = time.perf_counter()
    graph = Graph.load(path)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    node_mask, edge_mask, _ = prune_graph(graph, 0.8, 0.98)
    prune_s = time.perf_counter() - start
    start = time.perf_counter()
    replacement, completeness = compute_graph_scores(graph)
    scores_s = time.perf_counter() - start
    return {
        "load_s": load_s,
        "prune_s": prune_s,
        "scores_s": scores_s,
        "kept_nodes": int(node_mask.sum()),
        "kept_edges": len(edge_mask),
        "replacement": replacement,
        "completeness": completeness,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=57_051)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--positions", type=int, default=256)
    parser.add_argument("--logits", type=int, default=10)
    parser.add_argument("--edges-per-feature", default="full", help="'full' or a number")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--run-saved", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_saved:
        print(json.dumps(run_saved(args.run_saved)))
        return

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    full = args.edges_per_feature == "full"
    shape = (args.nodes, args.layers, args.positions, args.logits)
    if full:
        graph = full_density_graph(*shape, args.seed)
    else:
        graph = synthetic_graph(*shape, int(args.edges_per_feature), args.seed)
    build_s = time.perf_counter() - start
    A = graph.adjacency_matrix
    n_edges = A.values().numel() if full else A._nnz()
    held = sum(t.numel() * t.element_size() for t in (A.values(), A.col_indices()))
    print(f"built {graph.n_nodes} nodes, {n_edges} edges in {build_s:.1f}s", flush=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        path = os.path.join(tmp, "graph.safetensors")
        start = time.perf_counter()
        graph.save(path)
        save_s = time.perf_counter() - start
        file_bytes = os.path.getsize(path)
        del graph, A
        child = subprocess.run(
            [sys.executable, __file__, "--run-saved", path],
            check=True,
            capture_output=True,
            text=True,
        )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    total = result["prune_s"] + result["scores_s"]
    density = n_edges / args.nodes**2
    per_row = "every reachable source" if full else f"~{args.edges_per_feature} per feature row"
    layout = "CSR (float32 values, int32 columns)" if full else "COO"
    lines = [
        f"## {time.strftime('%Y-%m-%d')}: {args.nodes:,} nodes, {n_edges:,} edges",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), no GPU; load average "
        f"(1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (shared machine).",
        "",
        f"Graph: {args.nodes:,} nodes ({args.layers} layers × {args.positions} positions of "
        f"errors and tokens, {args.logits} logits, the rest features), **{n_edges:,} nonzero "
        f"edges** ({per_row}; {density:.1%} dense), sparse {layout} adjacency, "
        f"{held / 2**30:.2f} GiB in memory. A dense float32 adjacency would be "
        f"{args.nodes**2 * 4 / 2**30:.1f} GiB.",
        "",
        f"Graph file (`Graph.save`, safetensors): {file_bytes / 2**30:.2f} GiB, "
        f"{file_bytes / max(n_edges, 1):.2f} bytes per edge, written in {save_s:.1f} s.",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| build synthetic graph (not timed below) | {build_s:.1f} |",
        f"| load from safetensors | {result['load_s']:.1f} |",
        f"| `prune_graph(0.8, 0.98)` | {result['prune_s']:.1f} |",
        f"| `compute_graph_scores` | {result['scores_s']:.1f} |",
        f"| **prune + scores** | **{total:.1f}** |",
        "",
        f"Peak RSS of the process that loaded, pruned and scored: "
        f"**{result['peak_rss_gib']:.2f} GiB**.",
        "",
        f"Kept {result['kept_nodes']:,} nodes and {result['kept_edges']:,} edges; replacement "
        f"score {result['replacement']:.3f}, completeness {result['completeness']:.3f}.",
        "",
        "Goal: under 60 s and under 8 GiB.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:  # appended: earlier runs stay for comparison
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as out:
            out.write("\n" + report)


if __name__ == "__main__":
    main()
