"""ct_viewer: a local web viewer for the lake's attribution graphs (``ct serve``).

``create_app(lake_root=..., config_path=..., graph_file_dirs=...)`` builds the Starlette app,
``serve(app)`` runs it on http://127.0.0.1:8041/. The HTTP contract is ``ct_viewer/API.md``.
"""

from ct_viewer.server import create_app, serve

__all__ = ["create_app", "serve"]
