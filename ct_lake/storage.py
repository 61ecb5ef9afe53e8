"""Where the lake lives: a local folder or an S3-compatible bucket, and how to reach it.

``lake:`` in the configuration is either a local path (relative to the configuration file) or
``s3://bucket/prefix``. Everything else about S3 comes from the standard AWS environment
variables, never from the configuration file, so no secret is ever written next to the data:

====================================  ==================================================
``AWS_ENDPOINT_URL_S3``,              the S3-compatible endpoint (MinIO, R2, moto...);
``AWS_ENDPOINT_URL``                  unset means AWS itself
``AWS_REGION``, ``AWS_DEFAULT_REGION``  the region (``us-east-1`` when unset)
``AWS_ACCESS_KEY_ID``,                the credentials (unset: the AWS SDK's own chain,
``AWS_SECRET_ACCESS_KEY``,            e.g. ``~/.aws/credentials``)
``AWS_SESSION_TOKEN``
``AWS_ALLOW_HTTP``                    ``true`` to allow a plain-http endpoint (implied by an
                                      ``http://`` endpoint)
====================================  ==================================================

Secrets stay out of every message: ``repr(Location)`` and :meth:`Location.describe` show the
URI and the endpoint only, and :class:`LakeError` messages built here are scrubbed of the
secret key and session token. Only :meth:`Location.storage_options` and
:meth:`Location.filesystem` carry the credentials, to hand them to deltalake and pyarrow; never
log what they return.

Concurrent commits. A Delta commit is "create ``_delta_log/<version>.json`` if absent": two
writers that race for the same version must not both succeed, or one commit is silently lost.
On a local disk the filesystem gives that. On S3, deltalake 1.6 (delta-rs) writes the log entry
with the object store's conditional put, ``PUT`` with ``If-None-Match: *``, which AWS S3 (since
2024), MinIO, Cloudflare R2 and moto honour; the loser of a race gets ``412``, re-reads the log
and commits on top. :meth:`Location.storage_options` asks for it explicitly
(``conditional_put=etag``, also object_store's default). There is no unsafe fallback: with
conditional put disabled, deltalake 1.6 refuses to commit on S3 at all. A store that accepts
the header but ignores it would not be safe for concurrent writers: use one writer at a time
there, or delta-rs' DynamoDB locking provider (``AWS_S3_LOCKING_PROVIDER=dynamodb``, read by
deltalake from the environment). ``tests/lake/test_s3_concurrency.py`` checks it with several
processes committing to one table on a real S3-compatible server.

Cost of S3, measured against the moto server on 127.0.0.1 (2 shared cores): a small
``Lake.write_table`` (10 rows, one Delta commit) takes about 70 ms against 6 ms on a local
disk, ``read_table`` 45 ms against 2 ms, ``has_partition`` 19 ms (one listing of the table's
log) against 1 ms; files are in :mod:`ct_lake.files`. A real endpoint adds its round trips.

Failures are bounded (see the constants below): an endpoint that refuses connections or
cannot be routed to, or refused credentials, give one :class:`LakeError` (see
:meth:`Location.error`) in a few seconds; an endpoint that accepts connections and then never
answers, in about 20 s; not the minutes of the clients' defaults.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

S3_SCHEME = "s3://"
DEFAULT_REGION = "us-east-1"

ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

# Bounded network behaviour. deltalake (object_store): a refused or unroutable endpoint fails
# after at most CONNECT_TIMEOUT_S per attempt, retried while RETRY_TIMEOUT_S lasts; an endpoint
# that accepts connections but never answers fails after REQUEST_TIMEOUT_S (a whole request, so
# it also bounds one request's transfer: Delta data files and log entries are small, and large
# writes go in multipart chunks). pyarrow (lake files): the same connect timeout, an idle
# timeout of IDLE_TIMEOUT_S (curl's low-speed time: a slow but moving transfer is not cut) and
# PYARROW_ATTEMPTS attempts.
CONNECT_TIMEOUT_S = 3
REQUEST_TIMEOUT_S = 20
MAX_RETRIES = 2
RETRY_TIMEOUT_S = 15
IDLE_TIMEOUT_S = 10
PYARROW_ATTEMPTS = 2

# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TRUE = {"1", "true", "yes", "on"}

# Marks of storage errors in client messages, lowercase without spaces, '_' or '-'.
_REFUSED = (
    "invalidaccesskeyid",
    "signaturedoesnotmatch",
    "invalidclienttokenid",
    "invalidtoken",
    "expiredtoken",
    "accessdenied",
    "forbidden",
    "unauthorized",
    "credentials",
    "lackedthenecessaryprivileges",
)
_UNREACHABLE = (
    "connectionrefused",
    "connecterror",
    "errorsendingrequest",
    "dnserror",
    "failedtolookup",
    "couldnotresolve",
    "couldnotconnect",
    "couldn'tconnect",
    "networkconnection",
    "timedout",
    "timeout",
    "unreachable",
    "connectionreset",
    "tcpconnect",
    "curlcode:7,",
    "curlcode:28,",
)


class LakeError(ValueError):
    """A lake mistake the user can fix: a bad URI, an unreachable endpoint, refused credentials.

    The message names the URI and endpoint and never contains a secret.
    """


class DamagedLog(LakeError):
    """A Delta table's log cannot be read (a log entry or checkpoint is not what Delta Lake
    wrote): the table cannot be read, the lake's other tables can (``ct lake check``)."""


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def scrub(text: str) -> str:
    """``text`` with the secret key and session token of the environment replaced by ``***``."""
    for name in SECRET_VARS:
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _check_part(part: str, what: str) -> str:
    if (
        not part
        or part in (".", "..")
        or "\\" in part
        or "\x00" in part
        or part.startswith("/")
        or any(piece in ("", ".", "..") for piece in part.split("/"))
    ):
        raise LakeError(f"bad {what} {part!r}: use plain relative names, no '..' or '/'-prefix")
    return part


@dataclass(frozen=True)
class Location:
    """A lake root: an absolute local posix path, or ``s3://bucket/prefix`` (no trailing slash).

    Build it with :meth:`parse`. ``repr`` shows the URI and (S3) the endpoint, no credential.
    """

    uri: str

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def parse(cls, root: str | Path | Location, base: Path | None = None) -> Location:
        """The location of ``root``: ``s3://bucket[/prefix]`` or a local path.

        A relative local path is resolved against ``base`` (the configuration file's folder),
        else against the working directory. Raises :class:`LakeError` for a malformed S3 URI or
        an unsupported scheme.
        """
        if isinstance(root, Location):
            return root
        text = str(root).strip()
        if not text:
            raise LakeError("the lake location is empty")
        lowered = text.lower()
        if lowered.startswith(S3_SCHEME):
            return cls._parse_s3(text)
        if re.match(r"^[a-z][a-z0-9+.-]*://", lowered):
            scheme = text.split("://", 1)[0]
            raise LakeError(
                f"lake {text!r}: unsupported scheme {scheme!r} (use a local path or s3://bucket/prefix)"
            )
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = (Path(base) if base is not None else Path.cwd()) / path
        return cls(Path(os.path.abspath(path)).as_posix())

    @classmethod
    def _parse_s3(cls, text: str) -> Location:
        rest = text[len(S3_SCHEME) :].strip("/")
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise LakeError(
                f"lake {text!r}: {bucket!r} is not an S3 bucket name "
                "(3-63 lowercase letters, digits, '.' or '-')"
            )
        if prefix:
            try:
                _check_part(prefix, "S3 prefix")
            except LakeError as err:
                raise LakeError(f"lake {text!r}: {err}") from None
        return cls(f"{S3_SCHEME}{bucket}" + (f"/{prefix}" if prefix else ""))

    def child(self, *parts: str) -> Location:
        """The location ``<uri>/<part>/...``; each part is a relative name without ``..``."""
        names = [_check_part(str(part), "path part") for part in parts]
        if not names:
            return self
        return Location(self.uri + "/" + "/".join(names))

    # -- properties -------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        return not self.uri.startswith(S3_SCHEME)

    @property
    def local_path(self) -> Path:
        """The local folder (local lakes only)."""
        if not self.is_local:
            raise LakeError(f"lake {self.uri} is on S3, not a local path")
        return Path(self.uri)

    @property
    def bucket(self) -> str:
        return self._s3_parts()[0]

    @property
    def key(self) -> str:
        """The object key prefix inside the bucket (``""`` at the bucket root)."""
        return self._s3_parts()[1]

    def _s3_parts(self) -> tuple[str, str]:
        if self.is_local:
            raise LakeError(f"lake {self.uri} is a local path, not S3")
        bucket, _, key = self.uri[len(S3_SCHEME) :].partition("/")
        return bucket, key

    @property
    def endpoint(self) -> str | None:
        """The S3 endpoint from the environment (``None``: AWS itself, or a local lake)."""
        return None if self.is_local else _env(*ENDPOINT_VARS)

    @property
    def region(self) -> str:
        return _env(*REGION_VARS) or DEFAULT_REGION

    def describe(self) -> str:
        """The URI plus, for S3, the endpoint: what a message may show (never credentials)."""
        if self.is_local:
            return self.uri
        return f"{self.uri} (endpoint {self.endpoint or f'AWS S3, region {self.region}'})"

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        if self.is_local:
            return f"Location({self.uri!r})"
        return f"Location({self.uri!r}, endpoint={self.endpoint or 'AWS S3'!r})"

    # -- clients ----------------------------------------------------------------------------

    def _allow_http(self) -> bool:
        endpoint = self.endpoint or ""
        flag = (os.environ.get("AWS_ALLOW_HTTP") or "").strip().lower()
        return flag in _TRUE or endpoint.lower().startswith("http://")

    def storage_options(self) -> dict[str, str]:
        """deltalake ``storage_options`` for this location (``{}`` for a local lake).

        Built from the environment at call time: endpoint, region, credentials, plain-http
        permission, conditional-put commits and bounded timeouts and retries. The result holds
        secrets: pass it to deltalake, never log it.
        """
        if self.is_local:
            return {}
        options = {
            "AWS_REGION": self.region,
            # Safe concurrent commits: PUT If-None-Match on the log entry (see module doc).
            "conditional_put": "etag",
            "connect_timeout": f"{CONNECT_TIMEOUT_S}s",
            "timeout": f"{REQUEST_TIMEOUT_S}s",
            "max_retries": str(MAX_RETRIES),
            "retry_timeout": f"{RETRY_TIMEOUT_S}s",
        }
        if self.endpoint:
            options["AWS_ENDPOINT_URL"] = self.endpoint
        if self._allow_http():
            options["AWS_ALLOW_HTTP"] = "true"
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            value = os.environ.get(name)
            if value:
                options[name] = value
        return options

    def filesystem(self) -> tuple[Any, str]:
        """``(pyarrow.fs.FileSystem, path)`` of this location.

        Local: ``(LocalFileSystem, "/abs/path")``; S3: ``(S3FileSystem, "bucket/prefix")``
        with the environment's endpoint, region and credentials and bounded timeouts.
        """
        from pyarrow import fs

        if self.is_local:
            return fs.LocalFileSystem(), self.uri
        kwargs: dict[str, Any] = {
            "region": self.region,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "request_timeout": IDLE_TIMEOUT_S,
            "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=PYARROW_ATTEMPTS),
            # A small file becomes one PutObject (half the time of a multipart upload); a
            # large one still goes multipart. Either is visible only once complete.
            "allow_delayed_open": True,
        }
        endpoint = self.endpoint
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            if not host:
                scheme, host = "https", endpoint
            kwargs["endpoint_override"] = host.rstrip("/")
            kwargs["scheme"] = scheme.lower()
        key_id = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if key_id and secret:
            kwargs["access_key"] = key_id
            kwargs["secret_key"] = secret
            token = os.environ.get("AWS_SESSION_TOKEN")
            if token:
                kwargs["session_token"] = token
        return fs.S3FileSystem(**kwargs), self.uri[len(S3_SCHEME) :]

    # -- errors -----------------------------------------------------------------------------

    def error(self, err: BaseException, action: str = "access") -> LakeError:
        """One clear :class:`LakeError` for a storage failure ``err`` while doing ``action``.

        Recognizes refused credentials, a missing bucket and an unreachable endpoint; any other
        failure keeps its (scrubbed, first-line) message. Never contains a secret.
        """
        if isinstance(err, LakeError):
            return err
        text = scrub(f"{type(err).__name__}: {err}")
        # Clients spell the same S3 error codes differently (SignatureDoesNotMatch,
        # SIGNATURE_DOES_NOT_MATCH, "signature does not match"): compare without separators.
        compact = re.sub(r"[\s_-]", "", text.lower())
        where = self.describe()
        if re.search(r"\b40[13]\b", text) or any(mark in compact for mark in _REFUSED):
            reason = (
                "the credentials were refused (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
            )
        elif "nosuchbucket" in compact or "bucketdoesnotexist" in compact:
            reason = f"bucket {self.bucket!r} does not exist"
        elif any(mark in compact for mark in _UNREACHABLE):
            reason = "the endpoint cannot be reached"
        else:
            first = next((line for line in text.splitlines() if line.strip()), text)
            reason = first.strip()[:300]
        return LakeError(f"cannot {action} lake {where}: {reason}")

    @contextlib.contextmanager
    def errors(self, action: str = "access") -> Iterator[None]:
        """On S3, turn storage failures (OSError, deltalake errors) into one LakeError.

        A missing file or table (``FileNotFoundError``, deltalake's ``TableNotFoundError``) and
        every failure of a local lake pass through unchanged. The original exception is not
        chained (its text may hold request details); its scrubbed first line is in the message.
        """
        try:
            yield
        except LakeError:
            raise
        except Exception as err:
            if self.is_local or not _is_storage_error(err):
                raise
            raise self.error(err, action) from None


def _is_storage_error(err: BaseException) -> bool:
    if isinstance(err, FileNotFoundError | NotADirectoryError | IsADirectoryError):
        return False
    if type(err).__name__ == "TableNotFoundError":
        return False
    if isinstance(err, OSError):  # pyarrow's and delta-rs' I/O errors are OSErrors
        return True
    # Other pyarrow errors (ArrowInvalid, ArrowTypeError...) are data mistakes, the same on a
    # local lake: they pass through.
    module = type(err).__module__ or ""
    return module.startswith(("deltalake", "botocore"))
