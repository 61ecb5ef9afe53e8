"""``ct features show``: one feature's card in the terminal, read from feature files.

    ct features show LAYER FEATURE [MODEL TRANSCODERS] [--features_dir DIR]

Reads ``--features_dir``, or the folder ``ct features build MODEL TRANSCODERS`` writes by
default (``features/<transcoders>``). Prints the label and its source, frequency, activation
range, quantiles, a histogram, promoted and suppressed logits, the tokens it fires on, and the
top and quantile example contexts with the strongest token marked ``«token»``. Imports no
torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

NAME = "show"
HELP = "print one feature's card from feature files"
DESCRIPTION = (
    "Print one feature's card (label, frequency, activations, histogram, logits, input "
    "tokens, example contexts) from the feature files in --features_dir, or from the default "
    "output of `ct features build MODEL TRANSCODERS` (features/<transcoders>)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("layer", type=int, help="source layer")
    p.add_argument("feature", type=int, help="feature index within the layer")
    p.add_argument("model", nargs="?", help="the model the files were built for")
    p.add_argument("transcoders", nargs="?", help="the transcoder set they were built for")
    p.add_argument(
        "--features_dir",
        metavar="DIR",
        help="features folder (default: features/<transcoders>, ct features build's output)",
    )
    p.add_argument("--examples", type=int, default=8, help="top example contexts shown")
    p.add_argument(
        "--quantile-examples", type=int, default=2, help="example contexts shown per quantile band"
    )
    p.add_argument("--context", type=int, default=10, help="tokens shown either side")


def run(args: argparse.Namespace) -> int:
    from ct_engine.features.files import FeatureFiles, default_features_dir
    from ct_engine.features.terminal import card_text

    for flag in ("examples", "quantile_examples", "context"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must not be negative")
    if args.model is not None and args.transcoders is None:
        raise ValueError("give both MODEL and TRANSCODERS, or --features_dir")
    if args.features_dir is None and args.transcoders is None:
        raise ValueError("give MODEL TRANSCODERS or --features_dir DIR")
    directory = (
        Path(args.features_dir)
        if args.features_dir is not None
        else default_features_dir(args.transcoders)
    )
    if args.features_dir is None and not directory.is_dir():
        raise ValueError(
            f"no feature files for {args.transcoders} in {directory}: run "
            f"`ct features build {args.model} {args.transcoders}` or give --features_dir"
        )
    files = FeatureFiles(directory)
    built_for = files.model_name
    if args.model is not None and built_for and built_for != args.model:
        raise ValueError(f"{directory} holds features of model {built_for!r}, not {args.model!r}")
    card = files.card(args.layer, args.feature)
    text = card_text(
        card,
        top_examples=args.examples,
        quantile_examples=args.quantile_examples,
        context=args.context,
    )
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Piped into `head`: the reader has what it wanted. Python's own flush at exit would
        # fail again, so stdout goes to devnull.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
