"""Preflight of the team profile: are its services there before a run is launched?

:func:`check_services` reads the environment that ``scripts/services.sh up`` writes to
``$CT_SERVICES_DIR/team.env`` and asks each service one cheap question, each bounded by
``timeout_s``:

====================  ===========================================  ================================
service               variables                                    question
====================  ===========================================  ================================
PostgreSQL            ``CT_PG_HOST``, ``CT_PG_PORT``,              connect, ``SELECT 1`` on the
                      ``CT_PG_USER``, ``CT_PG_PASSWORD``,          database
                      ``CT_PG_DB``
Celery broker         ``CT_CELERY_BROKER`` (and                    Redis ``PING`` (another broker:
                      ``CT_CELERY_BACKEND`` when set)              a TCP connection)
S3                    ``CT_LAKE`` (its bucket), ``CT_S3_BUCKET``   ``HeadBucket`` of each bucket
                      when set, ``AWS_ENDPOINT_URL[_S3]``,
                      ``AWS_REGION``, the AWS keys
MLflow                ``CT_MLFLOW_TRACKING_URI``                   ``GET /health`` (a sqlite or
                                                                   other local store: nothing to
                                                                   reach, skipped)
====================  ===========================================  ================================

It returns one line per service that answered and raises :class:`ServiceUnreachable` for the
first one that did not (or a variable that is not set), one line naming the service and its
address. No message carries a password or secret key: addresses are printed as host and port,
URIs without their user information, and every message is scrubbed of the secrets the
environment holds.
"""

from __future__ import annotations

import functools
import json
import math
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping

from ct_assets.lib.profiles import BACKEND_ENV, BROKER_ENV
from ct_lake.config import (
    DAGSTER_URL_ENV,
    LAKE_ENV,
    TRACKING_URI_ENV,
    ConfigError,
    check_tracking_uri,
)
from ct_lake.storage import (
    DEFAULT_REGION,
    ENDPOINT_VARS,
    REGION_VARS,
    SECRET_VARS,
    LakeError,
    Location,
)

PG_HOST_ENV = "CT_PG_HOST"
PG_PORT_ENV = "CT_PG_PORT"
PG_USER_ENV = "CT_PG_USER"
PG_PASSWORD_ENV = "CT_PG_PASSWORD"
PG_DB_ENV = "CT_PG_DB"
S3_BUCKET_ENV = "CT_S3_BUCKET"  # Dagster's compute logs (deploy/team/dagster.yaml)

# What the team profile cannot run without; the rest is optional (AWS_ENDPOINT_URL unset: AWS).
REQUIRED = (
    PG_HOST_ENV,
    PG_PORT_ENV,
    PG_USER_ENV,
    PG_PASSWORD_ENV,
    PG_DB_ENV,
    BROKER_ENV,
    LAKE_ENV,
    TRACKING_URI_ENV,
)
HINT = "(is `scripts/services.sh up` running?)"
ENV_HINT = "`scripts/services.sh up` writes them to .services/team.env: source it"
# Marks of a host name that does not resolve, in the clients' lowercased messages.
_UNKNOWN_HOST = ("name or service not known", "failed to resolve", "could not translate host")


class ServiceUnreachable(ConfigError):
    """A service of the profile cannot be used; ``str`` is one line naming it and its address,
    never a password."""


def check_services(env: Mapping[str, str] | None = None, *, timeout_s: float = 3.0) -> list[str]:
    """Check PostgreSQL, the Celery broker, S3, MLflow and the Dagster webserver, in that
    order.

    Args:
        env: the variables to read (default ``os.environ``).
        timeout_s: the longest wait for each question (PostgreSQL: at least 2 s, libpq's
            smallest connect timeout).

    Returns:
        One line per service, e.g. ``PostgreSQL at 127.0.0.1:54329: database dagster as ct, ok``.

    Raises:
        ServiceUnreachable: the first service that does not answer as it should, or the
            variables that are not set.
    """
    env = os.environ if env is None else env
    _need(
        env, *REQUIRED, DAGSTER_URL_ENV
    )  # every missing variable in one line, before any service is asked
    checks: list[Callable[[Mapping[str, str], float], list[str]]] = [
        check_postgres,
        check_broker,
        check_s3,
        check_mlflow,
        check_dagster,
    ]
    return [line for check in checks for line in check(env, timeout_s)]


def _one_line(service: str):
    """Decorate the check of ``service``: every message scrubbed of the environment's secrets
    and folded to one line, any unexpected error turned into such a line too (a preflight
    prints no traceback)."""

    def wrap(check):
        @functools.wraps(check)
        def run(env: Mapping[str, str], timeout_s: float = 3.0) -> list[str]:
            try:
                return check(env, timeout_s)
            except ServiceUnreachable as err:
                message = str(err)
            except Exception as err:  # noqa: BLE001 - reported as one line, like the others
                message = f"{service}: {type(err).__name__}: {err}"
            raise ServiceUnreachable(_scrub(" ".join(message.split()), env)) from None

        return run

    return wrap


def _need(env: Mapping[str, str], *names: str) -> None:
    """Raise ServiceUnreachable naming every variable of ``names`` unset or empty in ``env``."""
    missing = [name for name in names if not env.get(name, "").strip()]
    if missing:
        raise ServiceUnreachable(f"not set: {', '.join(missing)} ({ENV_HINT})")


def _scrub(text: str, env: Mapping[str, str]) -> str:
    secrets = [env.get(name, "") for name in (PG_PASSWORD_ENV, *SECRET_VARS)]
    for name in (BROKER_ENV, BACKEND_ENV, TRACKING_URI_ENV):
        secrets.append(urllib.parse.urlsplit(env.get(name, "")).password or "")
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def _port(env: Mapping[str, str], name: str) -> int:
    value = env[name].strip()
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ServiceUnreachable(f"{name}={value!r} is not a port number")
    return int(value)


def _without_password(uri: str) -> str:
    """``uri`` without user information (``scheme://user:pw@host`` -> ``scheme://host``)."""
    parts = urllib.parse.urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


# -- PostgreSQL ----------------------------------------------------------------------------


@_one_line("PostgreSQL")
def check_postgres(env: Mapping[str, str], timeout_s: float = 3.0) -> list[str]:
    """PostgreSQL: connect as ``$CT_PG_USER`` to ``$CT_PG_DB`` and run ``SELECT 1``."""
    _need(env, PG_HOST_ENV, PG_PORT_ENV, PG_USER_ENV, PG_PASSWORD_ENV, PG_DB_ENV)
    import psycopg2

    host, port = env[PG_HOST_ENV].strip(), _port(env, PG_PORT_ENV)
    user, database = env[PG_USER_ENV].strip(), env[PG_DB_ENV].strip()
    where = f"PostgreSQL at {host}:{port}"
    try:
        connection = psycopg2.connect(
            host=host,
            port=port,
            user=user,
            password=env[PG_PASSWORD_ENV],
            dbname=database,
            connect_timeout=max(2, math.ceil(timeout_s)),
            options=f"-c statement_timeout={int(timeout_s * 1000)}",
        )
    except psycopg2.OperationalError as err:
        raise ServiceUnreachable(_postgres_error(where, user, database, str(err))) from None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()
    return [f"{where}: database {database} as {user}, ok"]


def _postgres_error(where: str, user: str, database: str, text: str) -> str:
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return f"{where} refused user {user}: password authentication failed"
    if f'role "{user}" does not exist' in text:
        return f"{where} refused user {user}: no such role"
    if f'database "{database}" does not exist' in text:
        return f"{where} has no database {database!r} ({PG_DB_ENV})"
    if "connection refused" in lowered:
        return f"{where} is unreachable: connection refused {HINT}"
    if "timeout expired" in lowered or "timed out" in lowered:
        return f"{where} is unreachable: no answer {HINT}"
    if any(mark in lowered for mark in _UNKNOWN_HOST):
        return f"{where} is unreachable: unknown host"
    detail = next((line.strip() for line in text.splitlines() if line.strip()), "error")
    return f"{where} is unreachable: {detail.removeprefix('FATAL:').strip()}"


# -- Celery broker -------------------------------------------------------------------------


@_one_line("Celery broker")
def check_broker(env: Mapping[str, str], timeout_s: float = 3.0) -> list[str]:
    """Celery broker: Redis ``PING`` on ``$CT_CELERY_BROKER`` (and ``$CT_CELERY_BACKEND``)."""
    _need(env, BROKER_ENV)
    lines = [_ping("Celery broker", BROKER_ENV, env[BROKER_ENV].strip(), timeout_s)]
    backend = env.get(BACKEND_ENV, "").strip()
    if backend:
        lines.append(_ping("Celery result backend", BACKEND_ENV, backend, timeout_s))
    return lines


def _ping(service: str, name: str, url: str, timeout_s: float) -> str:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host:
        raise ServiceUnreachable(f"{name}: {_without_password(url)!r} is not a broker URL")
    if scheme not in ("redis", "rediss"):
        # another transport (amqp...): that something listens is all a preflight can say
        where = f"{service} at {host}:{port}"
        try:
            socket.create_connection((host, port or 5672), timeout=timeout_s).close()
        except OSError as err:
            raise ServiceUnreachable(f"{where} is unreachable: {_reason(err)} {HINT}") from None
        return f"{where} ({scheme}): accepts connections"
    import redis

    database = parts.path.strip("/") or "0"
    where = f"{service} (Redis) at {host}:{port or 6379}/{database}"
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, retry_on_timeout=False
    )
    refused = (
        f"{where} refused the password of {name}"
        if parts.password
        else f"{where} requires a password, and {name} gives none"
    )
    try:
        client.ping()
    except redis.exceptions.AuthenticationError:
        raise ServiceUnreachable(refused) from None
    except redis.exceptions.ResponseError as err:
        if "NOAUTH" in str(err) or "WRONGPASS" in str(err):
            raise ServiceUnreachable(refused) from None
        raise ServiceUnreachable(f"{where} answered an error: {err}") from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as err:
        raise ServiceUnreachable(f"{where} is unreachable: {_reason(err)} {HINT}") from None
    finally:
        client.close()
    return f"{where}: ok"


def _reason(err: BaseException) -> str:
    text = str(err).lower()
    if isinstance(err, ConnectionRefusedError) or "refused" in text:
        return "connection refused"
    if isinstance(err, TimeoutError) or "timed out" in text or "timeout" in text:
        return "no answer"
    if any(mark in text for mark in _UNKNOWN_HOST):
        return "unknown host"
    return str(err) or type(err).__name__


# -- S3 ------------------------------------------------------------------------------------


@_one_line("S3")
def check_s3(env: Mapping[str, str], timeout_s: float = 3.0) -> list[str]:
    """S3: ``HeadBucket`` of the bucket of ``$CT_LAKE`` (and ``$CT_S3_BUCKET``)."""
    _need(env, LAKE_ENV)
    try:
        location = Location.parse(env[LAKE_ENV].strip())
    except LakeError as err:
        raise ServiceUnreachable(f"{LAKE_ENV}: {err}") from None
    buckets = [] if location.is_local else [location.bucket]
    extra = env.get(S3_BUCKET_ENV, "").strip()
    if extra and extra not in buckets:
        buckets.append(extra)
    if not buckets:
        return [f"lake: the local folder {location.uri} (no S3 to reach)"]
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    endpoint = next((env[n].strip() for n in ENDPOINT_VARS if env.get(n, "").strip()), None)
    region = next((env[n].strip() for n in REGION_VARS if env.get(n, "").strip()), DEFAULT_REGION)
    where = f"S3 at {_without_password(endpoint) if endpoint else f'AWS ({region})'}"
    client = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        region_name=region,
    ).client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"total_max_attempts": 1},
        ),
    )
    for bucket in buckets:
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise ServiceUnreachable(f"{where} has no bucket {bucket!r}") from None
            if code in ("403", "AccessDenied", "Forbidden", "InvalidAccessKeyId"):
                raise ServiceUnreachable(
                    f"{where} refused access to bucket {bucket!r} (HTTP 403): check "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                ) from None
            raise ServiceUnreachable(f"{where}: bucket {bucket!r}: error {code}") from None
        except BotoCoreError as err:
            cause = getattr(err, "kwargs", {}).get("error") or err  # the socket's error
            reason = "no answer" if "timeout" in type(err).__name__.lower() else _reason(cause)
            raise ServiceUnreachable(f"{where} is unreachable: {reason} {HINT}") from None
    return [f"{where}: bucket {', '.join(buckets)}, ok"]


# -- MLflow --------------------------------------------------------------------------------


@_one_line("MLflow")
def check_mlflow(env: Mapping[str, str], timeout_s: float = 3.0) -> list[str]:
    """MLflow: ``GET /health`` of the server ``$CT_MLFLOW_TRACKING_URI`` names."""
    _need(env, TRACKING_URI_ENV)
    uri = env[TRACKING_URI_ENV].strip()
    try:
        check_tracking_uri(uri)
    except ValueError as err:
        raise ServiceUnreachable(f"{TRACKING_URI_ENV}: {err}") from None
    shown = _without_password(uri)
    if urllib.parse.urlsplit(uri).scheme.lower() not in ("http", "https"):
        return [f"MLflow: {shown} is a local store (no server to reach)"]
    where = f"MLflow at {shown}"
    parts = urllib.parse.urlsplit(uri)
    health = urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc.rpartition("@")[2], parts.path.rstrip("/") + "/health", "", "")
    )
    try:
        with urllib.request.urlopen(health, timeout=timeout_s) as answer:
            body = answer.read(64).decode(errors="replace").strip()
    except urllib.error.HTTPError as err:
        raise ServiceUnreachable(
            f"{where} answered HTTP {err.code} on /health (is it an MLflow server?)"
        ) from None
    except urllib.error.URLError as err:
        cause = err.reason if isinstance(err.reason, BaseException) else err
        raise ServiceUnreachable(f"{where} is unreachable: {_reason(cause)} {HINT}") from None
    except OSError as err:  # a timeout while reading the answer
        raise ServiceUnreachable(f"{where} is unreachable: {_reason(err)} {HINT}") from None
    if body != "OK":
        raise ServiceUnreachable(f"{where} answered {body[:40]!r} on /health, not OK")
    return [f"{where}: ok"]


@_one_line("Dagster webserver")
def check_dagster(env: Mapping[str, str], timeout_s: float = 3.0) -> list[str]:
    """The Dagster webserver ``$CT_DAGSTER_URL``: ``GET /server_info`` names its version."""
    _need(env, DAGSTER_URL_ENV)
    url = env[DAGSTER_URL_ENV].strip().rstrip("/")
    where = f"Dagster webserver at {_without_password(url)}"
    try:
        with urllib.request.urlopen(url + "/server_info", timeout=timeout_s) as answer:
            info = json.loads(answer.read(4096).decode(errors="replace"))
    except urllib.error.HTTPError as err:
        raise ServiceUnreachable(f"{where} answered HTTP {err.code} on /server_info") from None
    except urllib.error.URLError as err:
        cause = err.reason if isinstance(err.reason, BaseException) else err
        raise ServiceUnreachable(f"{where} is unreachable: {_reason(cause)} {HINT}") from None
    except (OSError, ValueError) as err:
        raise ServiceUnreachable(f"{where} is unreachable: {_reason(err)} {HINT}") from None
    version = info.get("dagster_version") if isinstance(info, dict) else None
    if not version:
        raise ServiceUnreachable(f"{where} is not a Dagster webserver (no version on /server_info)")
    return [f"{where}: Dagster {version}, ok"]
