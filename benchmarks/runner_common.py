"""What both attribution runners share (ours in .venv, circuit-tracer's in its own venv).

Both run as scripts from this folder, so this module is importable by its plain name.
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

import torch


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def runner_parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", required=True)
    ap.add_argument("--length", type=int, required=True, help="tokens, leading <bos> included")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-feature-nodes", type=int, default=None)
    ap.add_argument("--out-json", required=True)
    ap.add_argument("--out-tensors", default=None)
    return ap


def finished_record(graph, wall: float, timings: dict) -> dict:
    """The fields of a successful run."""
    return dict(
        status="ok",
        wall_s=wall,
        timings=timings,
        peak_rss_mib=peak_rss_mib(),
        n_active=int(graph.active_features.shape[0]),
        n_selected=int(graph.selected_features.numel()),
        n_logits=len(graph.logit_targets),
        n_nodes=int(graph.adjacency_matrix.shape[0]),
    )


def save_graph(graph, path: str) -> None:
    """Small tensors to ``path`` (safetensors); the adjacency to ``path + ".adjacency.npy"``,
    or, when it is sparse CSR, its parts to ``path + ".adjacency.{crow,col,values}.npy"``.

    ``np.save`` writes the matrix without an in-memory serialisation copy (it can be
    10+ GiB), and the comparison reads it back memory-mapped.
    """
    import numpy as np
    from safetensors.torch import save_file

    adjacency = graph.adjacency_matrix
    if adjacency.layout == torch.sparse_csr:
        for part, tensor in (
            ("crow", adjacency.crow_indices()),
            ("col", adjacency.col_indices()),
            ("values", adjacency.values()),
        ):
            np.save(f"{path}.adjacency.{part}.npy", tensor.numpy())
    else:
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


def run_and_record(run, args, tool: str) -> int:
    """Run, write the JSON record (an out-of-memory run is recorded as "OOM"), exit code."""
    try:
        record = run(args)
    except MemoryError as err:
        record = {"tool": tool, "status": "OOM", "error": repr(err)[:300]}
        record["peak_rss_mib"] = peak_rss_mib()
    Path(args.out_json).write_text(json.dumps(record, indent=2))
    return 0 if record.get("status") == "ok" else 3
