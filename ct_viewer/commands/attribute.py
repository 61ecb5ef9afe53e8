"""``ct attribute``: the engine's command (:mod:`ct_engine.commands.attribute`) plus
``--server``, which serves the graph files it wrote in the viewer afterwards (on
127.0.0.1:``--port``, with the lake of ``$CT_CONFIG`` when it names a config file) and, with
``--features_dir DIR``, the feature cards of DIR's circuit-tracer feature files (served under
``/features/`` too, as circuit-tracer's own server does)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ct_engine.commands import attribute as engine_attribute

NAME = engine_attribute.NAME
HELP = engine_attribute.HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    engine_attribute.add_arguments(parser)
    parser.add_argument(
        "--server",
        action="store_true",
        help="then serve the graph in the viewer on 127.0.0.1:--port (with $CT_CONFIG's lake)",
    )
    parser.add_argument("--port", type=int, default=8041, help="the viewer's port (with --server)")


def run(args: argparse.Namespace) -> int:
    """Attribute (the engine's command), then serve the graph files when ``--server``.
    Raises ``ValueError`` for ``--server`` without ``--slug`` and ``--graph_file_dir``, or
    with a port the viewer cannot listen on, before any model is loaded."""
    serving = args.server and not args.estimate_memory
    if serving and not (args.slug and args.graph_file_dir):
        raise ValueError("--server needs --slug and --graph_file_dir")
    if serving:
        _check_port(args.port)
    features_dir = None
    if serving and args.features_dir:
        from ct_viewer.features import FeatureFolder

        features_dir = Path(args.features_dir)
        FeatureFolder(features_dir)  # a folder that is not one: its one line, before the model
    status = engine_attribute.run(args)
    if status != 0 or not serving:
        return status
    app = _viewer_app(args.graph_file_dir, features_dir)
    print(f"ct attribute: serving the graph as file__{args.slug} on port {args.port}")
    try:
        _serve_viewer(app, args.port)
    except KeyboardInterrupt:
        pass
    return 0


def _check_port(port: int) -> None:
    """A port the viewer can listen on, now rather than after the attribution: a taken port
    (another server) or a forbidden one is one line. (It could still be taken in between.)"""
    from ct_viewer.server import DEFAULT_HOST, listen

    if not 0 < port < 65536:
        raise ValueError(f"--port {port} is not a port number (1-65535)")
    listen(DEFAULT_HOST, port).close()


def _viewer_app(graph_file_dir: str, features_dir: Path | None = None):
    """The viewer over ``graph_file_dir`` (and the feature files of ``features_dir``) plus the
    lake of ``$CT_CONFIG`` when it names a config file (its graphs and annotations)."""
    from ct_lake.config import CONFIG_ENV, load_config
    from ct_viewer.server import create_app

    config = os.environ.get(CONFIG_ENV)
    if config and Path(config).is_file():
        loaded = load_config(config)
        print(f"ct attribute: the viewer also shows the lake {loaded.lake} (${CONFIG_ENV})")
        return create_app(
            lake_root=loaded.lake,
            config_path=loaded.path,
            graph_file_dirs=[Path(graph_file_dir)],
            features_dir=features_dir,
        )
    return create_app(
        lake_root=None, graph_file_dirs=[Path(graph_file_dir)], features_dir=features_dir
    )


def _serve_viewer(app, port: int) -> None:
    """Run the viewer until interrupted (blocking; the tests replace this function)."""
    from ct_viewer.server import serve

    serve(app, port=port)
