"""``ct sql`` and ``ct lake info`` on an S3 lake, in a subprocess as a user runs them: the answer
with good credentials; one error line naming the endpoint (and no secret) without."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ct_lake.keys import prompt_key
from ct_lake.lake import Lake
from tests.s3server import free_port

REPO = Path(__file__).resolve().parents[2]
P1 = prompt_key("one")
SECRET = "Wrong-Secret-For-The-Cli-7"


@pytest.fixture
def config(s3_uri, tmp_path) -> Path:
    Lake(s3_uri).write_table(
        "edges", [{"target": 1, "source": 2, "weight": 0.5}], model="toy", prompt=P1
    )
    path = tmp_path / "c.yaml"
    path.write_text(f"models:\n  - {{name: toy, model: m, transcoders: t}}\nlake: {s3_uri}\n")
    return path


def ct(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ct_cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **env},
    )


def test_ct_sql_reads_an_s3_lake(config, s3_server):
    done = ct(
        s3_server.env(),
        "sql",
        "SELECT weight FROM edges",
        "--format",
        "csv",
        "--config",
        str(config),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["weight", "0.5"]


@pytest.mark.parametrize("failure", ["credentials", "endpoint"])
@pytest.mark.parametrize("command", [["sql", "SELECT count(*) FROM edges"], ["lake", "info"]])
def test_a_failing_s3_lake_is_one_line(config, s3_server, s3_uri, failure, command):
    env = s3_server.env()
    if failure == "credentials":
        env["AWS_SECRET_ACCESS_KEY"] = SECRET
        endpoint, reason = s3_server.endpoint, "the credentials were refused"
    else:
        env["AWS_ENDPOINT_URL"] = endpoint = f"http://127.0.0.1:{free_port()}"
        reason = "the endpoint cannot be reached"
    started = time.monotonic()
    done = ct(env, *command, "--config", str(config))
    assert time.monotonic() - started < 60
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{s3_uri} (endpoint {endpoint})" in lines[0] and reason in lines[0]
    assert SECRET not in done.stderr and "Traceback" not in done.stderr
