"""Where converted transcoders are cached on disk.

Cache root: explicit ``cache_dir`` > env ``CT_CACHE_DIR`` > ``~/.cache/ct_lakehouse/transcoders``.
An entry is ``root / ref.cache_key`` in our format (see :mod:`.formats.circuit_tracer`); it is
valid iff its ``config.yaml`` exists (written last, and entries are renamed into place).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .formats.common import CONFIG_FILE
from .refs import TranscoderRef, parse_transcoder_ref

CACHE_ENV_VAR = "CT_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/ct_lakehouse/transcoders")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache root directory (not created)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_CACHE_DIR.expanduser()


def cache_entry_path(ref: str | Path | TranscoderRef, cache_dir: str | Path | None = None) -> Path:
    """The cache entry directory of ``ref`` (whether or not it exists)."""
    return cache_root(cache_dir) / parse_transcoder_ref(ref).cache_key


def is_cached(ref: str | Path | TranscoderRef, cache_dir: str | Path | None = None) -> bool:
    """Whether ``ref`` has a complete cache entry (its ``config.yaml`` exists)."""
    return (cache_entry_path(ref, cache_dir) / CONFIG_FILE).is_file()


def empty_cache(
    ref: str | Path | TranscoderRef | None = None, cache_dir: str | Path | None = None
) -> None:
    """Delete the cache entry of ``ref``, or the whole cache root when ``ref`` is None."""
    target = cache_root(cache_dir) if ref is None else cache_entry_path(ref, cache_dir)
    if target.is_dir():
        shutil.rmtree(target)
