"""``ct materialize``: the whole asset graph for a model and a prompt set.

In the ``local`` profile the runs execute in this process; in ``team`` they are submitted to
the Dagster webserver (``$CT_DAGSTER_URL``), queued, and their steps run on the Celery
workers; the command waits for them.
"""

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
    p.add_argument(
        "--prompts-file", help="also one prompt per line of this file (blank lines skipped)"
    )
    p.add_argument(
        "--partitions-per-run",
        type=int,
        default=5,
        help="team profile: prompts per graph run (runs share the workers; default 5)",
    )
    add_config_flag(p)


def run(args: argparse.Namespace) -> int:
    try:
        config, instance = load(args)
        from ct_assets.lib.profiles import current_profile
        from ct_assets.lib.runner import materialize, materialize_on_workers

        model = args.model or config.models[0].name
        config.model(model)
        # A prompts file replaces the config's sets, unless sets are named too.
        sets = args.prompt_set or ([] if args.prompts_file else list(config.prompt_sets))
        unknown = [s for s in sets if s not in config.prompt_sets]
        if unknown:
            raise ValueError(
                f"unknown prompt sets {unknown}; the config has {list(config.prompt_sets)}"
            )
        prompts = [t for s in sets for t in config.prompt_sets[s]]
        prompts += _read_prompts(args.prompts_file) if args.prompts_file else []
        prompts += args.prompt or []
        if not prompts:
            raise ValueError("no prompts: add a prompt set to the config or pass --prompt")
        if args.partitions_per_run < 1:
            raise ValueError("--partitions-per-run must be at least 1")
        start = time.perf_counter()
        if current_profile() == "local":
            summary = materialize(config, model, prompts, instance, raise_on_error=False)
        else:
            summary = materialize_on_workers(
                config,
                model,
                prompts,
                instance,
                dagster_url=_dagster_url(),
                partitions_per_run=args.partitions_per_run,
                progress=lambda line: print(line, flush=True),
            )
    except ValueError as err:
        print(f"ct materialize: error: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    status = "done" if summary.success else "FAILED (see the Dagster UI for the failing step)"
    print(f"\n{status}: {len(summary.partition_keys)} graphs of {model} in {elapsed:.1f} s")
    print(f"lake: {config.lake}")
    if current_profile() != "local":
        return 0 if summary.success else 1
    print("\nnext:")
    print('  ct sql "SELECT * FROM graph_overview"           # query the lake')
    print('  ct sql "SELECT layer, feature, label FROM feature_cards LIMIT 20"  # what features do')
    print("  make viewer    # graphs and feature cards on http://127.0.0.1:8041")
    print("  make dagster   # Dagster UI on http://127.0.0.1:3000 (runs, assets, metadata)")
    print("  make mlflow    # MLflow UI on http://127.0.0.1:5000 (params, metrics, plots)")
    return 0 if summary.success else 1


def _read_prompts(path: str) -> list[str]:
    try:
        lines = open(path, encoding="utf-8").read().splitlines()  # noqa: SIM115
    except OSError as err:
        raise ValueError(f"cannot read the prompts file {path}: {err.strerror}") from None
    return [line.strip() for line in lines if line.strip()]


def _dagster_url() -> str:
    import os

    url = os.environ.get("CT_DAGSTER_URL")
    if not url:
        raise ValueError("set CT_DAGSTER_URL to the Dagster webserver (scripts/services.sh up)")
    return url
