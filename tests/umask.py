"""Writing under a chosen umask, and the modes a user sees, for the file-permission tests.

The umask is process-wide: :func:`umask` sets it for the body only and puts the previous one
back (the tests run in one thread)."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

# (umask, file mode, folder mode): the usual one, and a private one.
CASES = [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    """The permission bits of ``path`` (``0o644``...)."""
    return stat.S_IMODE(os.lstat(path).st_mode)


def modes(root: Path) -> dict[str, int]:
    """``{relative name: permission bits}`` of ``root`` (as ``"."``) and everything below."""
    found = {".": mode(root)}
    for path in sorted(root.rglob("*")):
        found[path.relative_to(root).as_posix()] = mode(path)
    return found
