"""``ct features build``: measure every feature of a transcoder set on a corpus, write the files.

    ct features build MODEL TRANSCODERS [--corpus FILE] [--tokens N] [--out DIR] ...

Streams the corpus (a ``.txt``, ``.jsonl`` or ``.parquet`` file; for the toy-world model the
toy world's own text when ``--corpus`` is not given) through the model once, with a progress
bar, and writes circuit-tracer's feature files (:mod:`ct_engine.features.files`) to ``--out``,
by default ``features/<transcoders>`` under the working folder
(:func:`ct_engine.features.files.default_features_dir`), which ``ct features show`` and
``ct serve --features_dir`` read. Needs no lakehouse. The top level imports argparse only.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time
from pathlib import Path

from ct_engine.options import DTYPE_NAMES

NAME = "build"
HELP = "measure every feature on a corpus and write circuit-tracer's feature files"
DESCRIPTION = (
    "Measure every feature of a transcoder set on a corpus (one streaming pass: frequency, "
    "activation quantiles and histogram, top and quantile example contexts, promoted and "
    "suppressed logits, input tokens, a label) and write circuit-tracer's feature files "
    "(index.json.gz and layer_<i>.bin), viewable with `ct serve --features_dir DIR` and "
    "`ct features show LAYER FEATURE --features_dir DIR`."
)


TOY_WORLD = "toy-world"

# build_dashboards' own defaults, repeated here because the parser must not import torch
# (tests/engine/features/test_features_cli.py checks that they agree).
DEFAULT_TOKENS = 200_000
DEFAULT_WINDOW = 64
DEFAULT_TOP_K = 16
DEFAULT_BATCH_TOKENS = 4096


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="Hugging Face model directory or hub id, or toy-world")
    p.add_argument("transcoders", help="transcoder reference (folder, owner/repo, gemma, ...)")
    p.add_argument(
        "--corpus",
        metavar="FILE",
        help=".txt (one document per line), .jsonl or .parquet file; optional for the "
        "toy-world model (default: its generated text)",
    )
    p.add_argument(
        "--field", default="text", help="the document's key in .jsonl, column in .parquet"
    )
    p.add_argument("--tokens", type=int, default=DEFAULT_TOKENS, help="corpus tokens to read")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="features folder to write (replaced if it exists; default: features/<transcoders>)",
    )
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="tokens per context window")
    p.add_argument(
        "--top-k", type=int, default=DEFAULT_TOP_K, help="top example contexts kept per feature"
    )
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="float32", help="model dtype")
    p.add_argument(
        "--batch-tokens",
        type=int,
        default=DEFAULT_BATCH_TOKENS,
        help="tokens per forward pass",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    for flag in ("tokens", "window", "top_k", "batch_tokens"):
        value = getattr(args, flag)
        if value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    # Everything that can be checked without the model is checked before loading it.
    from ct_engine.features.corpus import CorpusSpec, corpus_texts
    from ct_engine.features.files import default_features_dir

    spec = CorpusSpec(path=args.corpus, tokens=args.tokens, field=args.field)
    texts = corpus_texts(spec, _model_key(args.model))
    first = next(iter(texts), None)
    if first is None:
        raise ValueError(f"corpus {args.corpus}: no documents (the file is empty)")
    texts = itertools.chain([first], texts)
    out = Path(args.out) if args.out else default_features_dir(args.transcoders)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")

    from ct_engine.commands._shared import load_model
    from ct_engine.features import build_dashboards
    from ct_engine.features.files import write_feature_files

    with _quiet_loading(not args.progress):
        model = load_model(
            args.model, args.transcoders, DTYPE_NAMES[args.dtype], device=args.device
        )
    dashboards = build_dashboards(
        model,
        texts,
        max_tokens=args.tokens,
        window=args.window,
        top_k=args.top_k,
        batch_tokens=args.batch_tokens,
        corpus=spec.describe(),
        progress=args.progress,
    )
    start = time.perf_counter()
    try:
        path = write_feature_files(dashboards, out, progress=args.progress)
    except OSError as err:
        raise ValueError(f"cannot write {out}: {err.strerror or err}") from None
    seconds = time.perf_counter() - start
    print(summary(dashboards, path, shown=out, name=args.transcoders, write_seconds=seconds))
    return 0


@contextlib.contextmanager
def _quiet_loading(quiet: bool):
    """Without the Hugging Face weight-loading bar when ``quiet`` (``--no-progress``)."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _model_key(model: str) -> str:
    """The toy world's name for its generated text, whatever spelling loaded it."""
    return TOY_WORLD if model.strip().lower() == TOY_WORLD else model


def summary(dashboards, path: Path, *, shown: Path, name: str, write_seconds: float) -> str:
    """What was measured and written, and how to look at it (``name``: the transcoder set
    as the user named it; ``shown``: the folder as given)."""
    from collections import Counter

    from ct_engine.features import LABEL_SOURCES

    n_layers, d = dashboards.n_layers, dashboards.d_transcoder
    total = n_layers * d
    dead = int((dashboards.n_active == 0).sum())
    sources = Counter(dashboards.label_sources[dashboards.labels != ""].astype(str).tolist())
    order = [s for s in LABEL_SOURCES if s in sources] + sorted(set(sources) - set(LABEL_SOURCES))
    labelled = ", ".join(f"{sources[s]:,} {s}" for s in order)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    lines = [
        f"features: {n_layers} layers x {d:,} = {total:,} features of {name} "
        f"on {dashboards.model_name}",
        f"corpus: {dashboards.corpus}, {dashboards.n_tokens:,} tokens read",
        f"dead (never fired): {dead:,} ({100 * dead / max(total, 1):.1f}%)",
        f"labelled: {sources.total():,}" + (f" ({labelled})" if labelled else ""),
        f"time: {dashboards.seconds:.1f} s measuring, {write_seconds:.1f} s writing",
        f"written to {path} ({size / 2**20:.1f} MiB)",
        f"view: ct serve --features_dir {shown}",
        f"      ct features show LAYER FEATURE --features_dir {shown}",
    ]
    return "\n".join(lines)
