"""Build the toy world model end to end: world, corpus, tokenizer, training, evaluation.

    python -m ct_engine.toyworld.train_model --out DIR --seed 0 [--steps N] [--threads 2]

writes to ``DIR``: the Hugging Face model (``config.json``, ``model.safetensors``,
``generation_config.json``), the tokenizer (``tokenizer.json``, ``tokenizer_config.json``),
``corpus.txt`` (the training documents, one per line), ``world.json`` (entities and facts) and
``eval.json`` (accuracies by split, seed, steps, train time, parameter count, settings).

From Python: ``from ct_engine.toyworld.train_model import train_model``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ct_engine.toyworld.corpus import CorpusConfig, generate_corpus, write_corpus
from ct_engine.toyworld.evaluate import evaluate_world
from ct_engine.toyworld.model import ModelSpec, build_model, n_parameters
from ct_engine.toyworld.tokenizer import save_tokenizer, train_tokenizer
from ct_engine.toyworld.training import TrainConfig, deterministic, encode_documents, train_loop
from ct_engine.toyworld.world import World, WorldSizes


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_model` wrote and measured (also saved as ``eval.json``)."""

    out_dir: str
    seed: int
    steps: int
    train_seconds: float
    total_seconds: float
    n_parameters: int
    vocab_size: int
    n_documents: int
    final_loss: float
    accuracy: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def _summary(acc: dict) -> dict[str, float]:
    one, two = acc["one_hop"], acc["two_hop"]

    def pooled(part: dict, splits: tuple[str, ...]) -> float:
        n = sum(part[s]["n"] for s in splits if s in part)
        return sum(part[s]["accuracy"] * part[s]["n"] for s in splits if s in part) / max(n, 1)

    return {
        "one_hop_heldout_template": one["heldout_template"]["accuracy"],
        "one_hop_train": one["train"]["accuracy"],
        "two_hop_heldout_template": two["heldout_template"]["accuracy"],
        "two_hop_heldout_fact": two["heldout_fact"]["accuracy"],
        "two_hop_heldout_subject": two["heldout_subject"]["accuracy"],
        "two_hop_composition": pooled(two, ("heldout_fact", "heldout_subject")),
        "two_hop_train": two["train"]["accuracy"],
    }


def world_record(world: World) -> dict:
    """A JSON-ready description of the world: entities and every fact with its split."""
    return {
        "seed": world.seed,
        "sizes": dataclasses.asdict(world.sizes),
        "countries": [dataclasses.asdict(c) for c in world.countries],
        "cities": [dataclasses.asdict(c) for c in world.cities],
        "people": [dataclasses.asdict(p) for p in world.people],
        "facts": [dataclasses.asdict(f) for f in world.facts],
    }


def train_model(
    out_dir: str | Path,
    seed: int = 0,
    steps: int | None = None,
    *,
    world_sizes: WorldSizes | None = None,
    corpus: CorpusConfig | None = None,
    model_spec: ModelSpec | None = None,
    train: TrainConfig | None = None,
    progress: bool = True,
) -> TrainResult:
    """Generate the world and corpus from ``seed``, train the model, evaluate, write ``out_dir``.

    ``steps`` overrides ``train.steps``. Everything is drawn from ``seed``: the same seed and
    settings on the same machine type give bit-identical files.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world_sizes = world_sizes or WorldSizes()
    corpus = corpus or CorpusConfig()
    model_spec = model_spec or ModelSpec()
    train = train or TrainConfig()
    if steps is not None:
        train = dataclasses.replace(train, steps=steps)

    world = World.generate(seed, world_sizes)
    docs = generate_corpus(world, seed, corpus)
    write_corpus(out / "corpus.txt", docs)
    (out / "world.json").write_text(json.dumps(world_record(world), indent=1))
    tokenizer = save_tokenizer(train_tokenizer(docs, world), out)

    with deterministic(train.threads):
        sequences = encode_documents(tokenizer, docs, train.max_len)
        model = build_model(model_spec, len(tokenizer), seed)
        t1 = time.perf_counter()
        losses = train_loop(model, sequences, train, seed, progress=progress)
        train_seconds = time.perf_counter() - t1
        accuracy = evaluate_world(model, tokenizer, world)
    model.save_pretrained(out, safe_serialization=True)

    settings = {
        "world": dataclasses.asdict(world_sizes),
        "corpus": dataclasses.asdict(corpus),
        "model": dataclasses.asdict(model_spec),
        "train": dataclasses.asdict(train),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    result = TrainResult(
        out_dir=str(out),
        seed=seed,
        steps=train.steps,
        train_seconds=round(train_seconds, 1),
        total_seconds=round(time.perf_counter() - t0, 1),
        n_parameters=n_parameters(model),
        vocab_size=len(tokenizer),
        n_documents=len(docs),
        final_loss=sum(losses[-50:]) / len(losses[-50:]),
        accuracy=accuracy,
        summary=_summary(accuracy),
        settings=settings,
    )
    (out / "eval.json").write_text(json.dumps(dataclasses.asdict(result), indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ct_engine.toyworld.train_model", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help=f"default {TrainConfig.steps}")
    parser.add_argument(
        "--threads",
        type=int,
        default=TrainConfig.threads,
        help="torch threads (weights are bit-identical only for the same thread count)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = train_model(
        args.out,
        args.seed,
        args.steps,
        train=dataclasses.replace(TrainConfig(), threads=args.threads),
        progress=not args.no_progress,
    )
    brief = {k: v for k, v in dataclasses.asdict(result).items() if k != "accuracy"}
    print(json.dumps(brief, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
