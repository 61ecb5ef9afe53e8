"""circuit-tracer's notebook server: ``serve(data_dir, port=...)`` starts the viewer over a
folder of graph files in a background thread and returns at once; ``server.stop()`` ends it.

    from ct_viewer.local_server import serve
    server = serve(data_dir="./graph_files/", port=8046)   # http://127.0.0.1:8046/
    server.stop()

It listens on 127.0.0.1 only. ``frontend_dir`` (circuit-tracer's own static files) is accepted
and ignored: the viewer ships its pages in ``ct_viewer/static``.
"""

from __future__ import annotations

import atexit
import logging
import socket
import threading
import time
from pathlib import Path

from ct_viewer.server import create_app, make_server

# circuit-tracer's Python default (its command line, like `ct start-server`, uses 8041).
DEFAULT_PORT = 8032
START_TIMEOUT_S = 30.0
_LOGGERS = ("uvicorn.access", "uvicorn.error", "ct_viewer")


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]):
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class Server:
    """A running viewer: ``url``, ``port``, ``stop()`` and ``get_logs()``."""

    def __init__(self, uvicorn_server, thread: threading.Thread, handler: _Collect):
        self._server = uvicorn_server
        self._thread = thread
        self._handler = handler
        self.port = uvicorn_server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        """Stop serving and wait for the thread (idempotent)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=START_TIMEOUT_S)
        for name in _LOGGERS:
            logging.getLogger(name).removeHandler(self._handler)

    def get_logs(self) -> list[str]:
        """The server's log lines so far (requests and errors), oldest first."""
        return list(self._handler.lines)


def serve(
    data_dir: str | Path,
    frontend_dir: str | Path | None = None,
    features_dir: str | Path | None = None,
    port: int = DEFAULT_PORT,
) -> Server:
    """Serve the ``<slug>.json`` graph files of ``data_dir`` (and the feature cards of
    ``features_dir``'s circuit-tracer feature files) on http://127.0.0.1:PORT/, in a
    background thread. ``port=0`` picks a free port (``server.port`` says which).

    Raises:
        ValueError: ``data_dir`` is not a folder, or ``features_dir`` not a feature folder.
        OSError: the port cannot be bound (in use).
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ValueError(f"data_dir {str(folder)!r} is not a folder of graph files")
    app = create_app(
        lake_root=None,
        graph_file_dirs=[folder],
        features_dir=Path(features_dir) if features_dir is not None else None,
    )
    # Bound here, so that a taken port is one OSError to the caller rather than a traceback
    # printed by the server's thread.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as err:
        sock.close()
        raise OSError(
            f"could not serve on 127.0.0.1:{port}: {err.strerror} (is the port in use?)"
        ) from None
    server = make_server(app, port=sock.getsockname()[1])
    # uvicorn's console handlers would print its INFO lines into the notebook's cells: this
    # server's log goes to get_logs() only, as circuit-tracer's does.
    for name in ("uvicorn", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
    lines: list[str] = []
    handler = _Collect(lines)
    for name in _LOGGERS:
        logging.getLogger(name).addHandler(handler)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"ct-viewer-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        sock.close()
        for name in _LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        raise OSError(f"the viewer did not start on 127.0.0.1:{port}")
    running = Server(server, thread, handler)
    atexit.register(running.stop)
    print(f"ct viewer: serving {folder} on {running.url}", flush=True)
    return running
