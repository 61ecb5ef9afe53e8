"""``ct start-server``: circuit-tracer's command for serving JSON graph files, as an alias of
``ct serve --graph_file_dir DIR [--features_dir DIR] [--port PORT]`` on this machine only.

Like ``ct serve``, it also lists the graphs of the lakehouse config in effect (``$CT_CONFIG``,
else ``./ct_lakehouse.yaml``, else the packaged default, whose lake is ``./.ct-lake``), where
annotations of the files' graphs are kept.
"""

from __future__ import annotations

import argparse

from ct_viewer.commands import serve

NAME = "start-server"
HELP = "serve a folder of JSON graph files in the viewer (circuit-tracer's start-server)"
DESCRIPTION = (
    "Serve the <slug>.json graph files of --graph_file_dir (written by ct attribute --slug "
    "--graph_file_dir) on http://127.0.0.1:PORT/; the same as ct serve --graph_file_dir DIR."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--graph_file_dir", required=True, metavar="DIR", help="the folder of graph files"
    )
    p.add_argument(
        "--features_dir",
        metavar="DIR",
        help="a folder of circuit-tracer feature files (index.json.gz, layer_<i>.bin): "
        "feature cards, served under /features/",
    )
    p.add_argument("--port", type=int, default=8041, help="port")


def run(args: argparse.Namespace) -> int:
    return serve.run(
        argparse.Namespace(
            host="127.0.0.1",
            port=args.port,
            graph_file_dir=[args.graph_file_dir],
            features_dir=args.features_dir,
            config=None,
        )
    )
