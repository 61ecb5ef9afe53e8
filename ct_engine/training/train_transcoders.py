"""Train transcoders on a model's MLPs and save them in circuit-tracer's on-disk format.

Function API: :func:`train_transcoders` (collect, train, evaluate, save) returning
:class:`TrainingResult`\\ s; :func:`train_on_activations` when the activations are at hand.

Command line::

    python -m ct_engine.training.train_transcoders --model MODEL_DIR --texts TEXTS_FILE \\
        --kind plt|clt|both --out OUT_DIR --seed 0 [--features F] [--steps N] ...

With ``--kind both`` activations are collected once and ``OUT_DIR/plt`` and ``OUT_DIR/clt``
are written. Each output folder holds ``config.yaml`` and the weight files (loadable by
``ct_engine.transcoders.load_transcoders`` and circuit-tracer) plus ``training.json`` (config,
metrics, times).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from ct_engine.tiny import FAMILY_HOOKS
from ct_engine.transcoders import Transcoders, save_transcoders

from .collection import ActivationData, collect_activations
from .metrics import TrainingMetrics, evaluate_on_activations
from .trainer import TrainConfig, TrainedModule, train_module

TRAINING_FILE = "training.json"
KINDS = ("plt", "clt")


@dataclass
class TrainingResult:
    """Outcome of one training run.

    Attributes:
        kind: ``"plt"`` or ``"clt"``.
        transcoders: the trained engine transcoders (frozen, raw activation scale).
        metrics: per-layer FVU / L0 / dead fractions (see :mod:`.metrics`).
        config: the hyper-parameters used.
        hooks: ``(feature_input_hook, feature_output_hook)``.
        out_dir: where they were saved (None when not saved).
        collect_seconds: activation collection (shared when both kinds were trained).
        train_seconds, eval_seconds: this kind's training and evaluation.
        trained: the trainable module and its normalization.
    """

    kind: str
    transcoders: Transcoders
    metrics: TrainingMetrics
    config: TrainConfig
    hooks: tuple[str, str]
    out_dir: Path | None
    collect_seconds: float
    train_seconds: float
    eval_seconds: float
    trained: TrainedModule

    @property
    def total_seconds(self) -> float:
        return self.collect_seconds + self.train_seconds + self.eval_seconds

    def summary(self) -> dict:
        """JSON-ready description (config, hooks, metrics, times)."""
        return {
            "kind": self.kind,
            "config": asdict(self.config),
            "hooks": list(self.hooks),
            "metrics": self.metrics.to_dict(),
            "collect_seconds": round(self.collect_seconds, 2),
            "train_seconds": round(self.train_seconds, 2),
            "eval_seconds": round(self.eval_seconds, 2),
        }


def default_hooks(model_dir: str | Path) -> tuple[str, str]:
    """The family's hooks (:data:`ct_engine.tiny.FAMILY_HOOKS`) from ``config.json``'s
    ``model_type``; Llama's ``("hook_resid_mid", "mlp.hook_out")`` for unknown families."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return FAMILY_HOOKS.get(str(config.get("model_type", "")), FAMILY_HOOKS["llama"])


def load_hooked_model(model_dir: str | Path, hooks: tuple[str, str]):
    """A CPU :class:`ReplacementModel` whose (placeholder) transcoders define ``hooks``."""
    from ct_engine.replacement import ReplacementModel
    from ct_engine.tiny import build_random_transcoders

    config = json.loads((Path(model_dir) / "config.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        placeholder = build_random_transcoders(
            Path(tmp) / "placeholder",
            n_layers=int(config["num_hidden_layers"]),
            d_model=int(config["hidden_size"]),
            d_transcoder=1,
            feature_input_hook=hooks[0],
            feature_output_hook=hooks[1],
        )
        return ReplacementModel.from_pretrained(
            model_dir, placeholder, device="cpu", lazy_decoder=False
        )


def train_on_activations(
    data: ActivationData,
    config: TrainConfig,
    *,
    hooks: tuple[str, str],
    out_dir: str | Path | None = None,
    model_name: str | None = None,
    collect_seconds: float = 0.0,
    progress: bool = True,
) -> TrainingResult:
    """Train ``config.kind`` on collected activations, evaluate, and save to ``out_dir``."""
    trained = train_module(data, config, progress=progress)
    transcoders = trained.module.to_transcoders(
        trained.normalization.x_scale,
        trained.normalization.y_scale,
        feature_input_hook=hooks[0],
        feature_output_hook=hooks[1],
        config={"model_name": model_name} if model_name else None,
    )
    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        metrics = evaluate_on_activations(
            transcoders, data.x, data.y, data.x_holdout, data.y_holdout
        )
    finally:
        torch.set_num_threads(previous_threads)
    result = TrainingResult(
        kind=config.kind,
        transcoders=transcoders,
        metrics=metrics,
        config=config,
        hooks=hooks,
        out_dir=None,
        collect_seconds=collect_seconds,
        train_seconds=trained.train_seconds,
        eval_seconds=time.perf_counter() - start,
        trained=trained,
    )
    if out_dir is not None:
        result.out_dir = save_transcoders(transcoders, out_dir)
        (result.out_dir / TRAINING_FILE).write_text(json.dumps(result.summary(), indent=2))
    return result


def train_transcoders(
    model_dir: str | Path,
    texts: str | Path | list[str],
    *,
    kinds: tuple[str, ...] = ("plt",),
    out_dirs: dict[str, str | Path] | None = None,
    config: TrainConfig | None = None,
    configs: dict[str, TrainConfig] | None = None,
    hooks: tuple[str, str] | None = None,
    max_tokens: int | None = 200_000,
    holdout_fraction: float = 0.05,
    max_seq_len: int | None = None,
    progress: bool = True,
    model_name: str | None = None,
) -> list[TrainingResult]:
    """Collect activations of ``model_dir`` on ``texts`` once and train each of ``kinds``.

    Args:
        model_dir: a local Hugging Face model folder.
        texts: a text file (one document per line) or the documents themselves.
        kinds: any of ``"plt"``, ``"clt"``.
        out_dirs: ``{kind: folder}`` to save to (kinds not in it are not saved).
        config: hyper-parameters; its ``kind`` is replaced by each of ``kinds``. Its ``seed``
            and ``threads`` also drive the activation collection.
        configs: ``{kind: config}`` for kinds trained with their own hyper-parameters (the
            others use ``config``).
        hooks: ``(feature_input_hook, feature_output_hook)``; default by model family.
        max_tokens: cap on training positions; holdout_fraction: share of documents held out.
        model_name: the ``model_name`` written to ``config.yaml`` (default: ``model_dir``),
            e.g. a registered name such as ``toy-world``.
    """
    config = config or TrainConfig()
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    if isinstance(texts, str | Path):
        texts = Path(texts).read_text().splitlines()
    hooks = hooks or default_hooks(model_dir)
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        model = load_hooked_model(model_dir, hooks)
        data = collect_activations(
            model,
            texts,
            max_tokens=max_tokens,
            holdout_fraction=holdout_fraction,
            max_seq_len=max_seq_len,
            seed=config.seed,
        )
    finally:
        torch.set_num_threads(previous_threads)
    del model
    collect_seconds = time.perf_counter() - start
    results = []
    for kind in kinds:
        kind_config = (configs or {}).get(kind) or config
        kind_config = TrainConfig(**{**asdict(kind_config), "kind": kind})
        results.append(
            train_on_activations(
                data,
                kind_config,
                hooks=hooks,
                out_dir=(out_dirs or {}).get(kind),
                model_name=model_name or str(model_dir),
                collect_seconds=collect_seconds,
                progress=progress,
            )
        )
    return results


# ---------------------------------------------------------------------------------- command line

_FLAGS = {
    "features": "n_features",
    "steps": "steps",
    "batch_size": "batch_size",
    "lr": "lr",
    "l0_coefficient": "l0_coefficient",
    "sparsity_warmup": "sparsity_warmup",
    "lr_decay": "lr_decay",
    "preact_coefficient": "preact_coefficient",
    "threshold_init": "threshold_init",
    "init_output_fraction": "init_output_fraction",
    "bandwidth": "bandwidth",
    "threshold_lr_scale": "threshold_lr_scale",
    "threads": "threads",
}


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m ct_engine.training.train_transcoders",
        description="Train JumpReLU transcoders (PLT and/or CLT) on a model's MLPs.",
    )
    parser.add_argument("--model", required=True, help="local Hugging Face model folder")
    parser.add_argument("--texts", required=True, help="text file, one document per line")
    parser.add_argument("--kind", choices=("plt", "clt", "both"), default="plt")
    parser.add_argument(
        "--out", required=True, help="output folder (with --kind both: OUT/plt and OUT/clt)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-hook", help="feature input hook (default: by model family)")
    parser.add_argument("--output-hook", help="feature output hook (default: by model family)")
    parser.add_argument("--max-tokens", type=int, default=200_000)
    parser.add_argument("--holdout-fraction", type=float, default=0.05)
    parser.add_argument("--max-seq-len", type=int, default=None)
    parser.add_argument(
        "--model-name", help="model_name for config.yaml (default: --model), e.g. toy-world"
    )
    types = {f.name: type(getattr(defaults, f.name)) for f in fields(TrainConfig)}
    for flag, name in _FLAGS.items():
        parser.add_argument(
            f"--{flag.replace('_', '-')}",
            dest=name,
            type=types[name],
            default=getattr(defaults, name),
        )
    return parser


def main(argv: list[str] | None = None) -> list[TrainingResult]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    kinds = KINDS if args.kind == "both" else (args.kind,)
    out = Path(args.out)
    out_dirs = {k: out / k for k in kinds} if args.kind == "both" else {args.kind: out}
    hooks = None
    if args.input_hook or args.output_hook:
        default = default_hooks(args.model)
        hooks = (args.input_hook or default[0], args.output_hook or default[1])
    config = TrainConfig(seed=args.seed, **{name: getattr(args, name) for name in _FLAGS.values()})
    results = train_transcoders(
        args.model,
        args.texts,
        kinds=kinds,
        out_dirs=out_dirs,
        config=config,
        hooks=hooks,
        max_tokens=args.max_tokens,
        holdout_fraction=args.holdout_fraction,
        max_seq_len=args.max_seq_len,
        model_name=args.model_name,
    )
    print_results(results)
    return results


def print_results(results) -> None:
    """Each trained set's folder, phase times and per-layer metrics table."""
    for result in results:
        print(
            f"\n{result.kind}: {result.out_dir}  (collect {result.collect_seconds:.1f} s, "
            f"train {result.train_seconds:.1f} s, eval {result.eval_seconds:.1f} s)"
        )
        print(result.metrics.table())


if __name__ == "__main__":
    main()
