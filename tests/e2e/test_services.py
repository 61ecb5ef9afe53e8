"""``scripts/services.sh``: the team profile's services start, answer, and stop, and only they.

The services are real: PostgreSQL, Redis, moto's S3 server, the MLflow server, Celery workers,
the Dagster daemon and webserver, each on 127.0.0.1 in a temporary services folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg2
import pytest
import redis
from celery import Celery

from tests.services import TeamServices, free_ports

HOST = "127.0.0.1"
ALL_PROCESSES = (
    "postgres",
    "redis",
    "s3",
    "mlflow",
    "worker1",
    "worker2",
    "dagster-daemon",
    "dagster-webserver",
)


def status_lines(output: str) -> dict[str, list[str]]:
    """``{name: [state, pid, address...]}`` from ``services.sh status`` (or ``up``) output."""
    found = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[2] == "pid":
            found[fields[0]] = [fields[1], fields[3], *fields[4:]]
    return found


def listening_addresses(port: int) -> set[str]:
    """The IPv4/IPv6 addresses that listen on ``port`` (``127.0.0.1``, ``0.0.0.0``, ``::``)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def pg_rows(env: dict[str, str], sql: str, password: str | None = None) -> list[tuple]:
    """Rows of ``sql`` in the ``dagster`` database, as team.env's user (committed)."""
    conn = psycopg2.connect(
        host=env["CT_PG_HOST"],
        port=int(env["CT_PG_PORT"]),
        user=env["CT_PG_USER"],
        password=env["CT_PG_PASSWORD"] if password is None else password,
        dbname=env["CT_PG_DB"],
    )
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def http_get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


class HttpServer:
    """``python -m http.server`` on 127.0.0.1: a process that ``services.sh`` did not start."""

    def __init__(self, port: int):
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", HOST, str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while not self.answers():
            assert self.proc.poll() is None, "http.server exited"
            assert time.monotonic() < deadline, "http.server did not answer"
            time.sleep(0.1)

    def answers(self) -> bool:
        try:
            return http_get(f"http://{HOST}:{self.port}/")[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


@pytest.fixture
def services() -> Iterator[TeamServices]:
    """A fresh services folder and ports; ``down`` and removal at the end."""
    services = TeamServices.fresh(workers=2)
    services.watch()
    try:
        yield services
    finally:
        services.close()


@pytest.fixture
def bystander() -> Iterator[HttpServer]:
    server = HttpServer(free_ports(1)[0])
    try:
        yield server
    finally:
        server.stop()


def test_up_is_idempotent_and_down_stops_only_its_services(services, bystander):
    up = services.up("postgres", "redis", "s3")
    started = status_lines(up.stdout)
    assert sorted(started) == ["postgres", "redis", "s3"]
    ports = {"postgres": "CT_PG_PORT", "redis": "CT_REDIS_PORT", "s3": "CT_S3_PORT"}
    status = services.run("status")
    assert status.returncode == 0, status.stderr
    table = status_lines(status.stdout)
    assert set(table) == set(ALL_PROCESSES)
    for name, var in ports.items():
        state, pid, address = table[name][:3]
        assert (state, address) == ("running", f"{HOST}:{services.ports[var]}")
        assert int(pid) == services.pid(name) and alive(int(pid))
    assert all(table[name][0] == "stopped" for name in set(ALL_PROCESSES) - set(ports))

    # What a user connects to: team.env (0600) points at the running services.
    env_file = services.dir / "team.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    env = services.env()
    assert env["CT_PROFILE"] == "team"
    assert env["CT_PG_PORT"] == str(services.ports["CT_PG_PORT"])
    assert {"dagster", "mlflow"} <= {
        row[0] for row in pg_rows(env, "SELECT datname FROM pg_database")
    }
    pg_rows(env, "CREATE TABLE kept (answer int); INSERT INTO kept VALUES (42)")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        pg_rows(env, "SELECT 1", password="wrong")
    assert redis.Redis.from_url(env["CT_CELERY_BROKER"]).ping() is True
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [env["CT_S3_BUCKET"]]
    s3.put_object(Bucket=env["CT_S3_BUCKET"], Key="lake/kept.txt", Body=b"still here")

    # A second `up` leaves the running services alone.
    pids = {name: services.pid(name) for name in ports}
    again = services.up("postgres", "redis", "s3")
    assert {name: int(fields[1]) for name, fields in status_lines(again.stdout).items()} == pids
    assert "already running" in again.stdout

    # Another port for a running service: `up` refuses, `status` still shows where it runs.
    old_port = services.ports["CT_REDIS_PORT"]
    services.ports["CT_REDIS_PORT"] = free_ports(1)[0]
    moved = services.run("up", "redis")
    assert moved.returncode == 1
    assert moved.stderr.splitlines() == [
        f"redis: runs on {HOST}:{old_port}, not on the "
        f"CT_REDIS_PORT={services.ports['CT_REDIS_PORT']} asked for: "
        "scripts/services.sh down redis first"
    ]
    assert status_lines(services.run("status").stdout)["redis"][2] == f"{HOST}:{old_port}"
    assert services.env() == env
    services.ports["CT_REDIS_PORT"] = old_port

    # The password and keys never show: not in the output, not on a command line.
    secrets = (env["CT_PG_PASSWORD"], env["AWS_SECRET_ACCESS_KEY"])
    for output in (up.stdout + up.stderr, again.stdout, status.stdout):
        assert not any(secret in output for secret in secrets)
    for pid in all_pids():
        assert not any(secret.encode() in cmdline(pid) for secret in secrets), pid

    down = services.run("down")
    assert down.returncode == 0, down.stderr
    assert not any(alive(pid) for pid in pids.values())
    assert not any(listening_addresses(services.ports[var]) for var in ports.values())
    assert not list((services.dir / "pids").glob("*.pid"))
    assert bystander.answers(), "down stopped a process it did not start"
    table = status_lines(services.run("status").stdout)
    assert all(fields[0] == "stopped" for fields in table.values())

    # The S3 store saved its objects as plain files (nothing to unpickle): bucket/quoted key.
    saved = services.dir / "s3" / "state" / env["CT_S3_BUCKET"] / "lake%2Fkept.txt"
    assert saved.read_bytes() == b"still here"

    # The data stays: the next `up` has the same password and keys, PostgreSQL's rows and the
    # S3 objects.
    services.up("postgres", "s3")
    assert services.env() == env
    assert pg_rows(env, "SELECT answer FROM kept") == [(42,)]
    kept = s3.get_object(Bucket=env["CT_S3_BUCKET"], Key="lake/kept.txt")
    assert kept["Body"].read() == b"still here"

    # Without its team.env, the data's password is lost: `up` says so instead of starting.
    assert services.run("down").returncode == 0
    env_file.unlink()
    lost = services.run("up")
    assert lost.returncode == 1
    assert lost.stderr.splitlines() == [
        f"postgres: {services.dir}/postgres has the password of a team.env that is gone: "
        f"restore {services.dir}/team.env, or move {services.dir}/postgres away to start afresh"
    ]
    assert not env_file.exists()


def test_up_refuses_a_port_taken_by_another_process(services, bystander):
    """The ports are checked before anything starts: PostgreSQL, first in line, stays down."""
    services.ports["CT_REDIS_PORT"] = bystander.port
    result = services.run("up", "postgres", "redis")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("redis: ")
    assert f"port {bystander.port} on 127.0.0.1" in lines[0]
    assert list((services.dir / "pids").iterdir()) == []
    assert not (services.dir / "postgres").exists()
    assert bystander.answers()


def test_a_service_that_exits_while_starting_is_one_line_and_leaves_nothing(services):
    services.extra_env["CT_CELERY_APP"] = "ct_no_such_module"
    result = services.run("up", "redis", "workers")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    match = re.fullmatch(r"(worker[12]): exited while starting \(broker (.*)\); see (.*)", lines[0])
    assert match, lines[0]
    assert match[2] == f"{HOST}:{services.ports['CT_REDIS_PORT']}"
    assert match[3] == str(services.dir / "logs" / f"{match[1]}.log")
    assert "ct_no_such_module" in Path(match[3]).read_text()
    assert services.worker_pids() == {}
    assert not [pid for pid in all_pids() if b"ct_no_such_module" in cmdline(pid)]
    assert services.pid("redis") is not None  # what did start stays up, for the next `up`


def test_a_service_needs_the_ones_it_uses(services):
    result = services.run("up", "mlflow")
    assert result.returncode == 1
    port = services.ports["CT_PG_PORT"]
    assert result.stderr.strip().splitlines() == [
        f"mlflow: needs postgres on {HOST}:{port}, which is not running "
        "(scripts/services.sh up postgres)"
    ]
    assert services.pid("mlflow") is None


def test_down_leaves_a_process_whose_pid_file_is_stale(services, bystander):
    """A pid file naming another program's process (the pid was reused) stops nothing."""
    (services.dir / "pids").mkdir()
    (services.dir / "pids" / "redis.pid").write_text(f"{bystander.proc.pid}\n")
    status = status_lines(services.run("status").stdout)
    assert status["redis"][:2] == ["stopped", "-"]
    down = services.run("down", "redis")
    assert down.returncode == 0, down.stderr
    assert bystander.answers()
    assert not (services.dir / "pids" / "redis.pid").exists()


def test_status_of_a_folder_that_never_ran(services):
    """Every process stopped with its address, exit 0, and nothing written."""
    result = services.run("status")
    assert result.returncode == 0
    table = status_lines(result.stdout)
    assert list(table) == list(ALL_PROCESSES)
    assert table["postgres"] == ["stopped", "-", f"{HOST}:{services.ports['CT_PG_PORT']}"]
    assert table["worker1"][:3] == ["stopped", "-", f"{HOST}:{services.ports['CT_REDIS_PORT']}"]
    assert list(services.dir.iterdir()) == []


def test_unknown_service_is_one_line():
    result = subprocess.run(
        ["bash", "scripts/services.sh", "status", "postgress"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "services: unknown service 'postgress' (choose among postgres redis s3 mlflow workers "
        "dagster)"
    ]


@pytest.mark.slow
@pytest.mark.xdist_group("team_services")  # the session's one set (tests/conftest.py)
def test_every_service_and_worker_runs_and_answers(team_services):
    status = team_services.run("status")
    assert status.returncode == 0, status.stderr
    table = status_lines(status.stdout)
    assert list(table) == list(ALL_PROCESSES)
    for fields in table.values():
        assert fields[0] == "running", status.stdout
        assert alive(int(fields[1]))
    assert team_services.worker_pids() == {
        "worker1": int(table["worker1"][1]),
        "worker2": int(table["worker2"][1]),
    }

    # A second `up` finds everything answering and leaves it as it is.
    again = team_services.up()
    lines = status_lines(again.stdout)
    assert {name: fields[1] for name, fields in lines.items()} == {
        name: fields[1] for name, fields in table.items()
    }
    assert again.stdout.count("(already running)") == len(ALL_PROCESSES)

    env = team_services.env()
    assert http_get(f"{env['CT_MLFLOW_TRACKING_URI']}/health")[0] == 200
    assert http_get(f"{env['CT_DAGSTER_URL']}/server_info")[0] == 200
    # Each worker answers Celery's ping through the broker, by its name.
    replies = Celery(broker=env["CT_CELERY_BROKER"]).control.ping(timeout=2.0)
    assert {node.split("@")[0] for reply in replies for node in reply} == {"worker1", "worker2"}
    # The webserver and the daemon share the PostgreSQL instance: the daemon's heartbeats show.
    query = "{ instance { daemonHealth { allDaemonStatuses { required healthy } } } }"
    request = urllib.request.Request(
        f"{env['CT_DAGSTER_URL']}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        daemons = json.load(response)["data"]["instance"]["daemonHealth"]["allDaemonStatuses"]
    assert daemons and all(d["healthy"] for d in daemons if d["required"])

    # Everything listens on 127.0.0.1 only, and no secret is in a log or on a command line.
    secrets = (env["CT_PG_PASSWORD"], env["AWS_SECRET_ACCESS_KEY"])
    for name in ALL_PROCESSES:
        assert not any(secret in team_services.log(name) for secret in secrets), name
    for pid in all_pids():  # the services, their children, and anything else
        assert not any(secret.encode() in cmdline(pid) for secret in secrets), pid
    for var in ("CT_PG_PORT", "CT_REDIS_PORT", "CT_S3_PORT", "CT_MLFLOW_PORT", "CT_DAGSTER_PORT"):
        assert listening_addresses(int(env[var])) == {HOST}, var
