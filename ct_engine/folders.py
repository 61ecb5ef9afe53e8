"""Replacing a whole folder so that a reader sees the old one or the new one, never a mix; and
the permissions a written file or folder gets.

Atomic writes go through ``tempfile.mkstemp`` (a ``0600`` file) or a temporary folder
(``tempfile.mkdtemp``: ``0700``), which are private on purpose; the file renamed into place
should instead get what ``open()`` or ``mkdir()`` would have given it: ``0666`` or ``0777``
less the process's umask (``0644`` and ``0755`` under the usual ``022``)."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    Linux shows it in ``/proc/self/status``; elsewhere it is set and put back at once, under a
    lock (``os.umask`` is process-wide, so another thread creating a file in between would get
    the temporary mask; the value set is the usual ``022``, the least surprising one)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_mode(folder: bool = False) -> int:
    """The mode ``open()`` (``0666``) or ``mkdir()`` (``0777``) gives under the current umask."""
    return (0o777 if folder else 0o666) & ~current_umask()


def set_default_mode(path: str | os.PathLike[str]) -> None:
    """Give the file or folder ``path`` the mode a plain ``open()``/``mkdir()`` would have."""
    os.chmod(path, default_mode(folder=os.path.isdir(path)))


def set_default_modes(folder: str | os.PathLike[str]) -> None:
    """:func:`set_default_mode` on ``folder`` and everything below it (links left alone)."""
    folder_mode, file_mode = default_mode(folder=True), default_mode()
    os.chmod(folder, folder_mode)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), folder_mode)
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), file_mode)


def replace_folder(staging: Path, target: Path) -> None:
    """Rename the finished folder ``staging`` to ``target`` (a sibling), replacing an existing
    ``target``: the old folder is renamed aside first and put back if the rename fails, then
    deleted. Each rename is atomic on one file system. ``target`` gets the usual folder mode
    (:func:`default_mode`), whichever way ``staging`` was made."""
    set_default_mode(staging)
    if not target.exists():
        os.replace(staging, target)
        return
    retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
    os.replace(target, retired)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)
