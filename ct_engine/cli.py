"""The ``ct`` command line.

Subcommands:

* ``ct demo``: attribute a two-hop prompt on the embedded toy-world model and its trained
  transcoders (offline), print the graph's summary, save it.
* ``ct attribute``: attribute a prompt on any model and transcoder set (circuit-tracer's
  flag names and defaults).
* ``ct eval-transcoders``: reconstruction, sparsity and fidelity metrics of a transcoder set
  (:mod:`ct_engine.metrics.cli`).
* ``ct intervene``: set features to values (``layer,pos,feature=value``) and print how the
  next-token distribution moves; ``--generate N`` continues the text under the intervention.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ct_engine.replacement.model import BACKENDS, DTYPE_NAMES

# A two-hop question about the embedded toy world: Mosho lives in Soubathia, capital Ludus.
DEMO_PROMPT = "The capital of the country where Mosho lives is"


def _add_attribution_flags(p: argparse.ArgumentParser, *, batch_size: int) -> None:
    p.add_argument("--max_n_logits", type=int, default=10)
    p.add_argument("--desired_logit_prob", type=float, default=0.95)
    p.add_argument("--batch_size", type=int, default=batch_size)
    p.add_argument("--max_feature_nodes", type=int, default=7500)
    p.add_argument("--node_threshold", type=float, default=0.8)
    p.add_argument("--edge_threshold", type=float, default=0.98)
    p.add_argument("--verbose", action="store_true", help="progress bar and phase timings")


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--transcoder_set", required=True)
    p.add_argument("-m", "--model", help="default: the transcoder config's model_name")
    p.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="float32")
    p.add_argument("--backend", choices=BACKENDS, default="transformerlens")
    p.add_argument("--lazy-encoder", action="store_true")
    p.add_argument("--no-lazy-decoder", dest="lazy_decoder", action="store_false")


def build_parser(extensions: Sequence = ()) -> argparse.ArgumentParser:
    """The ``ct`` parser. ``extensions``: modules with ``COMMAND``, ``add_parser(subparsers)``
    and ``run(args) -> int`` that add subcommands (the lakehouse adds its own this way)."""
    parser = argparse.ArgumentParser(
        prog="ct",
        description="Circuit tracing: attribution graphs over transcoders.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="attribute a prompt on the embedded default model and print a summary",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument("--workdir", default=".ct-cache/demo", help="where the graph is saved")
    demo.add_argument("-p", "--prompt", default=DEMO_PROMPT)
    demo.add_argument(
        "--transcoders", choices=["plt", "clt"], default="plt", help="toy-world-plt or -clt"
    )
    _add_attribution_flags(demo, batch_size=256)

    attr = sub.add_parser(
        "attribute",
        help="attribute a prompt and save the graph",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    attr.add_argument("-p", "--prompt", required=True)
    _add_model_flags(attr)
    attr.add_argument("-o", "--graph_output_path", help="save the graph (.pt or .safetensors)")
    attr.add_argument("--offload", choices=["cpu", "disk"], default=None)
    attr.add_argument("--slug", help="graph name for the viewer JSON files")
    attr.add_argument("--graph_file_dir", help="where to write the viewer JSON files")
    attr.add_argument(
        "--target",
        action="append",
        metavar="TOKEN",
        help="attribute this single-token string (repeat for several) instead of salient logits",
    )
    attr.add_argument(
        "--target-diff",
        nargs=2,
        metavar=("TOKEN_A", "TOKEN_B"),
        help="attribute the logit difference TOKEN_A - TOKEN_B",
    )
    attr.add_argument(
        "--server",
        action="store_true",
        help="then serve the graph in the viewer on 127.0.0.1:--port (with $CT_CONFIG's lake)",
    )
    attr.add_argument("--port", type=int, default=8041)
    attr.add_argument(
        "--features_dir", help="accepted for circuit-tracer compatibility; not used (yet)"
    )
    attr.add_argument(
        "--estimate-memory",
        action="store_true",
        help="print the predicted peak memory and a batch size that fits, then exit",
    )
    _add_attribution_flags(attr, batch_size=256)

    inter = sub.add_parser(
        "intervene",
        help="set features to values and show how the next-token distribution moves",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    inter.add_argument("-p", "--prompt", required=True)
    _add_model_flags(inter)
    inter.add_argument(
        "interventions",
        nargs="+",
        metavar="LAYER,POS,FEATURE=VALUE",
        help="set a feature's activation; POS may be a range a:b or an open-ended a: "
        "(follows --generate); VALUE may be *c for c times its clean activation",
    )
    inter.add_argument(
        "--constrained",
        action="store_true",
        help="direct effects only: freeze every layer's MLP output and norm (constrained_layers "
        "= all layers)",
    )
    inter.add_argument("--no-freeze-attention", dest="freeze_attention", action="store_false")
    inter.add_argument("--top", type=int, default=10, help="tokens to show")
    inter.add_argument("--generate", type=int, metavar="N", help="continue the text N tokens")

    for extension in (_metrics_cli(), *extensions):
        extension.add_parser(sub)
    return parser


def _metrics_cli():
    from ct_engine.metrics import cli

    return cli


def _load_model(model_name: str, transcoders: str, dtype: str = "float32", **load):
    import torch

    from ct_engine.replacement import ReplacementModel

    return ReplacementModel.from_pretrained(
        model_name, transcoders, dtype=getattr(torch, dtype), **load
    )


def _load_model_from_args(args):
    """The model and transcoders named by :func:`_add_model_flags`."""
    return _load_model(
        args.model or _model_from_config(args.transcoder_set),
        args.transcoder_set,
        dtype=DTYPE_NAMES[args.dtype],
        backend=args.backend,
        lazy_encoder=args.lazy_encoder,
        lazy_decoder=args.lazy_decoder,
    )


def _run_attribution(args, model):
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


def _targets(args, model):
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


def _intervene(args) -> None:
    """``ct intervene``: run the interventions, print top-logit changes (and continuations)."""
    from ct_engine.interventions.report import format_logit_changes, top_logit_changes
    from ct_engine.interventions.spec import parse_intervention

    items = [parse_intervention(text) for text in args.interventions]
    model = _load_model_from_args(args)
    tokens = model.ensure_tokenized(args.prompt)
    clean_logits, clean_acts = model.get_activations(tokens)
    interventions = [item.resolve(clean_acts) for item in items]
    constrained = range(model.n_layers) if args.constrained else None
    logits, _ = model.feature_intervention(
        tokens,
        interventions,
        constrained_layers=constrained,
        freeze_attention=args.freeze_attention,
        return_activations=False,
    )
    words = [model.tokenizer.decode([int(t)]) for t in tokens]
    print(f"prompt: {len(tokens)} tokens: {' | '.join(repr(w) for w in words)}")
    for layer, pos, feat, value in interventions:
        where = pos if isinstance(pos, int) else f"{pos.start or 0}:{pos.stop or ''}"
        before = clean_acts[layer, pos, feat]
        print(
            f"  layer {layer}, pos {where}, feature {feat}: clean {_values(before)} -> "
            f"{_values(value)}"
        )
    mode = "constrained (direct effects)" if args.constrained else "full forward"
    frozen = ", attention frozen" if args.freeze_attention else ""
    print(f"\nnext-token distribution after {words[-1]!r} ({mode}{frozen}):")
    print(
        format_logit_changes(
            top_logit_changes(clean_logits[0, -1], logits[0, -1], model.tokenizer, args.top)
        )
    )
    if args.generate:
        kwargs = dict(max_new_tokens=args.generate, return_activations=False)
        clean_text, _, _ = model.feature_intervention_generate(tokens, [], **kwargs)
        text, _, _ = model.feature_intervention_generate(
            tokens,
            interventions,
            constrained_layers=constrained,
            freeze_attention=args.freeze_attention,
            **kwargs,
        )
        print(f"\nclean:      {clean_text}\nintervened: {text}")


def _values(value) -> str:
    import torch

    if isinstance(value, torch.Tensor) and value.numel() > 1:
        shown = ", ".join(_values(v) for v in value.flatten()[:6])
        return f"[{shown}{', ...' if value.numel() > 6 else ''}]"
    return f"{float(value) + 0.0:.3f}"  # + 0.0 prints -0.0 as 0.000


def _model_from_config(transcoder_set: str) -> str:
    from ct_engine.transcoders import load_transcoders

    name = load_transcoders(transcoder_set, lazy_encoder=True).config.get("model_name")
    if not name:
        raise SystemExit(
            "ct attribute: --model is required because the transcoder config has no model_name"
        )
    return name


def _check_outputs(args) -> None:
    """circuit-tracer's rules: somewhere to put the graph, and a slug with its folder."""
    if bool(args.slug) != bool(args.graph_file_dir):
        print("ct attribute: warning: --slug and --graph_file_dir go together", file=sys.stderr)
    if args.server and not (args.slug and args.graph_file_dir):
        raise ValueError("--server needs --slug and --graph_file_dir")
    if not (args.slug and args.graph_file_dir) and not args.graph_output_path:
        raise ValueError("give -o/--graph_output_path, or --slug with --graph_file_dir")


def _viewer_app(graph_file_dir: str):
    """The viewer over ``graph_file_dir`` plus the lake of ``$CT_CONFIG`` when it names a
    config file (its graphs and annotations)."""
    import os

    from ct_viewer.server import create_app

    config = os.environ.get("CT_CONFIG")
    if config and Path(config).is_file():
        from ct_lake.config import load_config

        loaded = load_config(config)
        print(f"ct attribute: the viewer also shows the lake {loaded.lake} ($CT_CONFIG)")
        return create_app(
            lake_root=loaded.lake, config_path=loaded.path, graph_file_dirs=[Path(graph_file_dir)]
        )
    return create_app(lake_root=None, graph_file_dirs=[Path(graph_file_dir)])


def _serve_viewer(app, port: int) -> None:
    """Run the viewer until interrupted (blocking; the tests replace this function)."""
    from ct_viewer.server import serve

    serve(app, port=port)


def _serve_graph_files(args) -> int:
    try:
        app = _viewer_app(args.graph_file_dir)
    except ImportError as err:
        print(f"ct attribute: --server: the viewer is not installed ({err})", file=sys.stderr)
        return 2
    print(f"ct attribute: serving the graph as file__{args.slug} on port {args.port}")
    try:
        _serve_viewer(app, args.port)
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None, extensions: Sequence = ()) -> int:
    args = build_parser(extensions).parse_args(argv)
    for extension in (_metrics_cli(), *extensions):
        if args.command == extension.COMMAND:
            return extension.run(args)
    try:
        if args.command == "demo":
            workdir = Path(args.workdir)
            transcoders = f"toy-world-{args.transcoders}"
            graph, _ = _run_attribution(args, lambda: _load_model("toy-world", transcoders))
            workdir.mkdir(parents=True, exist_ok=True)
            out = workdir / "graph.safetensors"
            graph.save(out)
            print(f"graph saved to {out}")
        elif args.command == "attribute" and args.estimate_memory:
            from ct_engine.attribution.memory import memory_report

            model = _load_model_from_args(args)
            print(
                memory_report(
                    model,
                    args.prompt,
                    batch_size=args.batch_size,
                    max_feature_nodes=args.max_feature_nodes,
                    offload=args.offload,
                    n_targets=args.max_n_logits,
                )
            )
        elif args.command == "attribute":
            _check_outputs(args)
            graph, model = _run_attribution(args, lambda: _load_model_from_args(args))
            if args.graph_output_path:
                out = Path(args.graph_output_path)
                graph.to_pt(out) if out.suffix == ".pt" else graph.save(out)
                print(f"graph saved to {out}")
            if args.slug and args.graph_file_dir:
                from ct_engine.graph.files import create_graph_files

                path = create_graph_files(
                    graph,
                    args.slug,
                    args.graph_file_dir,
                    args.node_threshold,
                    args.edge_threshold,
                    tokenizer=model.tokenizer,
                    scan=graph.scan if graph.scan is not None else args.transcoder_set,
                )
                print(f"graph files written to {path} and {path.parent / 'graph-metadata.json'}")
            if args.features_dir:
                print(
                    "ct attribute: --features_dir is not used: the ct-lakehouse viewer has no "
                    "feature-visualisation files yet",
                    file=sys.stderr,
                )
            if args.server:
                return _serve_graph_files(args)
        elif args.command == "intervene":
            _intervene(args)
    except ValueError as err:  # bad input: a clear message, no traceback
        print(f"ct {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
