"""The whole lakehouse on object storage, as a user runs it: ``ct materialize`` for two prompts
into an ``s3://`` lake on a real S3-compatible server (moto, on 127.0.0.1), ``ct sql`` over it,
and ``ct serve`` showing its graphs, each a separate process that gets the endpoint and the
credentials from the standard AWS environment variables only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from ct_lake.keys import prompt_key
from tests.assets.conftest import PROMPTS, write_config  # noqa: F401
from tests.s3server import free_port, s3_server, s3_uri  # noqa: F401


def _ct(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ct_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_materialize_query_and_view_an_s3_lake(
    tmp_path,
    tiny_lakehouse_files,  # noqa: F811
    s3_server,  # noqa: F811
    s3_uri,  # noqa: F811
):
    config = write_config(tmp_path, tiny_lakehouse_files, lake=s3_uri)
    env = {
        **os.environ,
        **s3_server.env(),
        "CT_CONFIG": str(config),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "CT_LAKE_CACHE": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    (tmp_path / "dagster_home").mkdir()
    secret = s3_server.env()["AWS_SECRET_ACCESS_KEY"]

    materialized = _ct("materialize", env=env)
    assert materialized.returncode == 0, materialized.stderr[-3000:]
    assert f"lake: {s3_uri}" in materialized.stdout
    assert not (tmp_path / "lake").exists()  # every table and file went to the bucket

    query = "SELECT prompt, prompt_text, n_edges, replacement_score FROM graph_overview"
    sql = _ct("sql", "--format", "json", f"{query} ORDER BY prompt", env=env)
    assert sql.returncode == 0, sql.stderr
    rows = json.loads(sql.stdout)
    assert sorted(r["prompt"] for r in rows) == sorted(prompt_key(p) for p in PROMPTS)
    assert {r["prompt_text"] for r in rows} == set(PROMPTS)
    assert all(r["n_edges"] > 0 and 0 < r["replacement_score"] <= 1 for r in rows)
    # What the command printed: a progress bar, then a table of the graphs with the lake's
    # scores, and nothing else: no Dagster event log, no warning, no notice
    lines = materialized.stdout.splitlines()
    for r in rows:
        [line] = [line for line in lines if line.startswith(r["prompt_text"])]
        assert f"{r['replacement_score']:.3f}" in line
    assert "materialize tiny" in materialized.stderr and "100%" in materialized.stderr
    for noise in (" - DEBUG - ", " - INFO - ", "Warning", "Traceback", "dagster.yaml", "INFO"):
        assert noise not in materialized.stderr, materialized.stderr[-3000:]

    port = free_port()
    log = open(tmp_path / "serve.log", "w+")  # noqa: SIM115 - read back after the server stops
    server = subprocess.Popen(
        [sys.executable, "-m", "ct_cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                listed = _get_json(f"{base}/api/graphs")["graphs"]
                break
            except OSError:
                assert server.poll() is None, "ct serve exited"
                assert time.monotonic() < deadline, "ct serve did not answer within 60 s"
                time.sleep(0.3)
        assert sorted(g["prompt"] for g in listed) == sorted(prompt_key(p) for p in PROMPTS)
        for graph in listed:
            document = _get_json(f"{base}/api/graphs/{graph['id']}")
            edges = {r["prompt"]: r["n_edges"] for r in rows}
            assert document["metadata"]["prompt"].endswith(graph["prompt_text"])
            assert len(document["nodes"]) > 0 and edges[graph["prompt"]] > 0
    finally:
        server.terminate()
        server.wait(timeout=30)
    log.seek(0)
    served = log.read()
    log.close()
    for output in (materialized.stdout, materialized.stderr, sql.stdout, sql.stderr, served):
        assert secret not in output
    # Nor in anything the run left here: Dagster's event log, MLflow's store and artifacts, the
    # lake's download cache.
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in written)
    assert [p for p in written if secret.encode() in p.read_bytes()] == []
