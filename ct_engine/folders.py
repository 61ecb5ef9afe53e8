"""Replacing a whole folder so that a reader sees the old one or the new one, never a mix."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def replace_folder(staging: Path, target: Path) -> None:
    """Rename the finished folder ``staging`` to ``target`` (a sibling), replacing an existing
    ``target``: the old folder is renamed aside first and put back if the rename fails, then
    deleted. Each rename is atomic on one file system."""
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
