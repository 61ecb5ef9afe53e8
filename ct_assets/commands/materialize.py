"""``ct materialize``: the whole asset graph for a model and a prompt set, in this process."""

from __future__ import annotations

import argparse
import sys
import time

from ct_assets.commands._common import add_config_flag, load

NAME = "materialize"
HELP = "materialize every asset for a model and its prompts (runs show in the Dagster UI)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="a model of the config (default: the first)")
    p.add_argument(
        "--prompt-set", action="append", help="a prompt set of the config (default: all)"
    )
    p.add_argument("--prompt", action="append", help="also this prompt text (repeatable)")
    add_config_flag(p)


def run(args: argparse.Namespace) -> int:
    try:
        config, instance = load(args)
        from ct_assets.lib.runner import materialize

        model = args.model or config.models[0].name
        config.model(model)
        sets = args.prompt_set or list(config.prompt_sets)
        unknown = [s for s in sets if s not in config.prompt_sets]
        if unknown:
            raise ValueError(
                f"unknown prompt sets {unknown}; the config has {list(config.prompt_sets)}"
            )
        prompts = [t for s in sets for t in config.prompt_sets[s]] + (args.prompt or [])
        if not prompts:
            raise ValueError("no prompts: add a prompt set to the config or pass --prompt")
        start = time.perf_counter()
        summary = materialize(config, model, prompts, instance, raise_on_error=False)
    except ValueError as err:
        print(f"ct materialize: error: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    status = "done" if summary.success else "FAILED (see the Dagster UI for the failing step)"
    print(f"\n{status}: {len(summary.partition_keys)} graphs of {model} in {elapsed:.1f} s")
    print(f"lake: {config.lake}")
    print("\nnext:")
    print('  ct sql "SELECT * FROM graph_overview"           # query the lake')
    print("  make dagster   # Dagster UI on http://127.0.0.1:3000 (runs, assets, metadata)")
    print("  make mlflow    # MLflow UI on http://127.0.0.1:5000 (params, metrics, plots)")
    return 0 if summary.success else 1
