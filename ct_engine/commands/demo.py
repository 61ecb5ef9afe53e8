"""``ct demo``: attribute a two-hop prompt on the embedded toy-world model and its trained
transcoders (offline), print the graph's summary and save it."""

from __future__ import annotations

import argparse

from ct_engine.commands._shared import (
    add_attribution_flags,
    check_attribution_flags,
    check_output_folder,
    load_model,
    run_attribution,
)
from ct_engine.presets import TOY_WORLD_TRANSCODERS

NAME = "demo"
HELP = "attribute a prompt on the embedded default model and print a summary"

# A two-hop question about the embedded toy world: Mosho lives in Soubathia, capital Ludus.
DEMO_PROMPT = "The capital of the country where Mosho lives is"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default=".ct-cache/demo", help="where the graph is saved")
    parser.add_argument("-p", "--prompt", default=DEMO_PROMPT, help="the prompt to attribute")
    parser.add_argument(
        "--transcoders",
        choices=["plt", "clt"],
        default=TOY_WORLD_TRANSCODERS.removeprefix("toy-world-"),
        help=f"toy-world-plt or -clt (default: {TOY_WORLD_TRANSCODERS})",
    )
    add_attribution_flags(parser, batch_size=256)


def run(args: argparse.Namespace) -> int:
    check_attribution_flags(args)  # before the model loads, as every output below
    workdir = check_output_folder(args.workdir, "--workdir")
    if (workdir / "graph.safetensors").is_dir():
        raise ValueError(f"--workdir {args.workdir}: graph.safetensors is a folder")
    transcoders = f"toy-world-{args.transcoders}"
    graph, _ = run_attribution(args, lambda: load_model("toy-world", transcoders))
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "graph.safetensors"
    graph.save(out)
    print(f"graph saved to {out}")
    return 0
