"""Build the attribution benchmark's model files (run with the project's .venv).

Writes, under ``--out`` (default ``benchmarks/.data``):

* ``model/``: a random Llama-architecture Hugging Face model (8 layers, d_model 256, 8 heads,
  2 KV heads, d_mlp 1024) with the tiny word-level tokenizer of :mod:`ct_engine.tiny`;
* ``transcoders/``: per-layer JumpReLU transcoders (PLT) with 2,048 features per layer in
  circuit-tracer's on-disk format, reading ``mlp.hook_in`` and writing ``mlp.hook_out`` (hooks
  that both our TransformerBridge backend and circuit-tracer's TransformerLens backend have);
* ``prompt.json``: the benchmark's deterministic token ids (``<bos>`` first);
* ``bench_model.json``: the spec, the calibrated threshold scale and the active-feature counts.

The JumpReLU threshold scale is calibrated so that the 64-token prompt has about
``--target-active`` active features: the thresholds are ``u * scale`` with ``u`` fixed by the
seed, so the count for any scale follows from one clean forward pass.

    .venv/bin/python benchmarks/make_bench_model.py [--out DIR] [--force]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / ".data"

N_LAYERS = 8
D_MODEL = 256
N_HEADS = 8
N_KV_HEADS = 2
D_MLP = 1024
D_TRANSCODER = 2048
MAX_POSITIONS = 1024
INPUT_HOOK = "mlp.hook_in"
OUTPUT_HOOK = "mlp.hook_out"
# The longest prompt; shorter ones are its prefixes. Raised from 512 (with MAX_POSITIONS) for
# the 1,024-token benchmark: the weights, the transcoders and every shorter prompt are the same
# bytes as before (the prompt is drawn token by token from one seeded generator, and a Llama's
# rotary positions have no weights).
PROMPT_LENGTH = 1024
PROMPT_SEED = 1234
N_SPECIALS = 4  # <pad> <bos> <eos> <unk> come first in the tiny tokenizer
BOS_ID = 1
CALIBRATION_LENGTH = 64


def prompt_ids(vocab_size: int, length: int = PROMPT_LENGTH, seed: int = PROMPT_SEED) -> list[int]:
    """``<bos>`` then ``length - 1`` pseudo-random non-special tokens (``length`` counts BOS)."""
    g = torch.Generator().manual_seed(seed)
    body = torch.randint(N_SPECIALS, vocab_size, (length - 1,), generator=g)
    return [BOS_ID, *body.tolist()]


def count_active(model_dir: Path, tc_dir: Path, tokens: list[int], scales: list[float]) -> dict:
    """Active features of ``tokens`` for each threshold scale (position 0 excluded)."""
    from ct_engine.replacement import ReplacementModel

    model = ReplacementModel.from_pretrained(model_dir, tc_dir, dtype=torch.float32, device="cpu")
    with torch.no_grad():
        clean = model.impl.clean_run(torch.tensor(tokens))
        x = clean.feature_inputs[:, 1:]  # (L, T-1, D): position 0 is zeroed by attribution
        counts = dict.fromkeys(scales, 0)
        for layer in range(N_LAYERS):
            p = load_file(str(tc_dir / f"layer_{layer}.safetensors"))
            pre = x[layer] @ p["W_enc"].T + p["b_enc"]
            u = p["activation_function.threshold"]  # built with threshold_scale=1
            for s in scales:
                counts[s] += int((pre > u * s).sum())
    return counts


def build(out: Path, target_active: int, seed: int) -> dict:
    from ct_engine.tiny import TinyModelSpec, build_random_transcoders, build_tiny_model

    model_dir, tc_dir = out / "model", out / "transcoders"
    spec = TinyModelSpec(
        family="llama",
        n_layers=N_LAYERS,
        d_model=D_MODEL,
        n_heads=N_HEADS,
        n_kv_heads=N_KV_HEADS,
        d_mlp=D_MLP,
        max_position_embeddings=MAX_POSITIONS,
        seed=seed,
    )
    build_tiny_model(model_dir, spec)
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    tokens = prompt_ids(vocab)

    def transcoders(scale: float) -> None:
        build_random_transcoders(
            tc_dir,
            n_layers=N_LAYERS,
            d_model=D_MODEL,
            d_transcoder=D_TRANSCODER,
            kind="plt",
            activation="jump_relu",
            feature_input_hook=INPUT_HOOK,
            feature_output_hook=OUTPUT_HOOK,
            seed=seed,
            threshold_scale=scale,
        )

    # Calibrate: thresholds are u * scale with u fixed by the seed.
    transcoders(1.0)
    grid = [round(10 ** (i / 200), 3) for i in range(0, 601)]  # 1 .. 1000, 1.2% steps
    counts = count_active(model_dir, tc_dir, tokens[:CALIBRATION_LENGTH], grid)
    scale = min(grid, key=lambda s: abs(counts[s] - target_active))
    transcoders(scale)
    check = {
        n: count_active(model_dir, tc_dir, tokens[:n], [1.0])[1.0] for n in (16, 64, 256, 1024)
    }
    info = {
        "spec": spec.__dict__,
        "d_transcoder": D_TRANSCODER,
        "feature_input_hook": INPUT_HOOK,
        "feature_output_hook": OUTPUT_HOOK,
        "vocab_size": vocab,
        "threshold_scale": scale,
        "target_active_features_at_64": target_active,
        "active_features": check,
        "prompt_seed": PROMPT_SEED,
        "prompt_note": "token ids include the leading <bos>; shorter prompts are prefixes",
    }
    (out / "prompt.json").write_text(json.dumps({"token_ids": tokens}))
    (out / "bench_model.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--target-active", type=int, default=13_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="rebuild even if the files exist")
    args = ap.parse_args(argv)
    out: Path = args.out
    if (out / "bench_model.json").exists() and not args.force:
        print(f"{out} already built (use --force to rebuild)")
        print((out / "bench_model.json").read_text())
        return 0
    for sub in ("model", "transcoders"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    info = build(out, args.target_active, args.seed)
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
