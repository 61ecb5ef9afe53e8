"""Where converted transcoders are cached on disk.

Cache root: explicit ``cache_dir`` > env ``CT_CACHE_DIR`` > ``~/.cache/ct_lakehouse/transcoders``.
An entry is ``root / ref.cache_key`` in our format (see :mod:`.formats.circuit_tracer`); it is
valid iff its ``config.yaml`` exists (written last, and entries are renamed into place).

circuit-tracer's own cache (env ``CIRCUIT_TRACER_CACHE_DIR``, else ``~/.cache/circuit_tracer``)
holds the same files under ``root / owner/repo[/sub/folder][@rev]``, also valid iff its
``config.yaml`` exists. A hub reference with no entry of ours is read from there when it has
one: read only, never written, emptied or converted in place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .formats.common import CONFIG_FILE
from .refs import TranscoderRef, parse_transcoder_ref

CACHE_ENV_VAR = "CT_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/ct_lakehouse/transcoders")
CIRCUIT_TRACER_CACHE_ENV_VAR = "CIRCUIT_TRACER_CACHE_DIR"
CIRCUIT_TRACER_DEFAULT_CACHE_DIR = Path("~/.cache/circuit_tracer")


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
    """Whether ``ref`` has a complete cache entry of ours (its ``config.yaml`` exists)."""
    return (cache_entry_path(ref, cache_dir) / CONFIG_FILE).is_file()


def circuit_tracer_cache_root() -> Path:
    """circuit-tracer's cache root: env ``CIRCUIT_TRACER_CACHE_DIR``, else its default."""
    env = os.environ.get(CIRCUIT_TRACER_CACHE_ENV_VAR)
    return Path(env).expanduser() if env else CIRCUIT_TRACER_DEFAULT_CACHE_DIR.expanduser()


def circuit_tracer_entry(ref: str | Path | TranscoderRef) -> Path | None:
    """circuit-tracer's complete cache entry of a hub reference, or None.

    Its entry is named by the reference as written, revision included (a ``/`` in a revision
    makes nested folders there, where our own key uses ``--``). Local folders have none.
    """
    parsed = parse_transcoder_ref(ref)
    if parsed.is_local:
        return None
    key = parsed.repo_id + (f"/{parsed.subfolder}" if parsed.subfolder else "")
    key += f"@{parsed.revision}" if parsed.revision else ""
    entry = circuit_tracer_cache_root() / key
    return entry if (entry / CONFIG_FILE).is_file() else None


def find_cache_entry(
    ref: str | Path | TranscoderRef, cache_dir: str | Path | None = None
) -> Path | None:
    """The complete cache entry to read ``ref`` from: ours, else circuit-tracer's (hub
    references only), else None."""
    parsed = parse_transcoder_ref(ref)
    if parsed.is_local:
        return None
    if is_cached(parsed, cache_dir):
        return cache_entry_path(parsed, cache_dir)
    return circuit_tracer_entry(parsed)


def empty_cache(
    hf_ref: str | Path | TranscoderRef | None = None, cache_dir: str | Path | None = None
) -> None:
    """Delete the cache entry of ``hf_ref``, or the whole cache root when it is None.

    Only our cache is emptied; circuit-tracer's (see the module docstring) is never touched.
    """
    target = cache_root(cache_dir) if hf_ref is None else cache_entry_path(hf_ref, cache_dir)
    if target.is_dir():
        shutil.rmtree(target)
