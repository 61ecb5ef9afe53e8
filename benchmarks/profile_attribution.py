"""Profile ct_engine's ``attribute`` on the benchmark model (run with the project's .venv).

    .venv/bin/python benchmarks/profile_attribution.py --length 64 [--max-feature-nodes N]
        [--mode cprofile|torch] [--top 25]

``cprofile``: Python-level cumulative/self times (which of our functions the time goes to).
``torch``: operator-level self CPU times from ``torch.profiler`` (which kernels).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=HERE / ".data")
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-feature-nodes", type=int, default=None)
    ap.add_argument("--mode", choices=("cprofile", "torch"), default="cprofile")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", type=Path, default=None, help="write the raw profile here")
    args = ap.parse_args(argv)

    from ct_engine.attribution import attribute
    from ct_engine.replacement import ReplacementModel

    tokens = json.loads((args.data / "prompt.json").read_text())["token_ids"][: args.length]
    model = ReplacementModel.from_pretrained(
        args.data / "model", args.data / "transcoders", dtype=torch.float32, device="cpu"
    )

    def call():
        return attribute(
            tokens, model, batch_size=args.batch_size, max_feature_nodes=args.max_feature_nodes
        )

    t0 = time.perf_counter()
    if args.mode == "cprofile":
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        graph = call()
        prof.disable()
        wall = time.perf_counter() - t0
        if args.out:
            prof.dump_stats(str(args.out))
        stats = pstats.Stats(prof)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
    else:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            graph = call()
        wall = time.perf_counter() - t0
        if args.out:
            prof.export_chrome_trace(str(args.out))
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top)
        print(table)
    print(f"wall {wall:.2f} s (profiled); timings: " + json.dumps(graph.timings))
    print(f"N_act {graph.active_features.shape[0]}, nodes {graph.adjacency_matrix.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
