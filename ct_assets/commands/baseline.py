"""``ct baseline update|check [--model M]``: bless or check the golden set's baselines.

``update`` reads each golden cell's graph from the lake and writes its baseline file
(``ct_assets/golden/baselines/<model>/<prompt key>.json``), printing what changed; it fails,
naming them, if any cell has not been materialized. ``check`` prints the drift report of
every cell against its baseline without writing anything; exit status 1 if any cell is an
ERROR or has not been materialized. Neither imports Dagster.
"""

from __future__ import annotations

import argparse
import sys

from ct_lake.commands._common import add_config_flag

NAME = "baseline"
HELP = "golden-set regression baselines (update or check)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True)
    update = actions.add_parser(
        "update", help="re-baseline every golden cell from the lake (on purpose: commit them)"
    )
    check = actions.add_parser(
        "check", help="compare every golden cell with its baseline (exit 1 on ERROR)"
    )
    for action in (update, check):
        action.add_argument("--model", help="only this model's cells")
        add_config_flag(action)


def run(args: argparse.Namespace) -> int:
    from ct_lake.config import load_config
    from ct_lake.lake import Lake

    try:
        config = load_config(args.config)
        if args.model:
            config.model(args.model)  # a model the config does not declare has no cells
        from ct_assets.lib.golden import load_golden

        cells = load_golden(config, args.model)
    except ValueError as err:
        print(f"ct baseline: error: {err}", file=sys.stderr)
        return 2
    if not cells:
        where = f" for model {args.model}" if args.model else ""
        print(f"ct baseline: no golden cells{where} (golden set: {config.golden})")
        return 0
    lake = Lake(config.lake)
    if args.action == "update":
        return _update(config, lake, cells)
    return _check(config, lake, cells)


def _missing(lake, cells) -> list[str]:
    from ct_assets.lib.golden import missing_tables

    return [c.partition_key for c in cells if missing_tables(lake, c.model, c.prompt_key)]


def _materialize_hint(config, cells) -> str:
    lines = []
    for model in dict.fromkeys(c.model for c in cells):
        prompts = " ".join(f'--prompt "{c.prompt}"' for c in cells if c.model == model)
        lines.append(f"  ct materialize --config {config.path} --model {model} {prompts}")
    return "\n".join(lines)


def _update(config, lake, cells) -> int:
    from ct_assets.lib.golden import (
        SCORES,
        baseline_path,
        compare,
        read_baseline,
        snapshot_from_lake,
        stamp,
        write_baseline,
    )

    missing = _missing(lake, cells)
    if missing:
        todo = [c for c in cells if c.partition_key in missing]
        print(
            f"ct baseline: error: {len(missing)} golden partitions have not been materialized "
            f"in the lake {lake.uri}: {', '.join(missing)}\nmaterialize them first:\n"
            + _materialize_hint(config, todo),
            file=sys.stderr,
        )
        return 2
    for cell in cells:
        path = baseline_path(config, cell.model, cell.prompt_key)
        old = read_baseline(path)
        new = stamp(snapshot_from_lake(lake, cell.model, cell.prompt_key, text=cell.prompt))
        write_baseline(path, new)
        print(f"{cell.partition_key}  {cell.prompt!r}")
        if old is None:
            print(f"  new baseline: {path}")
            scores = ", ".join(f"{k} {new['scores'][k]:.4f}" for k in SCORES)
            top = new["top_target"]
            print(f"  top target {top['token']!r} p={top['probability']:.4f}; {scores}")
            continue
        report = compare(old, new)
        print(f"  updated {path}\n  vs old baseline: {report.severity}: {report.summary()}")
        for k in SCORES:
            before, after = old["scores"].get(k), new["scores"].get(k)
            if before != after:
                print(f"    {k}: {before} -> {after}")
        before, after = old["top_target"], new["top_target"]
        if before != after:
            print(
                f"    top target: {before['token']!r} p={before['probability']} -> "
                f"{after['token']!r} p={after['probability']}"
            )
    print("\nreview and commit ct_assets/golden/baselines/ (git diff shows every change)")
    return 0


def _check(config, lake, cells) -> int:
    from ct_assets.lib.golden import (
        ERROR,
        baseline_path,
        compare,
        read_baseline,
        snapshot_from_lake,
    )

    missing = set(_missing(lake, cells))
    worst = 0
    for cell in cells:
        key = cell.partition_key
        path = baseline_path(config, cell.model, cell.prompt_key)
        baseline = read_baseline(path)
        if key in missing:
            print(f"{key}  MISSING  not materialized in the lake {lake.uri}")
            worst = 1
            continue
        if baseline is None:
            print(f"{key}  NO BASELINE  create it with `ct baseline update --model {cell.model}`")
            continue
        current = snapshot_from_lake(lake, cell.model, cell.prompt_key, text=cell.prompt)
        report = compare(baseline, current)
        print(f"{key}  {report.severity.upper()}  {report.summary()}")
        for reason in report.reasons:
            print(f"    {reason}")
        if report.severity == ERROR:
            worst = 1
    if missing:
        todo = [c for c in cells if c.partition_key in missing]
        print("\nmaterialize the missing partitions with:\n" + _materialize_hint(config, todo))
    return worst
