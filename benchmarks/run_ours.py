"""Run ct_engine's ``attribute`` on the benchmark model (one prompt, one process).

    .venv/bin/python benchmarks/run_ours.py --data benchmarks/.data --length 64 \
        --batch-size 64 [--max-feature-nodes N] --out-json r.json [--out-tensors g.st] \
        [--profile out.prof]

Same record and tensor file layout as ``run_circuit_tracer.py``; ``bench_attribution.py`` runs
both as subprocesses so that each peak RSS is the process's own.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from runner_common import (
    finished_record,
    peak_rss_mib,
    run_and_record,
    runner_parser,
    save_graph,
)  # noqa: E402


def run(args) -> dict:
    from ct_engine.attribution import attribute
    from ct_engine.replacement import ReplacementModel

    torch.manual_seed(0)
    data = Path(args.data)
    tokens = json.loads((data / "prompt.json").read_text())["token_ids"][: args.length]
    record: dict = {
        "tool": "ct_engine",
        "length": len(tokens),
        "batch_size": args.batch_size,
        "max_feature_nodes": args.max_feature_nodes,
        "torch_threads": torch.get_num_threads(),
    }
    t0 = time.perf_counter()
    model = ReplacementModel.from_pretrained(
        data / "model", data / "transcoders", dtype=torch.float32, device="cpu"
    )
    record["load_s"] = time.perf_counter() - t0
    record["rss_after_load_mib"] = peak_rss_mib()

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    t0 = time.perf_counter()
    try:
        if profiler:
            profiler.enable()
        graph = attribute(
            tokens, model, batch_size=args.batch_size, max_feature_nodes=args.max_feature_nodes
        )
    except (MemoryError, RuntimeError) as err:
        if not isinstance(err, MemoryError) and "memory" not in str(err).lower():
            raise
        record.update(
            status="OOM",
            error=f"{type(err).__name__}: {str(err)[:300]}",
            wall_s_until_oom=time.perf_counter() - t0,
            peak_rss_mib=peak_rss_mib(),
        )
        return record
    finally:
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
    record.update(finished_record(graph, time.perf_counter() - t0, dict(graph.timings)))
    if args.out_tensors:
        save_graph(graph, args.out_tensors)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = runner_parser(__doc__.split("\n")[0])
    ap.add_argument("--profile", default=None, help="write cProfile stats of attribute() here")
    return run_and_record(run, ap.parse_args(argv), "ct_engine")


if __name__ == "__main__":
    sys.exit(main())
