"""An S3-compatible server on moto: ``python scripts/s3_server.py -H 127.0.0.1 -p PORT``.

This is ``python -m moto.server`` (same arguments), with one change: moto checks
``If-None-Match: *`` and then stores the object as two steps, so two requests in its threads
could both pass the check; S3 does both at once, and Delta commits rely on it. A lock around
object creation (PUT, multipart completion) makes moto as strict as S3.

Objects live in the server's memory. With ``--state DIR`` they also outlive it: the server
loads DIR at start, saves its S3 buckets there when it is stopped (SIGTERM or SIGINT), and
every ``--save-every`` seconds (default 30) while requests change them. DIR holds plain
files, ``<bucket>/<url-quoted key>`` (the latest version of each object; no metadata), read
back with moto's own ``create_bucket`` and ``put_object``: nothing in it is executed or
unpickled. A save writes a new folder and swaps it in; a server killed mid-swap leaves the
previous folder as ``DIR.old``, which the next start reads. The lake tests
(``tests/s3server.py``) run it without a state; the team profile's services
(``scripts/services.sh``) run it with one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import urllib.parse
from pathlib import Path

import moto.server
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.s3.responses import S3Response

_create = threading.Lock()


def _serialized(method):
    def locked(self, *args, **kwargs):
        with _create:
            return method(self, *args, **kwargs)

    return locked


S3Response.put_object = _serialized(S3Response.put_object)
S3Response._key_response_post = _serialized(S3Response._key_response_post)

# Requests that read; any other method may change the buckets.
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class State:
    """The S3 buckets of moto's default account, saved to and loaded from the folder ``path``."""

    def __init__(self, path: Path, save_every: float):
        self.path, self.save_every = path, save_every
        self.old = path.with_name(path.name + ".old")
        self.changed = threading.Event()
        self._saving = threading.Lock()

    def load(self) -> None:
        source = self.path if self.path.is_dir() else self.old
        if not source.is_dir():
            return
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for bucket in sorted(p for p in source.iterdir() if p.is_dir()):
            backend.create_bucket(bucket.name, "us-east-1")
            for item in sorted(bucket.iterdir()):
                key = urllib.parse.unquote(item.name)
                backend.put_object(bucket.name, key, item.read_bytes())

    def save(self) -> None:
        with self._saving:
            with _create:  # no object is half created while the buckets are copied
                self.changed.clear()
                backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
                objects = {
                    name: [(key.name, bytes(key.value)) for key in bucket.keys.values()]
                    for name, bucket in backend.buckets.items()
                }
            new = self.path.with_name(f".{self.path.name}.new")
            shutil.rmtree(new, ignore_errors=True)
            for name, items in objects.items():
                (new / name).mkdir(parents=True)
                for key, value in items:
                    (new / name / urllib.parse.quote(key, safe="")).write_bytes(value)
            shutil.rmtree(self.old, ignore_errors=True)
            if self.path.exists():
                os.replace(self.path, self.old)
            os.replace(new, self.path)
            shutil.rmtree(self.old, ignore_errors=True)

    def save_while_changing(self) -> None:
        while True:
            self.changed.wait()
            threading.Event().wait(self.save_every)
            self.save()

    def serve(self, run_simple):
        """``run_simple`` that marks changes, saves on a timer and when stopped."""

        def run(host, port, app, **kwargs):
            def marking(environ, start_response):
                if environ.get("REQUEST_METHOD") not in _READS:
                    self.changed.set()
                return app(environ, start_response)

            def stop(signum, frame):
                self.save()
                sys.exit(0)

            # After moto's own handlers, which exit without saving.
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            threading.Thread(target=self.save_while_changing, daemon=True).start()
            return run_simple(host, port, marking, **kwargs)

        return run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--state", type=Path, help="load and save the S3 buckets in this folder")
    parser.add_argument("--save-every", type=float, default=30.0, metavar="SECONDS")
    args, moto_args = parser.parse_known_args(argv)
    if args.state is not None:
        state = State(args.state, args.save_every)
        state.load()
        moto.server.run_simple = state.serve(moto.server.run_simple)
    sys.argv[1:] = moto_args  # moto reads sys.argv when its own list is empty
    moto.server.main(moto_args)


if __name__ == "__main__":
    main(sys.argv[1:])
