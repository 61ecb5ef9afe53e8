"""An S3-compatible server on moto: ``python scripts/s3_server.py -H 127.0.0.1 -p PORT``.

This is ``python -m moto.server`` (same arguments), with one change: moto checks
``If-None-Match: *`` and then stores the object as two steps, so two requests in its threads
could both pass the check; S3 does both at once, and Delta commits rely on it. A lock around
object creation (PUT, multipart completion) makes moto as strict as S3.

Objects live in the server's memory: they are gone when it stops. The lake tests
(``tests/s3server.py``) and the team profile's services (``scripts/services.sh``) run it.
"""

from __future__ import annotations

import sys
import threading

from moto.s3.responses import S3Response
from moto.server import main

_create = threading.Lock()


def _serialized(method):
    def locked(self, *args, **kwargs):
        with _create:
            return method(self, *args, **kwargs)

    return locked


S3Response.put_object = _serialized(S3Response.put_object)
S3Response._key_response_post = _serialized(S3Response._key_response_post)

if __name__ == "__main__":
    main(sys.argv[1:])
