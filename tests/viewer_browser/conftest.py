"""Real-browser tests of the viewer page: a lake built on the tiny model, the real
``ct_viewer.server.create_app`` under uvicorn on 127.0.0.1 (a background thread), and headless
Chromium (Debian's ``chromium`` package, ``scripts/ensure_browser.sh``) driven by Playwright.

Chromium is launched from ``$CT_CHROMIUM`` or ``chromium`` on PATH (Playwright's own browser
download is never used). Without it, or without the ``playwright`` package, the tests are
skipped, unless ``CT_REQUIRE_BROWSER=1`` (CI), where they fail. Screenshots go to
``$CT_TEST_ARTIFACTS/viewer_browser/`` (default ``test-artifacts/`` under the repository root).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.assets.conftest import PROMPTS, write_config  # noqa: F401
from tests.conftest import copy_tiny_lake

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1400, "height": 900}


def chromium_path() -> str | None:
    return os.environ.get("CT_CHROMIUM") or shutil.which("chromium")


def _missing(reason: str):
    if os.environ.get("CT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (CT_REQUIRE_BROWSER=1)")
    pytest.skip(f"{reason}: run scripts/ensure_browser.sh")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    root = Path(os.environ.get("CT_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts")
    out = root / "viewer_browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def viewer_lake(tmp_path_factory, tiny_lake_template):
    """``(config_path, lake_root)``: the two prompts of ``PROMPTS`` materialized on "tiny" (a
    copy of the session's ``tiny_lake_template``)."""
    from ct_lake.config import load_config

    folder = tmp_path_factory.mktemp("viewer-lake")
    path = copy_tiny_lake(tiny_lake_template, folder / "lakehouse")
    return path, load_config(path).lake


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the viewer server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=120) as res:
            return json.load(res)

    def post_json(self, path: str, body) -> tuple[int, object]:
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=300) as res:
            return res.status, json.load(res)


@pytest.fixture(scope="module")
def live_server(viewer_lake):
    from ct_viewer.server import create_app

    config_path, lake_root = viewer_lake
    app = create_app(lake_root=lake_root, config_path=config_path, graph_file_dirs=[])
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed")
    exe = chromium_path()
    if not exe:
        _missing("no chromium on PATH")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, artifacts_dir, request):
    """A fresh browser context (empty localStorage) and page; console errors fail the test."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    if getattr(request.node, "rep_call_failed", False):
        pg.screenshot(path=str(artifacts_dir / f"{request.node.name}-failed.png"))
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call_failed = rep.failed
    return rep
