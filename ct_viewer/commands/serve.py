"""``ct serve``: the graph viewer (``ct_viewer``) over the lake, on http://127.0.0.1:8041/.

Lists the lake's attribution graphs (``graph_overview``), shows them pruned at the thresholds
the page asks for, keeps annotations in the lake's ``annotations`` table and steers features
on the graph's model (loaded on first use). ``--graph_file_dir DIR`` (repeatable) adds the
``<slug>.json`` graph documents of a folder (``ct attribute --slug --graph_file_dir``);
``--features_dir DIR`` serves circuit-tracer's feature files of DIR under ``/features/`` and
shows their feature cards for graph files (lake graphs use the lake's dashboards first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ct_lake.commands._common import add_config_flag

NAME = "serve"
HELP = "open the graph viewer on the lake (http://127.0.0.1:8041/)"
DESCRIPTION = "Serve the graph viewer over the lake's graphs (and JSON graph files)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on: 127.0.0.1 is this machine only; anything else "
        "exposes the lake's graphs, annotations and steering to the network",
    )
    p.add_argument("--port", type=int, default=8041, help="port")
    p.add_argument(
        "--graph_file_dir",
        action="append",
        default=[],
        metavar="DIR",
        help="also serve the <slug>.json graph files of DIR (repeatable)",
    )
    p.add_argument(
        "--features_dir",
        metavar="DIR",
        help="a folder of circuit-tracer feature files (index.json.gz, layer_<i>.bin; "
        "ct features build writes one): feature cards for graph files, served under /features/",
    )
    add_config_flag(p)


def run(args: argparse.Namespace) -> int:
    from ct_lake.config import load_config
    from ct_viewer.server import create_app, is_loopback, serve

    if not 0 < args.port < 65536:
        print(f"ct serve: error: bad port {args.port}", file=sys.stderr)
        return 2
    dirs = [Path(d) for d in args.graph_file_dir]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        print(f"ct serve: error: no folder {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ValueError as err:
        if args.config or not dirs:
            print(f"ct serve: error: {err}", file=sys.stderr)
            return 2
        config = None  # JSON files only
        print("ct serve: no lakehouse config: serving the graph files only", file=sys.stderr)
    try:
        app = create_app(
            lake_root=config.lake if config else None,
            config_path=config.path if config else None,
            graph_file_dirs=dirs,
            allowed_hosts=None if is_loopback(args.host) else ["*"],
            features_dir=Path(args.features_dir) if args.features_dir else None,
        )
    except ValueError as err:  # a features folder that is not one
        print(f"ct serve: error: {err}", file=sys.stderr)
        return 2
    if config is not None:
        print(f"ct serve: lake {config.lake} (config {config.path})")
    if args.features_dir:
        print(f"ct serve: feature files {args.features_dir} (under /features/)")
    try:
        serve(app, host=args.host, port=args.port)
    except KeyboardInterrupt:
        pass
    return 0
