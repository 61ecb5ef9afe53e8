"""The ``ct`` command line.

Subcommands:

* ``ct demo``: the main job on the embedded default model: build a small model and its
  transcoders (once), compute an attribution graph, print its summary, save it.
* ``ct attribute``: attribute a prompt on any model and transcoder set (circuit-tracer's
  flag names and defaults).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}

DEMO_PROMPT = "the capital of the country where Mira lives is"


def _add_attribution_flags(p: argparse.ArgumentParser, *, batch_size: int) -> None:
    p.add_argument("--max_n_logits", type=int, default=10)
    p.add_argument("--desired_logit_prob", type=float, default=0.95)
    p.add_argument("--batch_size", type=int, default=batch_size)
    p.add_argument("--max_feature_nodes", type=int, default=7500)
    p.add_argument("--node_threshold", type=float, default=0.8)
    p.add_argument("--edge_threshold", type=float, default=0.98)
    p.add_argument("--verbose", action="store_true", help="progress bar and phase timings")


def build_parser() -> argparse.ArgumentParser:
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
    demo.add_argument("--workdir", default=".ct-cache/demo", help="where the model is built")
    demo.add_argument("-p", "--prompt", default=DEMO_PROMPT)
    demo.add_argument("--transcoders", choices=["plt", "clt"], default="plt")
    _add_attribution_flags(demo, batch_size=256)

    attr = sub.add_parser(
        "attribute",
        help="attribute a prompt and save the graph",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    attr.add_argument("-p", "--prompt", required=True)
    attr.add_argument("-t", "--transcoder_set", required=True)
    attr.add_argument("-m", "--model", help="default: the transcoder config's model_name")
    attr.add_argument("-o", "--graph_output_path", help="save the graph (.pt or .safetensors)")
    attr.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    attr.add_argument("--lazy-encoder", action="store_true")
    attr.add_argument("--no-lazy-decoder", dest="lazy_decoder", action="store_false")
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
    attr.add_argument("--server", action="store_true", help="serve the graph (viewer: not yet)")
    attr.add_argument("--port", type=int, default=8041)
    _add_attribution_flags(attr, batch_size=256)
    return parser


def _demo_dirs(workdir: Path, transcoders: str) -> tuple[Path, Path]:
    from ct_engine.tiny import (
        FAMILY_HOOKS,
        TinyModelSpec,
        build_random_transcoders,
        build_tiny_model,
    )

    spec = TinyModelSpec(family="llama", n_layers=4, d_model=64, n_heads=4, n_kv_heads=2, d_mlp=256)
    model_dir = workdir / "model"
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir, spec)
    tc_dir = workdir / f"transcoders-{transcoders}"
    if not (tc_dir / "config.yaml").exists():
        hooks = FAMILY_HOOKS[spec.family]
        build_random_transcoders(
            tc_dir,
            n_layers=spec.n_layers,
            d_model=spec.d_model,
            d_transcoder=512,
            kind=transcoders,
            activation="jump_relu",
            feature_input_hook=hooks[0],
            feature_output_hook=hooks[1],
            threshold_scale=2.0,
            model_name=str(model_dir),
        )
    return model_dir, tc_dir


def _run_attribution(args, model_name: str, transcoders: str, dtype: str = "float32", **load):
    import torch

    from ct_engine.attribution import attribute
    from ct_engine.replacement import ReplacementModel
    from ct_engine.summary import graph_summary

    start = time.perf_counter()
    model = ReplacementModel.from_pretrained(
        model_name, transcoders, dtype=getattr(torch, dtype), **load
    )
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            workdir = Path(args.workdir)
            model_dir, tc_dir = _demo_dirs(workdir, args.transcoders)
            graph, _ = _run_attribution(args, str(model_dir), str(tc_dir))
            out = workdir / "graph.safetensors"
            graph.save(out)
            print(f"graph saved to {out}")
        elif args.command == "attribute":
            _check_outputs(args)
            model_name = args.model or _model_from_config(args.transcoder_set)
            graph, model = _run_attribution(
                args,
                model_name,
                args.transcoder_set,
                dtype=DTYPES[args.dtype],
                lazy_encoder=args.lazy_encoder,
                lazy_decoder=args.lazy_decoder,
            )
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
            if args.server:
                print(
                    "ct attribute: --server: the graph viewer is not part of ct-lakehouse yet; "
                    f"the files above are ready for it (port {args.port} when it lands)",
                    file=sys.stderr,
                )
    except ValueError as err:  # bad input: a clear message, no traceback
        print(f"ct {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
