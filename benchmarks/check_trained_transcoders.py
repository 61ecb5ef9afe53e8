"""Check that circuit-tracer 0.5.0 loads transcoder folders we trained and computes the same.

    # in the reference venv (benchmarks/setup_reference.sh), from the repository root:
    /work/ct-ref-venv/bin/python benchmarks/check_trained_transcoders.py PLT_DIR CLT_DIR
    # or with our venv and only circuit-tracer's source (a wheel unpacked, no dependencies):
    .venv/bin/python benchmarks/check_trained_transcoders.py PLT_DIR CLT_DIR --ct-src DIR

Each folder is loaded twice: by circuit-tracer's own entry point for a local folder
(``load_transcoder_from_hub(abs_path)``, which reads it as a cache entry, eagerly) and by
``ct_engine.transcoders.load_transcoders``. Random inputs ``(L, T, D)`` are then encoded and
decoded by both; the maximum absolute differences are printed (0.0 expected: same maths, same
float32 weights). With ``--ct-src`` circuit-tracer's package ``__init__`` files are bypassed
(they import its model backends), so only its transcoder and loading modules run.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
from pathlib import Path

import torch


def _import_circuit_tracer(source: str | None):
    if source:
        root = Path(source) / "circuit_tracer"
        package = types.ModuleType("circuit_tracer")
        package.__path__ = [str(root)]
        sys.modules["circuit_tracer"] = package
        utils = types.ModuleType("circuit_tracer.utils")
        utils.__path__ = [str(root / "utils")]
        utils.get_default_device = lambda: torch.device("cpu")
        sys.modules["circuit_tracer.utils"] = utils
        import huggingface_hub.constants as hf_constants  # newer hubs dropped this flag

        if not hasattr(hf_constants, "HF_HUB_ENABLE_HF_TRANSFER"):
            hf_constants.HF_HUB_ENABLE_HF_TRANSFER = False
    from circuit_tracer.utils.hf_utils import load_transcoder_from_hub

    return load_transcoder_from_hub


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--ct-src", help="folder holding circuit-tracer's package source")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ct_engine.transcoders import load_transcoders

    load_reference = _import_circuit_tracer(args.ct_src)
    torch.manual_seed(0)
    worst = 0.0
    for folder in args.folders:
        path = str(Path(folder).resolve())
        theirs, config = load_reference(
            path, device=torch.device("cpu"), dtype=torch.float32, lazy_decoder=False
        )
        ours = load_transcoders(path, lazy_decoder=False)
        x = torch.randn(ours.n_layers, 64, ours.d_model) * x_scale(ours)
        a_ours, a_theirs = ours.encode(x), theirs.encode(x)
        if a_theirs.is_sparse:
            a_theirs = a_theirs.to_dense()
        enc = (a_ours - a_theirs).abs().max().item()
        y_ours = ours.decode(a_ours, x)
        # Relative to the output size: the CLT sums sources in a different order.
        dec = ((y_ours - theirs.decode(a_theirs, x)).abs().max() / y_ours.abs().max()).item()
        active = (a_ours != 0).float().sum(-1).mean().item()
        worst = max(worst, enc, dec)
        print(
            f"{folder}: circuit-tracer {type(theirs).__name__} ({config['model_kind']}, "
            f"{theirs.feature_input_hook} -> {theirs.feature_output_hook}); "
            f"max |Δ encode| = {enc:.3g}, rel. Δ decode = {dec:.3g}, mean L0 {active:.1f}"
        )
    print("OK" if worst <= 1e-5 else "MISMATCH")
    return 0 if worst <= 1e-5 else 1


def x_scale(transcoders) -> float:
    """Input scale at which pre-activations are of order one: 1 / mean encoder row norm."""
    norms = [transcoders.encoder_weight(i).norm(dim=-1).mean() for i in range(transcoders.n_layers)]
    return float(1.0 / torch.stack(norms).mean())


if __name__ == "__main__":
    raise SystemExit(main())
