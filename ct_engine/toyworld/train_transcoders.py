"""Retrain the toy world's shipped transcoders, each set with exactly its shipped settings.

One command (``make toy-world-transcoders`` runs it)::

    HF_HUB_OFFLINE=1 python -m ct_engine.toyworld.train_transcoders \\
        [--out ct_engine/toyworld/artifacts] [--kind plt|clt|both]

The activations of the shipped model over its corpus are collected once, then each set is
trained with its own :data:`SETTINGS` into ``OUT/plt`` and ``OUT/clt`` (plus their
``training.json``). Deterministic: the same torch build and CPU give the same weights (fixed
seeds and thread counts). ``ct_engine/toyworld/MODEL_CARD.md`` reports what they measure.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from ct_engine.toyworld.default_model import DEFAULT_MODEL_DIR
from ct_engine.training.train_transcoders import (
    TrainingResult,
    print_results,
    train_transcoders,
)
from ct_engine.training.trainer import TrainConfig

ARTIFACTS = DEFAULT_MODEL_DIR.parent
# Collection: the model's activations on every position of its corpus, up to this many.
MAX_TOKENS = 120_000
# The settings not named here are TrainConfig's defaults.
SETTINGS: dict[str, TrainConfig] = {
    "plt": TrainConfig(kind="plt", n_features=1024, steps=800, batch_size=1024, threads=2),
    "clt": TrainConfig(kind="clt", n_features=1024, steps=800, batch_size=1024, threads=2),
}
# The collection's own seed and thread count (the activations do not depend on the kind).
COLLECTION = TrainConfig(seed=0, threads=2)


def retrain(
    out: str | Path = ARTIFACTS, kinds: Sequence[str] = ("plt", "clt"), progress: bool = True
) -> list[TrainingResult]:
    """Train ``kinds`` of the toy world's transcoders with :data:`SETTINGS` into ``out/KIND``."""
    out = Path(out)
    return train_transcoders(
        DEFAULT_MODEL_DIR,
        DEFAULT_MODEL_DIR / "corpus.txt",
        kinds=tuple(kinds),
        out_dirs={kind: out / kind for kind in kinds},
        config=COLLECTION,
        configs=SETTINGS,
        max_tokens=MAX_TOKENS,
        progress=progress,
        model_name="toy-world",
    )


def main(argv: Sequence[str] | None = None) -> list[TrainingResult]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(
        prog="python -m ct_engine.toyworld.train_transcoders",
        description="Retrain the toy world's transcoders with their shipped settings.",
    )
    parser.add_argument("--out", default=str(ARTIFACTS), help="writes OUT/plt and OUT/clt")
    parser.add_argument("--kind", choices=("plt", "clt", "both"), default="both")
    args = parser.parse_args(argv)
    kinds = ("plt", "clt") if args.kind == "both" else (args.kind,)
    results = retrain(args.out, kinds)
    print_results(results)
    return results


if __name__ == "__main__":
    main()
