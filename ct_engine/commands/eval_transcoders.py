"""``ct eval-transcoders``: transcoder quality metrics from the command line.

    ct eval-transcoders MODEL TRANSCODERS [--prompts FILE] [--n-tokens N] [--batch-size B]
        [--max-seq-len T] [--dtype float32] [--plot out.png] [--json out.json]

Prints a table (one row per layer plus a mean row, then the whole-model fidelity numbers).
``--prompts`` is a text file with one prompt per line; without it the built-in sample
:data:`ct_engine.metrics.DEFAULT_TEXTS` (16 short English sentences) is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ct_engine.commands._shared import add_lazy_flags, check_output_file
from ct_engine.options import DTYPE_NAMES

NAME = "eval-transcoders"
HELP = "reconstruction, sparsity and fidelity metrics of a transcoder set"
DESCRIPTION = (
    "Evaluate transcoders on a token sample: MSE, uncentered NMSE, centered FVU/FVE, "
    "L0, dead/dense fractions per layer; KL, top-1 agreement and delta CE with every "
    "MLP replaced; CE loss recovered per single-layer splice. Position 0 (BOS) is "
    "excluded from every statistic."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="Hugging Face model directory or hub id")
    p.add_argument("transcoders", help="transcoder reference (folder, owner/repo, gemma, ...)")
    p.add_argument(
        "--prompts",
        help="text file, one prompt per line (default: the built-in sample of 16 sentences)",
    )
    p.add_argument("--n-tokens", type=int, default=None, help="cap on scored tokens")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    p.add_argument("--max-seq-len", type=int, default=128, help="longest sequence, BOS included")
    p.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="float32", help="model dtype")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    add_lazy_flags(p)
    p.add_argument("--plot", help="save the per-layer panels to this PNG")
    p.add_argument("--json", help="save every metric to this JSON file")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status (2 on bad input, with a message on stderr)."""
    try:
        return _run(args)
    except ValueError as err:
        print(f"ct {NAME}: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.n_tokens is not None and args.n_tokens < 1:
        raise ValueError(f"--n-tokens must be positive, got {args.n_tokens}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    if args.max_seq_len < 2:
        raise ValueError(
            f"--max-seq-len must be at least 2 (BOS and a token), got {args.max_seq_len}"
        )
    # the outputs, before the model loads: the suffix names the format written
    if args.json:
        check_output_file(args.json, "--json", (".json",), makes_folder=True)
    if args.plot:
        check_output_file(args.plot, "--plot", (".png",), makes_folder=True)
    import torch

    from ct_engine.metrics.evaluate import evaluate_transcoders
    from ct_engine.metrics.sample import DEFAULT_TEXTS, token_sample_from_texts
    from ct_engine.metrics.table import format_table
    from ct_engine.replacement import ReplacementModel

    if args.prompts:
        path = Path(args.prompts)
        if not path.is_file():
            raise ValueError(f"prompts file {str(path)!r} does not exist")
        texts = path.read_text(encoding="utf-8").splitlines()
    else:
        texts = list(DEFAULT_TEXTS)
    model = ReplacementModel.from_pretrained(
        args.model,
        args.transcoders,
        device=args.device,
        dtype=getattr(torch, DTYPE_NAMES[args.dtype]),
        lazy_encoder=args.lazy_encoder,
        lazy_decoder=args.lazy_decoder,
    )
    sample = token_sample_from_texts(
        model, texts, max_seq_len=args.max_seq_len, n_tokens=args.n_tokens
    )
    metrics = evaluate_transcoders(
        model, sample, batch_size=args.batch_size, progress=args.progress
    )
    print(format_table(metrics))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"model": args.model, "transcoders": args.transcoders, **metrics.to_dict()}
        out.write_text(json.dumps(record, indent=2))
        print(f"metrics saved to {out}")
    if args.plot:
        from ct_engine.metrics.plot import plot_metrics

        out = plot_metrics(metrics, args.plot, title=f"{args.transcoders} on {args.model}")
        print(f"plot saved to {out}")
    return 0
