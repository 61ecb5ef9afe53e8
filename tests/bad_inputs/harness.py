"""The bad-input suite: one line per mistake a user can make, and the one line they get back.

Each surface has its own table (``test_cli_*.py``, ``test_api.py``, ``test_viewer.py``, ...);
adding a case is adding one entry to a table::

    Cli("sql-empty", "sql ''", r"ct sql: error: .*empty"),

A CLI case runs ``ct <argv>`` in a fresh folder (``{tmp}`` in ``argv`` is that folder,
``{model}``/``{plt}`` the toy world's names) with its own Dagster home, and checks what a user
sees: the exit status, no traceback, and one non-empty line on stderr that matches ``error``.
An API case calls a function and checks the exception's type and message. An HTTP case
sends one request to a running server and checks the status and the JSON ``detail``. The point
of each case is the message: it must say what was wrong in the user's terms, so ``error``
should name the bad value, not only "error".
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A progress bar (tqdm's "Loading weights: 100%|####| 39/39"), drawn by a model load before
# the mistake shows: progress, not a message, so not counted as a line.
PROGRESS_BAR = re.compile(r"^[^:]*: +\d+%\|")

PLACEHOLDERS = {"model": "toy-world", "plt": "toy-world-plt", "clt": "toy-world-clt"}


@dataclass(frozen=True)
class Cli:
    """``ct <argv>`` must exit ``rc`` with one stderr line matching ``error`` (a regex)."""

    id: str
    argv: str
    error: str
    rc: int = 2
    files: dict[str, str | bytes] = field(default_factory=dict)  # created in {tmp} first
    # more preparation, given {tmp}; a dict it returns adds placeholders to argv ({port})
    setup: Callable[[Path], dict[str, object] | None] | None = None
    timeout: float = 120.0
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class Api:
    """``call(tmp)`` must raise ``raises`` whose message matches ``match`` (a regex)."""

    id: str
    call: Callable[[Path], object]
    raises: type[BaseException]
    match: str

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class Http:
    """``method path`` sent to a running server must answer ``status`` with a JSON body whose
    ``detail`` matches ``detail`` (a regex). ``body``: a dict or list (sent as JSON), text or
    bytes (sent as ``Content-Type: application/json`` unless ``headers`` say otherwise)."""

    id: str
    method: str
    path: str
    status: int
    detail: str
    body: dict | list | str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.id


def ids(cases) -> list[str]:
    return [case.id for case in cases]


def ct_env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        DAGSTER_HOME=str(tmp / "dagster_home"),
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONUNBUFFERED="1",
    )
    env.pop("CT_CONFIG", None)
    env.update(extra or {})
    return env


def run_ct(argv: list[str], tmp: Path, env: dict[str, str] | None = None, timeout=120.0):
    return subprocess.run(
        [sys.executable, "-m", "ct_cli", *argv],
        cwd=tmp,
        env=ct_env(tmp, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_cli(case: Cli, tmp: Path) -> subprocess.CompletedProcess:
    """Run ``case`` in ``tmp`` and assert what the user sees; the finished process."""
    for name, content in case.files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    extra = case.setup(tmp) if case.setup is not None else None
    extra = extra if isinstance(extra, dict) else {}  # e.g. write_text's count: not for argv
    argv = shlex.split(case.argv.format(tmp=tmp, **PLACEHOLDERS, **extra))
    done = run_ct(argv, tmp, case.env, case.timeout)
    shown = (
        f"$ ct {case.argv}\nexit {done.returncode}\nstderr:\n{done.stderr}\nstdout:\n{done.stdout}"
    )
    assert "Traceback" not in done.stderr + done.stdout, shown
    assert done.returncode == case.rc, shown
    lines = [
        line for line in done.stderr.splitlines() if line.strip() and not PROGRESS_BAR.search(line)
    ]
    assert len(lines) == 1, f"expected one line on stderr\n{shown}"
    assert re.search(case.error, lines[0]), shown
    return done


def check_api(case: Api, tmp: Path) -> None:
    with pytest.raises(case.raises, match=case.match):
        case.call(tmp)


def check_http(case: Http, host: str, port: int) -> dict:
    """Send ``case`` to the server at ``host:port`` (the path exactly as written: no
    normalisation of ``..``) and assert the status and the JSON error; the decoded body."""
    import http.client
    import json

    body = case.body
    headers = {"Host": f"{host}:{port}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body).encode() if isinstance(body, dict | list) else body
        body = body.encode() if isinstance(body, str) else body
    headers.update(case.headers)
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request(case.method, case.path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    shown = f"{case.method} {case.path}\n{response.status}\n{raw[:2000]!r}"
    assert response.status == case.status, shown
    assert response.getheader("content-type", "").startswith("application/json"), shown
    decoded = json.loads(raw)
    assert "Traceback" not in raw.decode("utf-8", "replace"), shown
    assert re.search(case.detail, str(decoded.get("detail"))), shown
    return decoded
