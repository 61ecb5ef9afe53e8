"""Preflight of the team profile: every service that is down is one line naming it and its
address and no password; real servers (Redis, moto's S3, PostgreSQL) pass."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ct_assets.lib.preflight import (
    HINT,
    REQUIRED,
    ServiceUnreachable,
    check_broker,
    check_dagster,
    check_mlflow,
    check_postgres,
    check_s3,
    check_services,
)
from ct_lake.config import ConfigError
from tests.s3server import S3Server, free_port, s3_server  # noqa: F401

# Distinctive, so that finding it in a message cannot be a coincidence.
PASSWORD = "pw-Zq81xKr3-never-print"
SECRET_KEY = "sk-Yt55pLm0-never-print"


def team_env(**values: str) -> dict[str, str]:
    """The variables ``scripts/services.sh up`` writes, every service on a closed port."""
    return {
        "CT_PG_HOST": "127.0.0.1",
        "CT_PG_PORT": str(free_port()),
        "CT_PG_USER": "ct",
        "CT_PG_PASSWORD": PASSWORD,
        "CT_PG_DB": "dagster",
        "CT_CELERY_BROKER": f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0",
        "CT_LAKE": "s3://ct-lake/lake",
        "CT_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIATESTKEY",
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "CT_DAGSTER_URL": f"http://127.0.0.1:{free_port()}",
    } | values


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1].split("/")[0]


def _refused(check, env: dict[str, str]) -> str:
    start = time.monotonic()
    with pytest.raises(ServiceUnreachable) as info:
        check(env, timeout_s=2)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "\n" not in message and PASSWORD not in message and SECRET_KEY not in message
    return message


# -- every service down ----------------------------------------------------------------------


def test_postgresql_down(tmp_path):
    env = team_env()
    message = _refused(check_postgres, env)
    port = env["CT_PG_PORT"]
    assert message == f"PostgreSQL at 127.0.0.1:{port} is unreachable: connection refused {HINT}"


def test_the_broker_down_is_named_without_its_password():
    env = team_env()
    port = _port(env["CT_CELERY_BROKER"])
    assert _refused(check_broker, env) == (
        f"Celery broker (Redis) at 127.0.0.1:{port}/0 is unreachable: connection refused {HINT}"
    )


def test_another_broker_transport_is_checked_for_a_listener():
    port = free_port()
    env = team_env(CT_CELERY_BROKER=f"amqp://ct:{PASSWORD}@127.0.0.1:{port}//")
    assert _refused(check_broker, env) == (
        f"Celery broker at 127.0.0.1:{port} is unreachable: connection refused {HINT}"
    )
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        env = team_env(CT_CELERY_BROKER=f"amqp://ct:{PASSWORD}@127.0.0.1:{port}//")
        assert check_broker(env) == [
            f"Celery broker at 127.0.0.1:{port} (amqp): accepts connections"
        ]


def test_s3_down():
    env = team_env()
    assert _refused(check_s3, env) == (
        f"S3 at {env['AWS_ENDPOINT_URL']} is unreachable: connection refused {HINT}"
    )


def test_mlflow_down_and_local_stores_skipped(tmp_path):
    env = team_env()
    uri = env["CT_MLFLOW_TRACKING_URI"]
    assert _refused(check_mlflow, env) == (
        f"MLflow at {uri} is unreachable: connection refused {HINT}"
    )
    # a password in the URI is neither printed nor sent in the clear in the message
    port = _port(uri)
    with_user = team_env(CT_MLFLOW_TRACKING_URI=f"http://ct:{PASSWORD}@127.0.0.1:{port}")
    assert f"MLflow at http://127.0.0.1:{port} is unreachable" in _refused(check_mlflow, with_user)
    local = team_env(CT_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    assert check_mlflow(local) == [
        f"MLflow: sqlite:///{tmp_path}/mlflow.db is a local store (no server to reach)"
    ]


@pytest.mark.parametrize("check", [check_postgres, check_broker, check_s3, check_mlflow])
def test_a_service_that_never_answers_is_given_up_on_in_time(check):
    """A port that accepts connections and never answers (a hung server, a wrong service)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        env = team_env(
            CT_PG_PORT=str(port),
            CT_CELERY_BROKER=f"redis://127.0.0.1:{port}/0",
            AWS_ENDPOINT_URL=url,
            CT_MLFLOW_TRACKING_URI=url,
        )
        start = time.monotonic()
        with pytest.raises(
            ServiceUnreachable, match=f"127.0.0.1:{port}.* is unreachable: no answer"
        ):
            check(env, timeout_s=1)
        assert time.monotonic() - start < 4  # PostgreSQL: libpq waits 2 s at least


def test_check_services_stops_at_the_first_service_down():
    env = team_env()
    message = _refused(check_services, env)
    assert message.startswith(f"PostgreSQL at 127.0.0.1:{env['CT_PG_PORT']} is unreachable")
    assert isinstance(ServiceUnreachable(message), ConfigError)  # the CLI prints one line


def test_missing_variables_are_named_in_one_line():
    env = team_env()
    del env["CT_PG_PASSWORD"], env["CT_LAKE"]
    message = _refused(check_services, env | {"CT_CELERY_BROKER": "  "})
    assert message.startswith("not set: CT_PG_PASSWORD, CT_CELERY_BROKER, CT_LAKE (")
    assert "scripts/services.sh up" in message
    assert _refused(check_services, {}).startswith("not set: " + ", ".join(REQUIRED))
    assert _refused(check_s3, {}).startswith("not set: CT_LAKE (")
    assert _refused(check_postgres, {"CT_PG_HOST": "h"}).startswith(
        "not set: CT_PG_PORT, CT_PG_USER, CT_PG_PASSWORD, CT_PG_DB ("
    )


@pytest.mark.parametrize(
    "name,value,line",
    [
        ("CT_PG_PORT", "54x", "CT_PG_PORT='54x' is not a port number"),
        (
            "CT_LAKE",
            "gs://bucket/lake",
            "CT_LAKE: lake 'gs://bucket/lake': unsupported scheme 'gs' "
            "(use a local path or s3://bucket/prefix)",
        ),
        (
            "CT_MLFLOW_TRACKING_URI",
            "htp://127.0.0.1:5000",
            "CT_MLFLOW_TRACKING_URI: 'htp://127.0.0.1:5000': unknown scheme 'htp' (use "
            "sqlite:///path, http://host:port, a database URI or a local folder)",
        ),
        ("CT_CELERY_BROKER", "redis://", "CT_CELERY_BROKER: 'redis://' is not a broker URL"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name, value, line):
    env = team_env(**{name: value})
    check = {
        "CT_PG_PORT": check_postgres,
        "CT_LAKE": check_s3,
        "CT_MLFLOW_TRACKING_URI": check_mlflow,
        "CT_CELERY_BROKER": check_broker,
    }[name]
    assert _refused(check, env) == line


def test_a_local_lake_needs_no_s3(tmp_path):
    assert check_s3(team_env(CT_LAKE=str(tmp_path / "lake"))) == [
        f"lake: the local folder {tmp_path / 'lake'} (no S3 to reach)"
    ]


# -- Redis -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    """A ``redis-server`` on 127.0.0.1 that requires ``PASSWORD``."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: run scripts/ensure_redis.sh")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    args = [server, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
    args += ["--save", "", "--appendonly", "no", "--requirepass", PASSWORD]
    with open(folder / "redis.log", "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while check_broker_quietly(port) is not None:
            assert process.poll() is None, (folder / "redis.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "redis-server did not start in 20 s"
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def check_broker_quietly(port: int) -> str | None:
    """None once the server answers, else the error line."""
    try:
        check_broker(team_env(CT_CELERY_BROKER=f"redis://:{PASSWORD}@127.0.0.1:{port}/0"))
    except ServiceUnreachable as err:
        return str(err)
    return None


def test_a_running_redis_broker_and_backend_answer(redis_port):
    env = team_env(
        CT_CELERY_BROKER=f"redis://:{PASSWORD}@127.0.0.1:{redis_port}/0",
        CT_CELERY_BACKEND=f"redis://:{PASSWORD}@127.0.0.1:{redis_port}/1",
    )
    lines = check_broker(env)
    assert lines == [
        f"Celery broker (Redis) at 127.0.0.1:{redis_port}/0: ok",
        f"Celery result backend (Redis) at 127.0.0.1:{redis_port}/1: ok",
    ]
    assert not any(PASSWORD in line for line in lines)


def test_a_result_backend_down_behind_a_running_broker(redis_port):
    port = free_port()
    env = team_env(
        CT_CELERY_BROKER=f"redis://:{PASSWORD}@127.0.0.1:{redis_port}/0",
        CT_CELERY_BACKEND=f"redis://:{PASSWORD}@127.0.0.1:{port}/1",
    )
    assert _refused(check_broker, env) == (
        f"Celery result backend (Redis) at 127.0.0.1:{port}/1 is unreachable: "
        f"connection refused {HINT}"
    )


def test_redis_refusing_the_password_is_named_without_it(redis_port):
    wrong = "wrong-Rr19-password"
    env = team_env(CT_CELERY_BROKER=f"redis://:{wrong}@127.0.0.1:{redis_port}/0")
    message = _refused(check_broker, env)
    where = f"Celery broker (Redis) at 127.0.0.1:{redis_port}/0"
    assert message == f"{where} refused the password of CT_CELERY_BROKER"
    assert wrong not in message
    env = team_env(CT_CELERY_BROKER=f"redis://127.0.0.1:{redis_port}/0")
    assert _refused(check_broker, env) == (
        f"{where} requires a password, and CT_CELERY_BROKER gives none"
    )


# -- S3 ----------------------------------------------------------------------------------------


def _s3_env(server: S3Server, **values: str) -> dict[str, str]:
    return team_env(**server.env()) | values


def test_the_lake_bucket_on_a_running_s3_server(s3_server):  # noqa: F811
    bucket = s3_server.new_bucket()
    logs = s3_server.new_bucket()
    env = _s3_env(s3_server, CT_LAKE=f"s3://{bucket}/lake", CT_S3_BUCKET=logs)
    assert check_s3(env) == [f"S3 at {s3_server.endpoint}: bucket {bucket}, {logs}, ok"]


def test_a_missing_bucket_is_its_own_message(s3_server):  # noqa: F811
    env = _s3_env(s3_server, CT_LAKE="s3://no-such-bucket-here/lake")
    assert _refused(check_s3, env) == (
        f"S3 at {s3_server.endpoint} has no bucket 'no-such-bucket-here'"
    )
    bucket = s3_server.new_bucket()
    env = _s3_env(s3_server, CT_LAKE=f"s3://{bucket}/lake", CT_S3_BUCKET="no-logs-bucket")
    assert _refused(check_s3, env).endswith("has no bucket 'no-logs-bucket'")


def test_refused_s3_credentials_never_show_the_secret(s3_server):  # noqa: F811
    bucket = s3_server.new_bucket()
    env = _s3_env(s3_server, CT_LAKE=f"s3://{bucket}/lake", AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    assert _refused(check_s3, env) == (
        f"S3 at {s3_server.endpoint} refused access to bucket {bucket!r} (HTTP 403): check "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )


@pytest.mark.slow
def test_a_running_mlflow_server_answers(mlflow_server):
    env = team_env(CT_MLFLOW_TRACKING_URI=mlflow_server + "/")
    assert check_mlflow(env) == [f"MLflow at {mlflow_server}/: ok"]


def test_a_server_that_is_not_mlflow(s3_server):  # noqa: F811
    """Something answers HTTP on the port, but not MLflow's health endpoint."""
    env = team_env(CT_MLFLOW_TRACKING_URI=s3_server.endpoint)
    message = _refused(check_mlflow, env)
    assert message.startswith(f"MLflow at {s3_server.endpoint} answered ")
    assert "/health" in message


# -- PostgreSQL --------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(initdb).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="module")
def postgres_port():
    """A PostgreSQL server on 127.0.0.1 with user ``ct`` (password ``PASSWORD``, scram) and a
    database ``dagster``. As root, it runs as the ``postgres`` user (the server refuses root)."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL's server (initdb) is not installed: apt-get install postgresql")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # not pytest's tmp_path: its folders are private to root, and the server runs as postgres
    folder = Path(tempfile.mkdtemp(prefix="ct-preflight-pg-"))
    folder.chmod(0o755)
    data = folder / "data"
    (folder / "pw").write_text(PASSWORD + "\n")
    if as_user:
        shutil.chown(folder, "postgres")
        shutil.chown(folder / "pw", "postgres")
    port = free_port()
    run = dict(check=True, capture_output=True, timeout=60)
    try:
        subprocess.run(
            [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "ct", "-E", "UTF8"]
            + ["--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={folder / 'pw'}"]
            + ["--no-sync"],
            **run,
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options]
            + ["-l", str(folder / "log"), "-w", "start"],
            **run,
        )
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1", port=port, user="ct", password=PASSWORD, dbname="postgres"
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE dagster")
        connection.close()
        yield port
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=30,
            )
        shutil.rmtree(folder, ignore_errors=True)


def test_a_running_postgresql_answers(postgres_port):
    env = team_env(CT_PG_PORT=str(postgres_port))
    assert check_postgres(env) == [
        f"PostgreSQL at 127.0.0.1:{postgres_port}: database dagster as ct, ok"
    ]


def test_a_wrong_postgresql_password_is_named_without_either_password(postgres_port):
    wrong = "wrong-Hh27-password"
    env = team_env(CT_PG_PORT=str(postgres_port), CT_PG_PASSWORD=wrong)
    message = _refused(check_postgres, env)
    assert message == (
        f"PostgreSQL at 127.0.0.1:{postgres_port} refused user ct: password authentication failed"
    )
    assert wrong not in message


def test_a_missing_postgresql_database(postgres_port):
    env = team_env(CT_PG_PORT=str(postgres_port), CT_PG_DB="nodb")
    assert _refused(check_postgres, env) == (
        f"PostgreSQL at 127.0.0.1:{postgres_port} has no database 'nodb' (CT_PG_DB)"
    )


def test_every_service_up_gives_one_line_each(postgres_port, redis_port, s3_server, tmp_path):  # noqa: F811
    bucket = s3_server.new_bucket()
    env = _s3_env(
        s3_server,
        CT_PG_PORT=str(postgres_port),
        CT_CELERY_BROKER=f"redis://:{PASSWORD}@127.0.0.1:{redis_port}/0",
        CT_LAKE=f"s3://{bucket}/lake",
        CT_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db",
    )
    checks = (check_postgres, check_broker, check_s3, check_mlflow)
    lines = [line for check in checks for line in check(env)]
    assert [line.split(" ", 1)[0] for line in lines] == ["PostgreSQL", "Celery", "S3", "MLflow:"]
    assert all(PASSWORD not in line for line in lines)
    # check_services asks them all, then the webserver (down here: the end-to-end test of the
    # team profile has one running)
    with pytest.raises(ServiceUnreachable, match="^Dagster webserver at http://127.0.0.1:"):
        check_services(env)


def test_dagster_webserver_down_or_not_dagster(s3_server):  # noqa: F811
    env = team_env()
    assert _refused(check_dagster, env) == (
        f"Dagster webserver at {env['CT_DAGSTER_URL']} is unreachable: connection refused {HINT}"
    )
    other = team_env(CT_DAGSTER_URL=s3_server.endpoint)
    assert _refused(check_dagster, other).startswith(f"Dagster webserver at {s3_server.endpoint}")
