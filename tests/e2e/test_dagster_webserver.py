"""End to end through the Dagster UI's server: ``dagster dev`` runs ``graph_job`` for a prompt.

``dagster dev`` (webserver, daemon and code server) starts as ``make dagster`` starts it (the
Makefile's recipe: its environment, its workspace) on a free port of 127.0.0.1, with a
temporary ``DAGSTER_HOME`` (a copy of the repo's ``dagster.yaml``) and a lakehouse config on
the tiny test model. Its log holds no warning: a code location served under another name than
the project's logs one on every reload of the workspace. The test registers a prompt in its
own process, submits a run of ``graph_job`` for the ``tiny|p_...`` partition over GraphQL,
waits for it to succeed and checks the lake. Every process it started is stopped at the end
(SIGTERM to the process group, then SIGKILL), also when the test fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient

from ct_assets.lib.context import multi_key
from ct_lake.catalog import connect
from ct_lake.config import load_config
from ct_lake.lake import Lake
from ct_lake.prompts import register_prompts
from tests.assets import conftest as assets_conftest

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
READY_TIMEOUT_S = 120  # webserver up and the code location loaded
RUN_TIMEOUT_S = 240  # queued -> success (a fresh run worker imports torch and loads the model)
STOP_TIMEOUT_S = 30


LOCATIONS_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def descendants(root: int) -> set[tuple[int, str]]:
    """``(pid, start time)`` of every live descendant of ``root`` (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    starts = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
            starts[int(entry)] = fields[19]
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add((child, starts[child]))
            todo.append(child)
    return found


def alive(procs: set[tuple[int, str]]) -> set[tuple[int, str]]:
    left = set()
    for pid, start in procs:
        fields = _stat(pid)
        if fields is not None and fields[19] == start and fields[0] != "Z":
            left.add((pid, start))
    return left


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on ``port`` (from /proc/net/tcp[6])."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def make_dagster_command(port: int) -> tuple[dict[str, str], list[str]]:
    """The environment assignments and the command line of the Makefile's ``dagster`` recipe,
    on ``port``; relative paths resolve against the repository, ``$(BIN)`` is this venv's."""
    recipe = (REPO / "Makefile").read_text().split("\ndagster:", 1)[1].split("\n", 1)[1]
    recipe = re.sub(r"\\\n\t*", " ", recipe)  # continuation lines
    words = shlex.split(recipe.splitlines()[0])
    env = {}
    while "=" in words[0] and not words[0].startswith("$"):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    assert words[0] == "$(BIN)/dagster" and words[1] == "dev", words
    argv = [str(Path(sys.executable).parent / "dagster"), "dev"]
    options = iter(words[2:])
    for word in options:
        value = next(options)
        if word in ("-p", "--port"):
            value = str(port)
        elif word in ("-h", "--host"):
            assert value == HOST, f"make dagster serves on {value}"
        elif word in ("-w", "--workspace", "-f", "--python-file"):
            value = str(REPO / value)
        argv += [word, value]
    return env, argv


# A Python warning ("file:line: SomeWarning: ...") or a Dagster log line at level WARNING.
WARNING_LINE = re.compile(r"\w+Warning: | - WARNING - ")


def warning_lines(log: str) -> list[str]:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", log)  # the colored log format's escape codes
    return [line for line in plain.splitlines() if WARNING_LINE.search(line)]


class DagsterDev:
    """``dagster dev`` as ``make dagster`` starts it, in its own session; :meth:`stop` ends the
    whole process group."""

    def __init__(self, home: Path, config: Path, port: int, log: Path):
        make_env, argv = make_dagster_command(port)
        env = {
            **os.environ,
            **make_env,
            "DAGSTER_HOME": str(home),
            "CT_CONFIG": str(config),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PYTHONUNBUFFERED": "1",
        }
        self.port, self.log = port, log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=home.parent,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.seen: set[tuple[int, str]] = set()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def check_running(self, doing: str) -> None:
        self.seen |= descendants(self.proc.pid)
        if self.proc.poll() is not None:
            pytest.fail(
                f"dagster dev exited ({self.proc.returncode}) while {doing}:\n{self.output()}"
            )

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            f"http://{HOST}:{self.port}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["data"]

    def wait_ready(self, timeout: float) -> list[str]:
        """Until ``/server_info`` answers and the code location has loaded; its names."""
        deadline = time.monotonic() + timeout
        state = "no answer from /server_info"
        while time.monotonic() < deadline:
            self.check_running("starting")
            try:
                with urllib.request.urlopen(
                    f"http://{HOST}:{self.port}/server_info", timeout=5
                ) as response:
                    assert response.status == 200
                entries = self.graphql(LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
                state = f"code locations: {entries}"
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    errors = [e for e in entries if "message" in (e["locationOrLoadError"] or {})]
                    assert not errors, f"the code location failed to load: {errors}"
                    return [e["name"] for e in entries]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        pytest.fail(f"dagster dev not ready after {timeout}s ({state}):\n{self.output()}")

    def stop(self) -> None:
        """SIGTERM the process group, wait, SIGKILL whatever is left (also stray
        descendants that left the group)."""
        if self.proc.poll() is None:
            self.seen |= descendants(self.proc.pid)
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while alive(self.seen) and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.proc.poll() is None or alive(self.seen):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for pid, _ in alive(self.seen):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            # SIGKILL is delivered asynchronously: on busy cores a killed process can still be
            # running for a moment after kill() returns
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while alive(self.seen) and time.monotonic() < deadline:
                time.sleep(0.1)


def wait_for_run(client, instance, dev: DagsterDev, run_id: str) -> dg.DagsterRunStatus:
    done = {
        dg.DagsterRunStatus.SUCCESS,
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED,
    }
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = None
    while time.monotonic() < deadline:
        dev.check_running(f"run {run_id} was {status}")
        status = client.get_run_status(run_id)
        if status in done:
            return status
        time.sleep(1)
    pytest.fail(
        f"run {run_id} still {status} after {RUN_TIMEOUT_S}s; {run_errors(instance, run_id)}"
        f"\ndagster dev output:\n{dev.output()}"
    )


def run_errors(instance, run_id: str) -> str:
    events = instance.all_logs(run_id)
    errors = [
        (e.dagster_event.event_type_value if e.dagster_event else "log", e.message)
        for e in events
        if e.level >= 40 or (e.dagster_event and "FAILURE" in e.dagster_event.event_type_value)
    ]
    return f"errors in the run's events: {errors}"


@pytest.mark.slow  # dagster dev starts, a run worker loads the model: ~45 s
def test_dagster_dev_runs_graph_job_for_a_prompt(tmp_path, tiny_lakehouse_files, monkeypatch):
    started = time.monotonic()
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    # The repo's dagster.yaml says `storage: sqlite: base_dir: storage`, which Dagster
    # resolves against the working directory, not DAGSTER_HOME: run this process and
    # dagster dev (cwd=tmp_path) from the same folder so that both see one instance.
    monkeypatch.chdir(tmp_path)
    config_path = assets_conftest.write_config(tmp_path, tiny_lakehouse_files)
    config = load_config(config_path)
    port = free_port()
    dev = DagsterDev(home, config_path, port, tmp_path / "dagster-dev.log")
    try:
        locations = dev.wait_ready(READY_TIMEOUT_S)
        ready_s = time.monotonic() - started
        # The location is served under the project's own name: loading it logged no warning.
        project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]["project"]
        assert locations == [project["code_location_name"]]
        assert not warning_lines(dev.log.read_text()), dev.output()
        # Bound to the loopback interface only.
        assert listening_addresses(port) == {"0100007F"}, listening_addresses(port)
        assert f"Serving dagster-webserver on http://{HOST}:{port}" in dev.output()

        with dg.DagsterInstance.from_config(str(home)) as instance:
            registered = register_prompts(config, [assets_conftest.PROMPTS[0]], ["tiny"], instance)
            [(model, prompt)] = registered.partitions
            key = multi_key(model, prompt)
            assert model == "tiny" and str(key) == f"tiny|{prompt}"  # the key the UI shows

            client = DagsterGraphQLClient(hostname=HOST, port_number=port, timeout=60)
            run_id = client.submit_job_execution("graph_job", tags={"dagster/partition": str(key)})
            status = wait_for_run(client, instance, dev, run_id)
            assert status == dg.DagsterRunStatus.SUCCESS, (
                f"run {run_id} ended {status}; {run_errors(instance, run_id)}"
                f"\ndagster dev output:\n{dev.output()}"
            )
            run = instance.get_run_by_id(run_id)
            assert run.job_name == "graph_job" and run.tags["dagster/partition"] == key
            materialized = instance.get_materialized_partitions(dg.AssetKey("attribution_graph"))
            assert key in {str(k) for k in materialized}

        lake = Lake(config.lake)
        for table in ("graphs", "nodes", "edges"):
            assert lake.has_partition(table, model="tiny", prompt=prompt), table
        graphs = lake.read_table("graphs", model="tiny", prompt=prompt).to_pylist()
        assert [g["dagster_run_id"] for g in graphs] == [run_id]
        n_edges = (
            connect(config.lake)
            .execute("SELECT count(*) FROM edges WHERE model = 'tiny' AND prompt = ?", [prompt])
            .fetchone()[0]
        )
        assert n_edges == graphs[0]["n_edges"] > 0
        assert lake.has_file("graphs", "graph.safetensors", model="tiny", prompt=prompt)
        assert not warning_lines(dev.log.read_text()), dev.output()
        print(f"dagster dev ready in {ready_s:.1f}s; run done at {time.monotonic() - started:.1f}s")
    finally:
        dev.stop()
    left = alive(dev.seen)
    assert dev.proc.returncode is not None and not left, f"processes left running: {left}"
    assert not listening_addresses(port), "the webserver's port is still open"
