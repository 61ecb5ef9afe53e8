"""Per-partition files of the lake (graphs, plots, viewer JSON, transcoder sets), local or on S3.

Layout, under the lake's :class:`~ct_lake.storage.Location`::

    <lake>/files/<kind>/model=<m>[/prompt=<p>]/<name>      one file
    <lake>/files/<kind>/model=<m>[/prompt=<p>]/<name>/...  one folder, a "tree" (transcoder set)

:class:`LakeFiles` is a mixin for :class:`ct_lake.lake.Lake`: it only needs ``self.location``.

Local lakes: paths are the real files (no copy). A file write goes to a temporary name in the
same folder (``.<name>.<random>.tmp``) and is renamed into place; a tree is copied into a
temporary sibling folder and swapped in with two renames (the previous tree is moved aside
first, then deleted), so readers see the old tree or the new one, never a mix (for an instant
between the two renames, no tree).

S3 lakes: a file write is one ``PUT`` (or a multipart upload completed at the end), which S3
makes visible all at once. A tree is uploaded file by file and then its manifest
(``<name>/.ct-tree.json``: every file's size and SHA-256) is written last: a tree exists once
its manifest does, and readers download exactly the files it lists, checking their hashes.
Files the new manifest no longer lists are deleted after it is written. Reads go through a local
cache, ``$CT_LAKE_CACHE/<hash>`` (default ``~/.cache/ct-lake/<hash>``; ``<hash>``: 12 hex
digits of the endpoint and lake URI), laid out like the lake: :meth:`LakeFiles.local_file`
compares the object's ETag and size with what was last downloaded (one ``HEAD``) and downloads
again only when the object changed. Downloads go to a temporary file renamed into place, under
a per-file lock (``fcntl``), so several processes may ask for the same file at once.

Cost, measured against the moto server on 127.0.0.1 (this machine, 2 shared cores; printed by
``tests/lake/test_files_s3.py::test_small_file_cost``): a small (1 KiB) ``write_file`` takes
about 15-20 ms (one ``PutObject``), a ``read_bytes`` 6-13 ms, a ``local_file`` already in the
cache 6-8 ms (its ``HEAD``); on a local disk the same calls take 0.3 ms, 0.04 ms and 0.02 ms.
Most of it is per-request overhead (signing, HTTP, moto's own handling), so a real S3 endpoint
adds its network round trip (typically 10-50 ms) to each request.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ct_engine.folders import set_default_mode, set_default_modes
from ct_lake.keys import check_model_key, check_prompt_key
from ct_lake.storage import LakeError, Location

FILES = "files"
CACHE_ENV = "CT_LAKE_CACHE"
DEFAULT_CACHE = Path("~/.cache/ct-lake")
TREE_MANIFEST = ".ct-tree.json"
META_DIR = ".ct-meta"  # per-file download records and locks, beside the cached files
CHUNK = 8 << 20

_KIND = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_KEY_CHECKS = {"model": check_model_key, "prompt": check_prompt_key}


def _check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ValueError(
            f"bad file kind {kind!r}: use lowercase letters, digits, '_', '-' or '.' "
            "(starting with a letter or digit)"
        )
    return kind


def _check_name(name: str) -> list[str]:
    """The '/'-separated parts of a relative file name; no '..', '.', empty or hidden parts."""
    text = str(name)
    parts = text.split("/")
    if (
        not text
        or text.startswith("/")
        or "\\" in text
        or "\x00" in text
        or any(not part or part.startswith(".") for part in parts)
    ):
        raise ValueError(
            f"bad file name {text!r}: use a relative name without '..', '.' or '/'-prefixed parts"
        )
    return parts


def _check_member(rel: str) -> str:
    """A file name inside a tree: relative, no '..' or '.' or empty parts (dotfiles allowed)."""
    if (
        not rel
        or rel.startswith("/")
        or "\\" in rel
        or "\x00" in rel
        or any(part in ("", ".", "..") for part in rel.split("/"))
    ):
        raise ValueError(f"bad file name {rel!r} in a stored folder")
    return rel


def _key_parts(keys: dict[str, str]) -> list[str]:
    """``["model=<m>", "prompt=<p>"]`` for the given keys, each checked (ct_lake.keys)."""
    unknown = sorted(set(keys) - set(_KEY_CHECKS))
    if unknown:
        raise ValueError(f"files are keyed by model and prompt, got {unknown}")
    if "prompt" in keys and "model" not in keys:
        raise ValueError("a file keyed by prompt needs a model too")
    return [
        f"{column}={_KEY_CHECKS[column](str(keys[column]))}"
        for column in ("model", "prompt")
        if column in keys
    ]


def cache_root(location: Location) -> Path:
    """The local cache folder of an S3 lake: ``$CT_LAKE_CACHE/<hash>`` or the default."""
    base = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()
    digest = hashlib.sha256(f"{location.endpoint or ''}\n{location.uri}".encode()).hexdigest()
    return base / digest[:12]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _tree_files(folder: Path) -> list[tuple[str, Path]]:
    """``(relative posix name, path)`` of every file under ``folder``, sorted."""
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() and path.is_dir():
            raise LakeError(f"cannot store {folder}: {path} is a link to a folder")
        if path.is_file():
            files.append((path.relative_to(folder).as_posix(), path))
    return files


# A temporary file or folder untouched for this long belongs to a writer that is gone: a live
# writer changes its file (or its folder's files) far more often than that.
SWEEP_GRACE_S = 3600.0
_SWEPT: set[str] = set()  # lakes swept by this process (LakeFiles._sweep_once)


def remove_temporaries(folder: Path, older_than_s: float = SWEEP_GRACE_S) -> int:
    """Delete the ``.*.tmp`` files and folders (the temporary names of this module's atomic
    writes) that killed writers left below ``folder`` and that nothing changed for
    ``older_than_s`` seconds (a folder: nothing in it either); return how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    now = time.time()
    for path in sorted(folder.rglob(".*.tmp"), reverse=True):
        try:
            if now - _last_change(path) < older_than_s:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except FileNotFoundError:  # its writer finished (renamed it) meanwhile
            continue
        removed += 1
    return removed


def stale_temporaries(folder: Path, older_than_s: float = SWEEP_GRACE_S) -> list[Path]:
    """The temporary files and folders :func:`remove_temporaries` would remove."""
    if not folder.is_dir():
        return []
    now = time.time()
    stale = []
    for path in sorted(folder.rglob(".*.tmp")):
        with contextlib.suppress(FileNotFoundError):
            if now - _last_change(path) >= older_than_s:
                stale.append(path)
    return stale


def _last_change(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for inner in path.rglob("*"):
            with contextlib.suppress(OSError):
                newest = max(newest, inner.lstat().st_mtime)
    return newest


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path``, renamed onto it if the body succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    set_default_mode(tmp)  # mkstemp's file is private (0600); the lake's files are not
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class LakeFiles:
    """File and folder storage of a lake; the host class sets ``self.location`` (a Location).

    ``kind`` is a short lowercase name (``graphs``, ``plots``...), ``name`` a relative file name
    (``graph.safetensors``, ``<slug>.json``), ``keys`` ``model=`` and optionally ``prompt=``.
    """

    location: Location

    # -- addresses --------------------------------------------------------------------------

    def _relative(self, kind: str, name: str | None, keys: dict[str, str]) -> list[str]:
        parts = [FILES, _check_kind(kind), *_key_parts(keys)]
        if name is not None:
            parts += _check_name(name)
        return parts

    def file_uri(self, kind: str, name: str, **keys: str) -> str:
        """``<lake>/files/<kind>/model=<m>[/prompt=<p>]/<name>`` (local path or ``s3://``)."""
        return self.location.child(*self._relative(kind, name, keys)).uri

    def file_path(self, kind: str, name: str, **keys: str) -> Path:
        """The local path of a file: the real file (local lake) or its cache copy (S3 lake).

        On S3 the path may not exist yet: :meth:`local_file` downloads into it.
        """
        parts = self._relative(kind, name, keys)
        if self.location.is_local:
            return self.location.local_path.joinpath(*parts)
        return cache_root(self.location).joinpath(*parts)

    def _s3_path(self, parts: list[str]) -> tuple[object, str]:
        fs, root = self.location.filesystem()
        return fs, "/".join([root, *parts])

    # -- files ------------------------------------------------------------------------------

    def write_file(self, kind: str, name: str, source: Path | bytes, **keys: str) -> str:
        """Store ``source`` (a file's path or its bytes) as one file, atomically; return its URI.

        Replaces an existing file. ``source`` may be :meth:`file_path` itself (write there,
        then publish): on a local lake that is already the file, on S3 it is uploaded.
        """
        parts = self._relative(kind, name, keys)
        self._sweep_once()
        if isinstance(source, str):
            source = Path(source)
        if self.location.is_local:
            target = self.location.local_path.joinpath(*parts)
            if isinstance(source, Path) and _same_file(source, target):
                return target.as_posix()
            with _atomic_path(target) as tmp:
                if isinstance(source, Path):
                    _copy(source, tmp)
                else:
                    tmp.write_bytes(source)
            return target.as_posix()
        fs, path = self._s3_path(parts)
        with self.location.errors(f"write {'/'.join(parts)} to"):
            self._upload(fs, path, source)
        cached = cache_root(self.location).joinpath(*parts)
        if isinstance(source, Path) and _same_file(source, cached):
            # The writer's own copy is the cache copy: record it so it is not downloaded again.
            self._record(fs, path, cached)
        return self.file_uri(kind, name, **keys)

    def has_file(self, kind: str, name: str, **keys: str) -> bool:
        parts = self._relative(kind, name, keys)
        if self.location.is_local:
            return self.location.local_path.joinpath(*parts).is_file()
        from pyarrow.fs import FileType

        fs, path = self._s3_path(parts)
        with self.location.errors("read"):
            return fs.get_file_info(path).type == FileType.File

    def read_bytes(self, kind: str, name: str, **keys: str) -> bytes:
        """The file's content (``FileNotFoundError`` if it was never written)."""
        parts = self._relative(kind, name, keys)
        if self.location.is_local:
            return self.location.local_path.joinpath(*parts).read_bytes()
        fs, path = self._s3_path(parts)
        with self.location.errors(f"read {'/'.join(parts)} from"):
            with fs.open_input_stream(path) as stream:
                return stream.read()

    def local_file(self, kind: str, name: str, **keys: str) -> Path:
        """A local path holding the file: the file itself (local lake) or a fresh cache copy.

        On S3 the copy is downloaded when missing or when the object's ETag or size changed.
        Raises ``FileNotFoundError`` if the file was never written.
        """
        parts = self._relative(kind, name, keys)
        if self.location.is_local:
            path = self.location.local_path.joinpath(*parts)
            if not path.is_file():
                raise FileNotFoundError(f"no file {path}")
            return path
        fs, path = self._s3_path(parts)
        target = cache_root(self.location).joinpath(*parts)
        with self.location.errors(f"read {'/'.join(parts)} from"):
            with fs.open_input_file(path) as remote:
                stamp = _stamp(remote.metadata(), remote.size())
            if self._is_fresh(target, stamp):
                return target
            with _locked(self._meta(target, ".lock")):
                if not self._is_fresh(target, stamp):
                    self._download(fs, path, target)
        return target

    def list_files(self, kind: str, **keys: str) -> list[str]:
        """Relative names (``a.json``, ``prompt=p_.../graph.safetensors``) of the stored files
        under ``files/<kind>[/model=<m>[/prompt=<p>]]``, sorted; ``[]`` when there are none."""
        parts = self._relative(kind, None, keys)
        if self.location.is_local:
            folder = self.location.local_path.joinpath(*parts)
            if not folder.is_dir():
                return []
            names = [rel for rel, _ in _tree_files(folder)]
        else:
            from pyarrow.fs import FileSelector, FileType

            fs, path = self._s3_path(parts)
            selector = FileSelector(path, recursive=True, allow_not_found=True)
            with self.location.errors("list"):
                infos = fs.get_file_info(selector)
            names = [info.path[len(path) + 1 :] for info in infos if info.type == FileType.File]
        return sorted(
            name for name in names if not any(part.startswith(".") for part in name.split("/"))
        )

    # -- trees (folders) --------------------------------------------------------------------

    def write_tree(self, kind: str, name: str, folder: Path, **keys: str) -> str:
        """Store the folder ``folder`` (all its files) as one tree, replacing any previous one.

        Returns the tree's URI. See the module docstring for how each store keeps it atomic.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no folder {folder}")
        parts = self._relative(kind, name, keys)
        self._sweep_once()
        files = _tree_files(folder)
        if any(rel == TREE_MANIFEST for rel, _ in files):
            raise ValueError(f"{folder} holds a file named {TREE_MANIFEST}, reserved for the lake")
        if self.location.is_local:
            target = self.location.local_path.joinpath(*parts)
            if _same_file(folder, target):
                return target.as_posix()
            _swap_tree(folder, target)
            return target.as_posix()
        fs, path = self._s3_path(parts)
        manifest = {
            rel: {"size": file.stat().st_size, "sha256": _sha256(file)} for rel, file in files
        }
        with self.location.errors(f"write {'/'.join(parts)} to"):
            previous = self._read_manifest(fs, path) or {}
            for rel, file in files:
                self._upload(fs, f"{path}/{rel}", file)
            body = json.dumps({"files": manifest}, indent=1, sort_keys=True).encode()
            self._upload(fs, f"{path}/{TREE_MANIFEST}", body)
            # pyarrow may leave an empty folder marker ("<folder>/") behind: not a file.
            for rel in sorted(set(previous) - set(manifest)):
                fs.delete_file(f"{path}/{rel}")
        cached = cache_root(self.location).joinpath(*parts)
        if _same_file(folder, cached):
            # The writer's folder is the cache copy: record it so it is not downloaded again.
            with _atomic_path(self._meta(cached, ".tree.json")) as tmp:
                tmp.write_text(json.dumps(manifest, sort_keys=True))
        return self.location.child(*parts).uri

    def has_tree(self, kind: str, name: str, **keys: str) -> bool:
        """Whether a complete tree is stored (local: the folder exists; S3: its manifest)."""
        parts = self._relative(kind, name, keys)
        if self.location.is_local:
            return self.location.local_path.joinpath(*parts).is_dir()
        from pyarrow.fs import FileType

        fs, path = self._s3_path(parts)
        with self.location.errors("read"):
            return fs.get_file_info(f"{path}/{TREE_MANIFEST}").type == FileType.File

    def local_tree(self, kind: str, name: str, **keys: str) -> Path:
        """A local folder holding the tree: the folder itself (local lake) or a fresh cache copy.

        On S3, downloads the files whose hash differs from the cached copy and removes files the
        manifest no longer lists. Raises ``FileNotFoundError`` if no tree was written.
        """
        parts = self._relative(kind, name, keys)
        if self.location.is_local:
            path = self.location.local_path.joinpath(*parts)
            if not path.is_dir():
                raise FileNotFoundError(f"no folder {path}")
            return path
        fs, path = self._s3_path(parts)
        target = cache_root(self.location).joinpath(*parts)
        record = self._meta(target, ".tree.json")
        with self.location.errors(f"read {'/'.join(parts)} from"):
            for _attempt in range(3):
                manifest = self._read_manifest(fs, path)
                if manifest is None:
                    raise FileNotFoundError(f"no folder {self.location.child(*parts).uri}")
                with _locked(self._meta(target, ".lock")):
                    if self._sync_tree(fs, path, target, manifest, record):
                        return target
        raise LakeError(
            f"the folder {self.location.child(*parts).uri} kept changing while it was downloaded"
        )

    def sweep_files(self, older_than_s: float = SWEEP_GRACE_S) -> int:
        """Remove temporary files and folders left under ``files/`` by killed local writers
        (untouched for ``older_than_s`` seconds, see :func:`remove_temporaries`)."""
        if not self.location.is_local:
            return 0
        return remove_temporaries(self.location.local_path / FILES, older_than_s)

    def sweep(self, older_than_s: float = SWEEP_GRACE_S) -> int:
        return self.sweep_files(older_than_s)

    def _sweep_once(self) -> None:
        """:meth:`sweep` before this process's first write to this lake: what killed writers
        left goes at the next run, without a command to remember."""
        if not self.location.is_local or self.location.uri in _SWEPT:
            return
        _SWEPT.add(self.location.uri)
        with contextlib.suppress(OSError):  # a sweep that fails must not fail the write
            self.sweep()

    # -- S3 helpers -------------------------------------------------------------------------

    @staticmethod
    def _upload(fs, path: str, source: Path | bytes) -> None:
        with fs.open_output_stream(path) as out:
            if isinstance(source, Path):
                with open(source, "rb") as handle:
                    for block in iter(lambda: handle.read(CHUNK), b""):
                        out.write(block)
            else:
                out.write(source)

    def _meta(self, target: Path, suffix: str) -> Path:
        """Where the download record/lock of a cached path lives (outside the cached tree)."""
        root = cache_root(self.location)
        return root / META_DIR / (target.relative_to(root).as_posix() + suffix)

    def _is_fresh(self, target: Path, stamp: dict) -> bool:
        try:
            record = json.loads(self._meta(target, ".json").read_text())
        except (OSError, ValueError):
            return False
        return record == stamp and target.is_file() and target.stat().st_size == stamp["size"]

    def _download(self, fs, path: str, target: Path) -> None:
        with _atomic_path(target) as tmp:
            with fs.open_input_stream(path) as remote, open(tmp, "wb") as out:
                # The ETag of the very response we copy, so the record matches the bytes.
                metadata = remote.metadata()
                while block := remote.read(CHUNK):
                    out.write(block)
            stamp = _stamp(metadata, tmp.stat().st_size)
        self._write_record(target, stamp)

    def _record(self, fs, path: str, target: Path) -> None:
        with fs.open_input_file(path) as remote:
            stamp = _stamp(remote.metadata(), remote.size())
        self._write_record(target, stamp)

    def _write_record(self, target: Path, stamp: dict) -> None:
        with _atomic_path(self._meta(target, ".json")) as tmp:
            tmp.write_text(json.dumps(stamp))

    @staticmethod
    def _read_manifest(fs, path: str) -> dict | None:
        try:
            with fs.open_input_stream(f"{path}/{TREE_MANIFEST}") as stream:
                return json.loads(stream.read())["files"]
        except FileNotFoundError:
            return None

    def _sync_tree(self, fs, path: str, target: Path, manifest: dict, record: Path) -> bool:
        """Make ``target`` match ``manifest``; False if a download did not match its hash."""
        try:
            synced = json.loads(record.read_text())
        except (OSError, ValueError):
            synced = {}
        if synced == manifest and all(
            (target / rel).is_file() and (target / rel).stat().st_size == entry["size"]
            for rel, entry in manifest.items()
        ):
            return True
        for rel, entry in manifest.items():
            _check_member(rel)
            local = target / rel
            if (
                synced.get(rel) == entry
                and local.is_file()
                and local.stat().st_size == entry["size"]
            ):
                continue
            with _atomic_path(local) as tmp:
                with fs.open_input_stream(f"{path}/{rel}") as remote, open(tmp, "wb") as out:
                    while block := remote.read(CHUNK):
                        out.write(block)
                if _sha256(tmp) != entry["sha256"]:
                    return False  # rewritten meanwhile: read the manifest again
        if target.is_dir():
            for rel, local in _tree_files(target):
                if rel not in manifest:
                    local.unlink()
        with _atomic_path(record) as tmp:
            tmp.write_text(json.dumps(manifest, sort_keys=True))
        return True


def _stamp(metadata, size: int) -> dict:
    """What identifies one version of an object: its ETag (and size, and Last-Modified)."""
    values = {key.lower(): value for key, value in dict(metadata).items()}

    def text(key: str) -> str:
        value = values.get(key, b"")
        return value.decode() if isinstance(value, bytes) else str(value)

    return {"etag": text("etag"), "size": int(size), "modified": text("last-modified")}


def _copy(source: Path, target: Path) -> None:
    """Copy a file's bytes by streaming (works for pipes too, unlike ``shutil.copyfile``)."""
    with open(source, "rb") as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _swap_tree(folder: Path, target: Path) -> None:
    """Copy ``folder`` beside ``target`` then rename it into place (the old tree moved aside)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old = None
    try:
        shutil.copytree(folder, staging, dirs_exist_ok=True, symlinks=False)
        # mkdtemp's folder is private (0700) and the copy keeps the source's modes (often a
        # private scratch folder): the stored tree gets the usual modes instead.
        set_default_modes(staging)
        if target.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old.tmp", dir=target.parent)
            )
            old.rmdir()
            os.replace(target, old)
        os.replace(staging, target)
    except BaseException:
        if old is not None and not target.exists():
            os.replace(old, target)  # put the previous tree back
            old = None
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
