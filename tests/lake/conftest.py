"""Fixtures of the lake tests: a real S3-compatible server (see tests/s3server.py)."""

from tests.s3server import s3_server, s3_uri  # noqa: F401
