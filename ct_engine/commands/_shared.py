"""What the engine's model commands share: their flags, the model load and one attribution."""

from __future__ import annotations

import argparse
import time

from ct_engine.options import BACKENDS, DTYPE_NAMES


def add_attribution_flags(p: argparse.ArgumentParser, *, batch_size: int) -> None:
    p.add_argument(
        "--max_n_logits", type=int, default=10, help="most logit targets to attribute from"
    )
    p.add_argument(
        "--desired_logit_prob",
        type=float,
        default=0.95,
        help="stop adding logit targets once their probabilities sum to this",
    )
    p.add_argument("--batch_size", type=int, default=batch_size, help="backward passes per batch")
    p.add_argument(
        "--max_feature_nodes", type=int, default=7500, help="most feature nodes in the graph"
    )
    p.add_argument(
        "--node_threshold",
        type=float,
        default=0.8,
        help="pruning: the share of total node influence the kept nodes carry",
    )
    p.add_argument(
        "--edge_threshold",
        type=float,
        default=0.98,
        help="pruning: the share of total edge influence the kept edges carry",
    )
    p.add_argument("--verbose", action="store_true", help="progress bar and phase timings")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--transcoder_set", required=True)
    p.add_argument("-m", "--model", help="default: the transcoder config's model_name")
    p.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="float32", help="model dtype")
    p.add_argument("--backend", choices=BACKENDS, default="transformerlens", help="model backend")
    add_lazy_flags(p)


def add_lazy_flags(p: argparse.ArgumentParser) -> None:
    """``--lazy-encoder`` (off) and ``--lazy-decoder`` (on), circuit-tracer's defaults, each
    with its ``--no-`` form and underscore spellings."""
    add_switch(
        p,
        "lazy-encoder",
        default=False,
        help="read each encoder matrix from disk when used (less memory, slower)",
    )
    add_switch(
        p,
        "lazy-decoder",
        default=True,
        help="read decoder rows from disk as attribution needs them",
    )


def add_switch(p: argparse.ArgumentParser, name: str, *, default: bool, help: str) -> None:
    """An on/off flag: ``--NAME`` and ``--no-NAME``, each also spelt with underscores
    (``--lazy_decoder``, ``--no_lazy_decoder``), into ``args.NAME`` (underscored)."""
    under = name.replace("-", "_")
    names = [f"--{name}", f"--{under}", f"--no-{name}", f"--no_{under}"]
    turn = f"--no-{name}" if default else f"--{name}"
    p.add_argument(
        *dict.fromkeys(names),
        dest=under,
        action=_Switch,
        default=default,
        help=f"{help} (default: {'on' if default else 'off'}; {turn} turns it "
        f"{'off' if default else 'on'})",
    )


class _Switch(argparse.Action):
    """Sets ``True`` for the option strings without ``--no``, ``False`` for the others (as
    :class:`argparse.BooleanOptionalAction`, which does not take the underscore forms)."""

    def __init__(self, option_strings, dest, default=None, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, not option_string.startswith("--no"))

    def format_usage(self) -> str:
        return f"{self.option_strings[0]} | {self.option_strings[2]}"


def load_model(model_name: str, transcoders: str, dtype: str = "float32", **load):
    import torch

    from ct_engine.replacement import ReplacementModel

    return ReplacementModel.from_pretrained(
        model_name, transcoders, dtype=getattr(torch, dtype), **load
    )


def load_model_from_args(args: argparse.Namespace):
    """The model and transcoders named by :func:`add_model_flags`."""
    return load_model(
        args.model or _model_from_config(args.transcoder_set),
        args.transcoder_set,
        dtype=DTYPE_NAMES[args.dtype],
        backend=args.backend,
        lazy_encoder=args.lazy_encoder,
        lazy_decoder=args.lazy_decoder,
    )


def _model_from_config(transcoder_set: str) -> str:
    from ct_engine.transcoders import load_transcoders

    name = load_transcoders(transcoder_set, lazy_encoder=True).config.get("model_name")
    if not name:
        raise SystemExit(
            "ct attribute: --model is required because the transcoder config has no model_name"
        )
    return name


def run_attribution(args: argparse.Namespace, model):
    """Attribute ``args.prompt`` on ``model`` (or on ``model()``, timed as the load), print the
    graph's summary; ``(graph, model)``."""
    from ct_engine.attribution import attribute
    from ct_engine.summary import graph_summary

    start = time.perf_counter()
    model = model() if callable(model) else model
    load_s = time.perf_counter() - start
    graph = attribute(
        args.prompt,
        model,
        attribution_targets=_targets(args, model),
        offload=getattr(args, "offload", None),
        max_n_logits=args.max_n_logits,
        desired_logit_prob=args.desired_logit_prob,
        batch_size=args.batch_size,
        max_feature_nodes=args.max_feature_nodes,
        verbose=args.verbose,
    )
    graph.timings = {"load_model": load_s, **graph.timings}
    print(
        graph_summary(
            graph,
            model.tokenizer,
            node_threshold=args.node_threshold,
            edge_threshold=args.edge_threshold,
        )
    )
    return graph, model


def _targets(args: argparse.Namespace, model):
    """``--target`` strings, or a ``--target-diff`` custom direction, or None (salient)."""
    from ct_engine.attribution import CustomTarget
    from ct_engine.attribution.targets import single_token_id

    strings = getattr(args, "target", None)
    diff = getattr(args, "target_diff", None)
    if strings and diff:
        raise ValueError("give either --target or --target-diff, not both")
    if diff:
        a, b = (single_token_id(word, model.tokenizer) for word in diff)
        unembed = model.impl.unembedding
        return [CustomTarget(f"{diff[0]} - {diff[1]}", 1.0, unembed[:, a] - unembed[:, b])]
    return strings or None
