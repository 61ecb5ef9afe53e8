"""ct_viewer: a local web viewer for the lake's attribution graphs (``ct serve``).

``create_app(lake_root=..., config_path=..., graph_file_dirs=...)`` builds the Starlette app,
``serve(app)`` runs it on http://127.0.0.1:8041/. The HTTP contract is ``ct_viewer/API.md``.

Both are imported from :mod:`ct_viewer.server` on first use, so that importing the package
(the ``ct`` command imports ``ct_viewer.commands``) does not load Starlette.
"""

from __future__ import annotations

__all__ = ["create_app", "serve"]


def __getattr__(name: str):
    if name in __all__:
        from ct_viewer import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
