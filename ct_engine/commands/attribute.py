"""``ct attribute``: attribute a prompt on any model and transcoder set (circuit-tracer's flag
names and defaults), save the graph and/or the viewer's JSON graph files.

``--estimate-memory`` prints the predicted peak memory and a batch size that fits instead.
The ``ct`` command adds ``--server`` (serve the graph files in the viewer afterwards) in
:mod:`ct_viewer.commands.attribute`, which extends this module.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ct_engine.commands._shared import (
    add_attribution_flags,
    add_model_flags,
    check_attribution_flags,
    check_output_file,
    check_output_folder,
    load_model_from_args,
    run_attribution,
)

NAME = "attribute"
HELP = "attribute a prompt and save the graph"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--prompt", required=True)
    add_model_flags(parser)
    parser.add_argument(
        "-o",
        "--graph_output_path",
        help="save the graph; the suffix picks the format: .pt (circuit-tracer's) or "
        ".safetensors (pickle-free)",
    )
    parser.add_argument("--offload", choices=["cpu", "disk"], default=None)
    parser.add_argument("--slug", help="graph name for the viewer JSON files")
    parser.add_argument("--graph_file_dir", help="where to write the viewer JSON files")
    parser.add_argument(
        "--target",
        action="append",
        metavar="TOKEN",
        help="attribute this single-token string (repeat for several) instead of salient logits",
    )
    parser.add_argument(
        "--target-diff",
        nargs=2,
        metavar=("TOKEN_A", "TOKEN_B"),
        help="attribute the logit difference TOKEN_A - TOKEN_B",
    )
    parser.add_argument(
        "--features_dir",
        help="circuit-tracer feature files (index.json.gz, layer_<i>.bin; `ct features build` "
        "writes them): with --server, the viewer shows their feature cards",
    )
    parser.add_argument(
        "--estimate-memory",
        action="store_true",
        help="print the predicted peak memory and a batch size that fits, then exit",
    )
    add_attribution_flags(parser, batch_size=256)


def run(args: argparse.Namespace) -> int:
    if args.estimate_memory:
        return _estimate_memory(args)
    check_arguments(args)
    graph, model = run_attribution(args, lambda: load_model_from_args(args))
    if args.graph_output_path:
        out = Path(args.graph_output_path).expanduser()
        graph.to_pt(out) if out.suffix == ".pt" else graph.save(out)
        print(f"graph saved to {out}")
    if args.slug and args.graph_file_dir:
        from ct_engine.graph.files import create_graph_files

        path = create_graph_files(
            graph,
            args.slug,
            args.graph_file_dir,
            scan=graph.scan if graph.scan is not None else args.transcoder_set,
            node_threshold=args.node_threshold,
            edge_threshold=args.edge_threshold,
            tokenizer=model.tokenizer,
        )
        print(f"graph files written to {path} and {path.parent / 'graph-metadata.json'}")
    if args.features_dir and not getattr(args, "server", False):
        print(
            "ct attribute: --features_dir is read by the viewer only: add --server to see "
            "the feature cards (or `ct serve --features_dir DIR` later)",
            file=sys.stderr,
        )
    return 0


def check_arguments(args: argparse.Namespace) -> None:
    """Everything that can be checked before the model loads, so that a mistake costs no
    attribution: circuit-tracer's rules (somewhere to put the graph, a slug with its folder),
    the numbers, the targets, and that every output can be written. Raises ``ValueError``."""
    from ct_engine.options import check_slug

    if bool(args.slug) != bool(args.graph_file_dir):
        print("ct attribute: warning: --slug and --graph_file_dir go together", file=sys.stderr)
    if not (args.slug and args.graph_file_dir) and not args.graph_output_path:
        raise ValueError("give -o/--graph_output_path, or --slug with --graph_file_dir")
    check_attribution_flags(args)
    if args.target and args.target_diff:
        raise ValueError("give either --target or --target-diff, not both")
    if args.graph_output_path:
        hint = " (the viewer's JSON files: --slug with --graph_file_dir)"
        check_output_file(args.graph_output_path, "-o", GRAPH_SUFFIXES, hint)
    if args.slug:
        check_slug(args.slug)
    if args.graph_file_dir:
        folder = check_output_folder(args.graph_file_dir, "--graph_file_dir")
        if args.slug and (folder / f"{args.slug}.json").is_dir():
            raise ValueError(
                f"--graph_file_dir {args.graph_file_dir}: {args.slug}.json is a folder"
            )
        if folder.is_dir():
            from ct_engine.graph.files import read_graph_index

            read_graph_index(folder)  # the index the new graph joins must be readable


# The -o formats, by suffix (a viewer's JSON comes from --slug with --graph_file_dir).
GRAPH_SUFFIXES = (".pt", ".safetensors")


def _estimate_memory(args: argparse.Namespace) -> int:
    from ct_engine.attribution.memory import memory_report

    model = load_model_from_args(args)
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
    return 0
