"""A real S3-compatible server for the tests: moto's server mode, in a subprocess on 127.0.0.1.

Any test (or test folder) can use the fixtures; import them in a ``conftest.py``::

    from tests.s3server import s3_server, s3_uri  # noqa: F401

``s3_server`` (session) starts moto's server (``python scripts/s3_server.py -H 127.0.0.1 -p
<free port>``: moto with conditional creates made atomic as on S3), creates an IAM user
with an access key allowed everything and then switches authentication on, so wrong
credentials are refused as on real S3; the server is stopped at the end of the session (and
dies with the test process if that is killed).
``s3_uri`` (per test) sets the standard AWS environment variables for the test (endpoint,
region, that user's credentials), creates a fresh bucket and yields ``s3://<bucket>/lake``; the
environment is restored afterwards. ``S3Server.env()`` gives the same variables for a
subprocess (e.g. ``ct materialize`` run against an S3 lake).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REGION = "us-east-1"
_ENV_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ALLOW_HTTP",
    "AWS_PROFILE",
    "AWS_S3_ALLOW_UNSAFE_RENAME",
    "AWS_S3_LOCKING_PROVIDER",
    "AWS_EC2_METADATA_DISABLED",
)
_ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


# moto's server with object creation serialized as on S3 (see the script's docstring).
_SERVER = Path(__file__).resolve().parents[1] / "scripts" / "s3_server.py"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent():
    """A ``preexec_fn`` that makes the child get SIGTERM when the test process dies (Linux).

    Everything is looked up here, in the parent: the child, forked from a process that may run
    threads, only calls into libc before ``exec``.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def child() -> None:
        prctl(pr_set_pdeathsig, sigterm)

    return child


class S3Server:
    """A moto server subprocess on 127.0.0.1 with one authorized access key."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.access_key_id = ""
        self.secret_access_key = ""
        self._buckets = itertools.count()
        self._log = open(log_dir / "moto.log", "wb")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.process = subprocess.Popen(
            [sys.executable, str(_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent(),
        )
        try:
            self._wait_ready()
            self._enable_auth()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise RuntimeError(f"moto server on {self.endpoint} did not start in {timeout:.0f} s")

    def _enable_auth(self) -> None:
        """Create a user allowed everything, keep its key, then require authentication."""
        iam = self._client("iam", "bootstrap", "bootstrap")
        iam.create_user(UserName="ct-lake")
        iam.put_user_policy(UserName="ct-lake", PolicyName="all", PolicyDocument=_ALLOW_ALL)
        key = iam.create_access_key(UserName="ct-lake")["AccessKey"]
        self.access_key_id, self.secret_access_key = key["AccessKeyId"], key["SecretAccessKey"]
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form body would be parsed away
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

    def _client(self, service: str, key_id: str | None = None, secret: str | None = None):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=key_id or self.access_key_id,
            aws_secret_access_key=secret or self.secret_access_key,
        )

    def s3(self):
        """A boto3 S3 client with the server's valid credentials."""
        return self._client("s3")

    def env(self) -> dict[str, str]:
        """The AWS environment variables that point a process at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_ALLOW_HTTP": "true",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def new_bucket(self) -> str:
        name = f"ct-lake-{next(self._buckets)}-{uuid.uuid4().hex[:8]}"
        self.s3().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@contextlib.contextmanager
def aws_env(values: dict[str, str]) -> Iterator[None]:
    """Set exactly ``values`` among the AWS variables (others unset); restore on exit."""
    saved = {name: os.environ.get(name) for name in _ENV_VARS}
    try:
        for name in _ENV_VARS:
            os.environ.pop(name, None)
        os.environ.update(values)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """A moto S3 server for the whole session (stopped at the end)."""
    server = S3Server(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_uri(s3_server: S3Server, tmp_path) -> Iterator[str]:
    """``s3://<fresh bucket>/lake`` with the AWS environment set for this test (restored after).

    The lake's local file cache (``CT_LAKE_CACHE``) goes to the test's temporary folder.
    """
    bucket = s3_server.new_bucket()
    cache = os.environ.get("CT_LAKE_CACHE")
    os.environ["CT_LAKE_CACHE"] = str(tmp_path / "ct-lake-cache")
    try:
        with aws_env(s3_server.env()):
            yield f"s3://{bucket}/lake"
    finally:
        if cache is None:
            os.environ.pop("CT_LAKE_CACHE", None)
        else:
            os.environ["CT_LAKE_CACHE"] = cache
