"""The viewer's HTTP server: a Starlette app over the lake's graphs and annotations.

:func:`create_app` builds the app (endpoints: ``ct_viewer/API.md``); :func:`serve` runs it
with uvicorn on 127.0.0.1:8041 by default. Blocking work (DuckDB queries, graph loads and
pruning, Parquet writes, model runs) runs in Starlette's thread pool, off the event loop.

Security (see ``ct_viewer/README.md``): loopback by default; graph ids are matched against a
regular expression and never used as paths; ``/features/<name>`` serves only the files a
features folder's index names; static files come only from the package's
``static/`` folder; request bodies are capped while they are read (chunked bodies too); write
requests must be ``application/json`` and, when the browser sends an ``Origin``, same-origin;
the ``Host`` header must name the loopback interface (DNS rebinding) unless the server was
told to listen elsewhere.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ct_lake.storage import LakeError
from ct_viewer.annotations import AnnotationStore, InvalidBody
from ct_viewer.annotations import validate as validate_annotation
from ct_viewer.features import FeatureCards, FeatureFolder, NoCard
from ct_viewer.graphs import Conflict, GraphNotFound, GraphStore
from ct_viewer.steering import SteeringModels, steer
from ct_viewer.steering import validate as validate_steer

log = logging.getLogger("ct_viewer")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8041
MAX_BODY_BYTES = 65536
# Host headers accepted by default (DNS-rebinding defence). "testserver" is the host of
# Starlette's TestClient; it cannot name another machine in a browser on this one.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]", "testserver")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        b"frame-ancestors 'none'; form-action 'self'",
    ),
]
_UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class _Guard:
    """ASGI middleware: security headers on every response, ``Cache-Control: no-store`` on the
    API, and a same-origin check of write requests that carry an ``Origin`` header."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_api = scope["path"].startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                if is_api:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        if scope["method"] in _UNSAFE_METHODS and not _same_origin(scope):
            response = JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


class _HostGuard:
    """ASGI middleware: 400 (a JSON error, as every other) unless the ``Host`` header names
    one of ``allowed`` (``"*"``: any) — the DNS-rebinding defence."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str]):
        self.app = app
        self.allowed = {h.lower() for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = _host_name(headers.get(b"host", b"").decode("latin-1"))
        if host in self.allowed:
            await self.app(scope, receive, send)
            return
        shown = json.dumps(host[:100]) if host else "none"
        detail = f"invalid Host header ({shown}): the viewer answers requests for this machine"
        await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)


def _host_name(host: str) -> str:
    """``host`` without its port: ``[::1]:8041`` -> ``[::1]``, ``localhost:80`` -> ``localhost``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.index("]") + 1] if "]" in host else host
    return host.split(":", 1)[0]


def _same_origin(scope: Scope) -> bool:
    headers = {k.lower(): v for k, v in scope.get("headers", [])}
    origin = headers.get(b"origin")
    if origin is None:
        return True  # not a browser's cross-site request (browsers send Origin on POST/DELETE)
    host = headers.get(b"host", b"").decode("latin-1").lower()
    try:
        parts = urlsplit(origin.decode("latin-1"))
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host


async def read_json(request: Request, max_bytes: int):
    """The request's JSON body: 413 past ``max_bytes`` (declared or streamed, counted while
    reading), 415 unless ``Content-Type`` is ``application/json``, 422 for invalid JSON."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise HTTPException(400, "bad Content-Length") from None
        if declared > max_bytes:
            raise HTTPException(413, f"request body larger than {max_bytes} bytes")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(415, "the body must be JSON (Content-Type: application/json)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, f"request body larger than {max_bytes} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks), parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:
        raise HTTPException(422, f"invalid JSON: {str(err)[:200]}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _threshold(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise HTTPException(422, f"{name} must be a number in [0, 1]")
    return value


class _Handlers:
    def __init__(
        self,
        store: GraphStore,
        max_body_bytes: int,
        models: SteeringModels,
        folder: FeatureFolder | None = None,
    ):
        self.store = store
        self.models = models
        self.folder = folder
        self.cards = FeatureCards(store.lake, folder)
        self.max_body_bytes = max_body_bytes
        self.annotations = AnnotationStore(store.lake) if store.lake is not None else None
        pruning = store.config.pruning if store.config is not None else None
        self.node_threshold = pruning.node_threshold if pruning else 0.8
        self.edge_threshold = pruning.edge_threshold if pruning else 0.98

    async def _resolve(self, request: Request):
        try:
            return await run_in_threadpool(self.store.resolve, request.path_params["graph_id"])
        except GraphNotFound as err:
            raise HTTPException(404, str(err)) from None

    async def index(self, request: Request) -> Response:
        index = STATIC_DIR / "index.html"
        if not index.is_file():
            raise HTTPException(404, "the viewer page is not installed (ct_viewer/static)")
        return FileResponse(index, media_type="text/html; charset=utf-8")

    async def list_graphs(self, request: Request) -> Response:
        model = request.query_params.get("model") or None
        q = request.query_params.get("q") or None
        rows, damaged = await run_in_threadpool(self.store.summaries, model, q)
        for problem in damaged:
            log.warning("ct_viewer: not listed: %s: %s", problem["file"], problem["error"])
        return JSONResponse({"graphs": rows, "damaged": damaged})

    async def graph(self, request: Request) -> Response:
        node_threshold = _threshold(request, "node_threshold", self.node_threshold)
        edge_threshold = _threshold(request, "edge_threshold", self.edge_threshold)
        ref = await self._resolve(request)
        if ref.source == "file":
            # Pre-pruned: the thresholds cannot be re-applied; the stored document is served.
            content = await run_in_threadpool(self.store.file_bytes, ref)
        else:
            content = await run_in_threadpool(
                self.store.document_bytes, ref, node_threshold, edge_threshold
            )
        return Response(content, media_type="application/json")

    async def feature_file(self, request: Request) -> Response:
        """A file of the features folder, with HTTP Range support (206 with
        ``Content-Range``, 416 when unsatisfiable): circuit-tracer's frontend reads one
        feature's record as one byte range of a layer's bin file."""
        if self.folder is None:
            raise HTTPException(404, "no features folder: start the server with --features_dir")
        path = await run_in_threadpool(self.folder.served_path, request.path_params["rel"])
        if path is None:
            raise HTTPException(404, "no such feature file")
        # Raw bytes, as circuit-tracer's server sends them: index.json.gz is gunzipped by the
        # page itself, so no Content-Encoding (the browser would undo the gzip first).
        return FileResponse(path, media_type="application/octet-stream")

    async def feature_card(self, request: Request) -> Response:
        ref = await self._resolve(request)
        layer, feature = request.path_params["layer"], request.path_params["feature"]
        try:
            card = await run_in_threadpool(self.cards.card, ref, layer, feature)
        except NoCard as err:
            raise HTTPException(404, str(err)) from None
        return JSONResponse(card)

    async def feature_labels(self, request: Request) -> Response:
        ref = await self._resolve(request)

        def run() -> dict:
            nodes = self.store.node_set(ref)
            pairs = {(n.layer, n.feature) for n in nodes.values() if n.kind == "feature"}
            return self.cards.labels(ref, pairs)

        return JSONResponse(await run_in_threadpool(run))

    async def list_annotations(self, request: Request) -> Response:
        ref = await self._resolve(request)
        if self.annotations is None:
            return JSONResponse({"annotations": []})
        rows = await run_in_threadpool(self.annotations.list, ref.id)
        return JSONResponse({"annotations": rows})

    def _annotation_store(self) -> AnnotationStore:
        if self.annotations is None:
            raise HTTPException(409, "this server has no lake: annotations cannot be stored")
        return self.annotations

    async def create_annotation(self, request: Request) -> Response:
        ref = await self._resolve(request)
        store = self._annotation_store()
        body = await read_json(request, self.max_body_bytes)
        nodes = await run_in_threadpool(self.store.node_set, ref)
        try:
            checked = validate_annotation(body, nodes)
        except InvalidBody as err:
            raise HTTPException(422, str(err)) from None
        row = await run_in_threadpool(store.add, ref.id, checked)
        return JSONResponse(row, status_code=201)

    async def delete_annotation(self, request: Request) -> Response:
        ref = await self._resolve(request)
        store = self._annotation_store()
        found = await run_in_threadpool(store.delete, ref.id, request.path_params["annotation_id"])
        if not found:
            raise HTTPException(404, "no such annotation")
        return Response(status_code=204)

    async def steer(self, request: Request) -> Response:
        ref = await self._resolve(request)
        entry = self._steerable_entry(ref)
        body = await read_json(request, self.max_body_bytes)
        nodes = await run_in_threadpool(self.store.node_set, ref)
        try:
            checked = validate_steer(body, nodes)
        except InvalidBody as err:
            raise HTTPException(422, str(err)) from None

        def run() -> dict:
            from ct_lake.paths import cached_transcoders

            try:
                transcoders = cached_transcoders(self.store.lake, entry.name)
                model, lock = self.models.load(entry, transcoders)
            except (OSError, ValueError) as err:
                raise Conflict(f"could not load model {entry.name!r}: {err}") from err
            return steer(model, lock, self.store.graph(ref), checked)

        try:
            result = await run_in_threadpool(run)
        except Conflict as err:
            raise HTTPException(409, str(err)) from None
        except ValueError as err:  # an intervention the engine refuses
            raise HTTPException(422, str(err)) from None
        return JSONResponse(result)

    def _steerable_entry(self, ref):
        if ref.source != "lake":
            raise HTTPException(
                409, "steering needs the graph's model; JSON file graphs do not name one"
            )
        entry = self.store.entry(ref.model)
        if entry is None:
            raise HTTPException(
                409, f"model {ref.model!r} is not in the server's config: it cannot be steered"
            )
        return entry


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse(
        {"detail": exc.detail}, status_code=exc.status_code, headers=dict(exc.headers or {})
    )


async def _conflict(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=409)


async def _lake_error(request: Request, exc: Exception) -> Response:
    # The lake's own one-line messages (a damaged file, an unreachable store) name no secret.
    log.error("ct_viewer: %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": str(exc)}, status_code=500)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("ct_viewer: error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def create_app(
    *,
    lake_root: str | Path | None,
    config_path: Path | None = None,
    graph_file_dirs: Sequence[Path] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
    allowed_hosts: Sequence[str] | None = None,
    model_cache=None,
    features_dir: Path | None = None,
) -> Starlette:
    """The viewer app.

    Args:
        lake_root: the lake whose graphs are listed and where annotations are kept: a
            local path, ``s3://bucket/prefix`` or a :class:`~ct_lake.lake.Lake` (None: file
            graphs only, no annotations can be stored).
        config_path: the lakehouse config (tokenizers and models for lake graphs; pruning
            defaults). Without it, lake graphs use their own tokenizer name and cannot be
            steered.
        graph_file_dirs: folders of ``<slug>.json`` graph documents (ids ``file__<slug>``).
        max_body_bytes: request bodies larger than this get 413.
        allowed_hosts: accepted ``Host`` headers (default: the loopback names; ``["*"]``
            accepts any, for a server listening beyond the loopback interface).
        model_cache: the :class:`~ct_engine.model_cache.ModelCache` steering loads models into
            (default: a new one, held by the app as ``app.state.models``).
        features_dir: a folder of circuit-tracer feature files (``index.json.gz``,
            ``layer_<i>.bin``): served under ``/features/`` and the source of the feature
            cards of graph files (and of lake graphs whose model has no dashboards in the
            lake). A one-line ``ValueError`` when it is not such a folder.
    """
    folder = FeatureFolder(features_dir) if features_dir is not None else None
    config = None
    if config_path is not None:
        from ct_lake.config import load_config

        config = load_config(config_path)
    store = GraphStore(lake_root, config, list(graph_file_dirs))
    models = SteeringModels(model_cache)
    h = _Handlers(store, max_body_bytes, models, folder)
    graph = "/api/graphs/{graph_id:str}"
    routes = [
        Route("/", h.index, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
        Route("/api/graphs", h.list_graphs, methods=["GET"]),
        Route(graph, h.graph, methods=["GET"]),
        Route(f"{graph}/annotations", h.list_annotations, methods=["GET"]),
        Route(f"{graph}/annotations", h.create_annotation, methods=["POST"]),
        Route(
            f"{graph}/annotations/{{annotation_id:str}}", h.delete_annotation, methods=["DELETE"]
        ),
        Route(f"{graph}/steer", h.steer, methods=["POST"]),
        Route(f"{graph}/features", h.feature_labels, methods=["GET"]),
        Route(f"{graph}/features/{{layer:int}}/{{feature:int}}", h.feature_card, methods=["GET"]),
        Route("/features/{rel:path}", h.feature_file, methods=["GET", "HEAD"]),
    ]
    hosts = list(allowed_hosts) if allowed_hosts is not None else list(LOOPBACK_HOSTS)
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(_Guard),
            Middleware(_HostGuard, allowed=hosts),
        ],
        exception_handlers={
            HTTPException: _http_error,
            Conflict: _conflict,
            LakeError: _lake_error,
            Exception: _server_error,
        },
    )
    app.state.store = store
    app.state.models = models
    app.state.features = folder
    return app


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def make_server(app: Starlette, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT):
    """A ``uvicorn.Server`` for ``app`` (not started); :func:`serve` runs one."""
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", server_header=False, proxy_headers=False
    )
    return uvicorn.Server(config)


def listen(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """A socket bound to ``host``:``port``; a one-line ValueError when the port is taken (by
    another server, whose address must not be announced as ours) or cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # as uvicorn does: a port left in TIME_WAIT by a server just stopped can be reused
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ValueError(
                f"port {port} on {host} is already in use (another server, maybe another ct "
                "serve): stop it, or choose a free port with --port"
            ) from None
        if err.errno == errno.EACCES:
            raise ValueError(
                f"not allowed to listen on port {port} (ports below 1024 need privileges): "
                "choose another with --port"
            ) from None
        raise ValueError(f"cannot listen on {host} port {port}: {err.strerror or err}") from None
    sock.set_inheritable(True)
    return sock


def serve(app: Starlette, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve ``app`` with uvicorn until interrupted (blocking); log the URL once the port is
    ours (:func:`listen`: a ValueError when it is not)."""
    sock = listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    if not is_loopback(host):
        log.warning("ct_viewer: listening on %s: reachable from other machines", host)
        print(f"ct viewer: warning: listening on {host}, beyond this machine", flush=True)
    log.info("ct_viewer: serving on %s", url)
    print(f"ct viewer: open {url} (Ctrl-C stops it)", flush=True)
    try:
        make_server(app, host, port).run(sockets=[sock])
    finally:
        sock.close()
