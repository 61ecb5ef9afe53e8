"""Run ct_engine's ``attribute`` on the benchmark model (one prompt, one process).

    .venv/bin/python benchmarks/run_ours.py --data benchmarks/.data --length 64 \
        --batch-size 64 [--max-feature-nodes N] --out-json r.json [--out-tensors g.st] \
        [--profile out.prof]

Same record and tensor file layout as ``run_circuit_tracer.py``; ``bench_attribution.py`` runs
both as subprocesses so that each peak RSS is the process's own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def save_graph(graph, adjacency: torch.Tensor, path: str) -> None:
    """Small tensors to ``path`` (safetensors); the adjacency to ``path + ".adjacency.npy"``.

    ``np.save`` writes the dense matrix without an in-memory serialisation copy (it can be
    10+ GiB), and the comparison reads it back memory-mapped.
    """
    import numpy as np
    from safetensors.torch import save_file

    if adjacency.layout != torch.strided:
        adjacency = adjacency.to_dense()
    np.save(path + ".adjacency.npy", adjacency.detach().float().contiguous().numpy())
    save_file(
        {
            "active_features": graph.active_features.long().contiguous(),
            "activation_values": graph.activation_values.float().contiguous(),
            "selected_features": graph.selected_features.long().contiguous(),
            "logit_targets": torch.tensor([t.vocab_idx for t in graph.logit_targets]),
            "logit_probabilities": graph.logit_probabilities.float().contiguous(),
            "input_tokens": torch.as_tensor(graph.input_tokens).long().contiguous(),
        },
        path,
    )


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
    wall = time.perf_counter() - t0
    adjacency = graph.adjacency_matrix
    record.update(
        status="ok",
        wall_s=wall,
        timings=dict(graph.timings),
        peak_rss_mib=peak_rss_mib(),
        n_active=int(graph.active_features.shape[0]),
        n_selected=int(graph.selected_features.numel()),
        n_logits=len(graph.logit_targets),
        n_nodes=int(adjacency.shape[0]),
    )
    if args.out_tensors:
        save_graph(graph, adjacency, args.out_tensors)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--length", type=int, required=True, help="tokens, leading <bos> included")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-feature-nodes", type=int, default=None)
    ap.add_argument("--out-json", required=True)
    ap.add_argument("--out-tensors", default=None)
    ap.add_argument("--profile", default=None, help="write cProfile stats of attribute() here")
    args = ap.parse_args(argv)
    try:
        record = run(args)
    except MemoryError as err:
        record = {"tool": "ct_engine", "status": "OOM", "error": repr(err)[:300]}
        record["peak_rss_mib"] = peak_rss_mib()
    Path(args.out_json).write_text(json.dumps(record, indent=2))
    return 0 if record.get("status") == "ok" else 3


if __name__ == "__main__":
    sys.exit(main())
