"""A real MLflow tracking server for the tests: ``mlflow server`` in a subprocess on 127.0.0.1.

Import the fixture in a test module or ``conftest.py``::

    from tests.mlflowserver import mlflow_server  # noqa: F401

``mlflow_server`` (session) starts ``mlflow server`` with a sqlite backend store and served
artifacts (``--serve-artifacts``, as the team profile runs it) on a free port, waits for
``GET /health`` and yields the server's URI; it stops the server's process group at the end.
Starting takes about 10 s on two shared cores: mark the tests that use it slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.s3server import free_port


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a running MLflow tracking server."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "server"]
    command += ["--backend-store-uri", f"sqlite:///{root}/mlflow.db"]
    command += ["--serve-artifacts", "--artifacts-destination", str(root / "artifacts")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        start_new_session=True,  # the server and its workers form one group, stopped together
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (root / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not start in 60 s"
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        log.close()
