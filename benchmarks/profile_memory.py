"""Where an uncapped attribution run's memory goes, per phase (run with the project's .venv).

    prlimit --as=$((9 << 30)) .venv/bin/python benchmarks/profile_memory.py --length 64 \
        [--batch-size 64] [--prune] [--sparse | --dense]

A thread samples the process RSS (``/proc/self/statm``) every 2 ms; each phase's peak and the
RSS when it ends are reported relative to the RSS after loading the model:

* ``context``: the clean forward and the transcoder vectors (phase 0);
* ``forward[T']``: each frozen forward (one per prompt prefix ``T'``), the RSS it retains;
* ``rows[T']``: the rows computed on that prefix, peak while they are stored;
* ``graph``: RSS once ``attribute`` has returned (the adjacency and the context);
* ``prune`` / ``scores`` (``--prune``): ``prune_graph`` and ``compute_graph_scores``.

The sizes of the adjacency (dense ``N²·4`` bytes, its nonzero count) are printed alongside.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
MIB = 1 << 20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Sampler:
    """Peak RSS since the last :meth:`mark`, sampled in a background thread."""

    def __init__(self) -> None:
        self.peak = _rss()
        self.phases: list[dict] = []
        self.base = _rss()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def mark(self, name: str) -> None:
        now = _rss()
        peak = max(self.peak, now)
        self.phases.append(
            {
                "phase": name,
                "peak_mib": (peak - self.base) / MIB,
                "end_mib": (now - self.base) / MIB,
            }
        )
        self.peak = now

    def stop(self) -> None:
        self._stop = True
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=HERE / ".data")
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--prune", action="store_true", help="also prune and score the graph")
    layout = ap.add_mutually_exclusive_group()
    layout.add_argument("--sparse", dest="sparse", action="store_true", default=None)
    layout.add_argument("--dense", dest="sparse", action="store_false")
    ap.add_argument("--out-json", type=Path, default=None)
    args = ap.parse_args(argv)

    import importlib

    from ct_engine.graph import compute_graph_scores, prune_graph
    from ct_engine.replacement import ReplacementModel

    # The package re-exports the function under the module's name.
    attribute_module = importlib.import_module("ct_engine.attribution.attribute")
    tokens = json.loads((args.data / "prompt.json").read_text())["token_ids"][: args.length]
    model = ReplacementModel.from_pretrained(
        args.data / "model", args.data / "transcoders", dtype=torch.float32, device="cpu"
    )
    sampler = Sampler()
    rss_model = sampler.base

    # Phase markers: wrap the functions that start each phase (measurement only).
    build_context = attribute_module.build_context

    def build_context_marked(*a, **k):
        ctx = build_context(*a, **k)
        sampler.mark("context")
        return ctx

    frozen_run = model.impl.frozen_run
    current = {"prefix": None}

    def frozen_run_marked(toks):
        if current["prefix"] is not None:
            sampler.mark(f"rows[{current['prefix']}]")
        run = frozen_run(toks)
        current["prefix"] = toks.shape[1]
        sampler.mark(f"forward[{toks.shape[1]}]")
        return run

    attribute_module.build_context = build_context_marked
    model.impl.frozen_run = frozen_run_marked
    kwargs = {} if args.sparse is None else {"sparse": args.sparse}
    t0 = time.perf_counter()
    graph = attribute_module.attribute(tokens, model, batch_size=args.batch_size, **kwargs)
    wall = time.perf_counter() - t0
    sampler.mark(f"rows[{current['prefix']}] + graph")
    attribute_module.build_context = build_context

    A = graph.adjacency_matrix
    n = A.shape[0]
    if A.layout == torch.strided:
        nnz = sum(int((A[i : i + 4096] != 0).sum()) for i in range(0, n, 4096))
    else:
        nnz = int(A._nnz()) if A.layout == torch.sparse_coo else int(A.values().numel())
    sampler.mark("count edges")
    out = {
        "length": len(tokens),
        "batch_size": args.batch_size,
        "layout": str(A.layout),
        "n_active": int(graph.active_features.shape[0]),
        "n_nodes": n,
        "nnz": nnz,
        "density": nnz / n / n,
        "dense_adjacency_mib": n * n * 4 / MIB,
        "attribute_s": wall,
        "timings": graph.timings,
        "rss_model_mib": rss_model / MIB,
    }
    if args.prune:
        t0 = time.perf_counter()
        pruned = prune_graph(graph)
        out["prune_s"] = time.perf_counter() - t0
        sampler.mark("prune_graph")
        out["kept_nodes"] = int(pruned.node_mask.sum())
        out["kept_edges"] = len(pruned.edge_mask)
        del pruned
        t0 = time.perf_counter()
        out["scores"] = compute_graph_scores(graph)
        out["scores_s"] = time.perf_counter() - t0
        sampler.mark("compute_graph_scores")
    sampler.stop()
    out["phases"] = sampler.phases
    out["peak_rss_mib"] = max(p["peak_mib"] for p in sampler.phases) + rss_model / MIB
    text = json.dumps(out, indent=2)
    print(text)
    if args.out_json:
        args.out_json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
