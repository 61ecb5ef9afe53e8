"""Transcoder references: local folders and Hugging Face hub locations, and their download.

Accepted forms, tried in this order:

1. ``hf://owner/repo[/path][?revision=rev]`` — always a hub reference.
2. An existing local path (``~`` expanded) — a local directory, even if it also looks like a
   hub reference or a shortcut: an existing path wins.
3. A shortcut: ``gemma`` → ``mwhanna/gemma-scope-transcoders``,
   ``llama`` → ``mntss/transcoder-Llama-3.2-1B``.
4. ``owner/repo[/sub/folder][@revision]`` — a hub reference when it is relative, has at least
   two ``/``-separated parts and every part is a valid hub name (letters, digits, ``-_.``).
5. Anything else is a local path (which then fails to load if it does not exist).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs

from .errors import TranscoderDownloadError

SHORTCUTS = {
    "gemma": "mwhanna/gemma-scope-transcoders",
    "llama": "mntss/transcoder-Llama-3.2-1B",
}
HF_SCHEME = "hf://"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

T = TypeVar("T")


@dataclass(frozen=True)
class TranscoderRef:
    """A parsed transcoder reference: a hub location or a local directory.

    Attributes:
        repo_id: ``"owner/repo"`` for hub references, else None.
        subfolder: folder inside the repo (no leading/trailing ``/``), or None.
        revision: branch, tag or commit, or None for the default branch.
        local_path: the directory for local references, else None.
    """

    repo_id: str | None = None
    subfolder: str | None = None
    revision: str | None = None
    local_path: Path | None = None

    @property
    def is_local(self) -> bool:
        return self.local_path is not None

    @property
    def scan(self) -> str | None:
        """circuit-tracer's scan id: ``owner/repo[//sub/folder][@rev]`` (None when local)."""
        if self.repo_id is None:
            return None
        scan = self.repo_id + (f"//{self.subfolder}" if self.subfolder else "")
        return scan + (f"@{self.revision}" if self.revision else "")

    @property
    def cache_key(self) -> str:
        """Relative path of this reference's entry in the transcoder cache.

        Hub: ``owner/repo[/sub/folder][@rev]`` (``/`` in a revision becomes ``--``).
        Local: ``local/<folder name>-<hash of the absolute path>``.
        """
        if self.local_path is not None:
            absolute = str(self.local_path.expanduser().absolute())
            digest = hashlib.sha256(absolute.encode()).hexdigest()[:12]
            return f"local/{self.local_path.name or 'root'}-{digest}"
        key = self.repo_id + (f"/{self.subfolder}" if self.subfolder else "")
        return key + (f"@{self.revision.replace('/', '--')}" if self.revision else "")

    def __str__(self) -> str:
        """``owner/repo[/sub/folder][@rev]``, or the local path."""
        if self.local_path is not None:
            return str(self.local_path)
        text = self.repo_id + (f"/{self.subfolder}" if self.subfolder else "")
        return text + (f"@{self.revision}" if self.revision else "")


def parse_hf_uri(uri: str) -> tuple[str, str, str | None]:
    """``hf://owner/repo/path?revision=rev`` → ``(repo_id, path, revision)``; path may be ``""``."""
    if not uri.startswith(HF_SCHEME):
        raise ValueError(f"not an hf:// URI: {uri!r}")
    body, _, query = uri[len(HF_SCHEME) :].partition("?")
    parts = [p for p in body.split("/") if p]
    if len(parts) < 2 or not all(_NAME.match(p) for p in parts[:2]):
        raise ValueError(f"hf:// URI needs owner/repo: {uri!r}")
    revision = parse_qs(query).get("revision", [None])[0] if query else None
    return "/".join(parts[:2]), "/".join(parts[2:]), revision


def _hub_ref(text: str) -> TranscoderRef | None:
    path, _, revision = text.rpartition("@") if "@" in text else (text, "", "")
    parts = path.split("/")
    if len(parts) < 2 or not all(_NAME.match(p) for p in parts):
        return None
    return TranscoderRef(
        repo_id="/".join(parts[:2]),
        subfolder="/".join(parts[2:]) or None,
        revision=revision or None,
    )


def parse_transcoder_ref(ref: str | Path | TranscoderRef) -> TranscoderRef:
    """Parse a reference string (see the module docstring for the accepted forms)."""
    if isinstance(ref, TranscoderRef):
        return ref
    from ct_engine.presets import resolve_transcoders

    ref = resolve_transcoders(ref)
    if isinstance(ref, Path):
        return TranscoderRef(local_path=ref.expanduser())
    if ref.startswith(HF_SCHEME):
        repo_id, path, revision = parse_hf_uri(ref)
        return TranscoderRef(repo_id=repo_id, subfolder=path or None, revision=revision)
    local = Path(ref).expanduser()
    if local.exists():
        return TranscoderRef(local_path=local)
    if ref in SHORTCUTS:
        return TranscoderRef(repo_id=SHORTCUTS[ref])
    if not local.is_absolute() and not ref.startswith((".", "~")):
        hub = _hub_ref(ref)
        if hub is not None:
            return hub
    return TranscoderRef(local_path=local)


def scan_name(scan: str | Path | None) -> str | None:
    """The name that identifies a transcoder set to a reader (a viewer's ``scan``): never a
    local path, which would only mean something on the machine that wrote it.

    A registered name (``toy-world-plt``) or a hub id (``owner/repo[//sub/folder][@rev]``)
    stays; a shortcut (``gemma``) and an ``hf://`` URI become their hub id. A local folder
    (absolute, ``.``/``~``-relative or existing) becomes the registered name of that folder,
    else the ``scan`` of its ``config.yaml`` when that is a name, else the folder's own name.
    """
    if scan is None:
        return None
    from ct_engine.presets import TRANSCODERS

    text = str(scan)
    if text in TRANSCODERS:
        return text
    if text in SHORTCUTS:
        return SHORTCUTS[text]
    if text.startswith(HF_SCHEME):
        try:
            repo_id, path, revision = parse_hf_uri(text)
        except ValueError:
            return text
        return TranscoderRef(repo_id=repo_id, subfolder=path or None, revision=revision).scan
    if not _is_local_path(text):
        return text
    folder = Path(text).expanduser().resolve()
    for name, shipped in TRANSCODERS.items():
        if folder == shipped.resolve():
            return name
    configured = _configured_scan(folder)
    if configured is not None and not _is_local_path(configured):
        return configured
    return folder.name or "transcoders"


def _is_local_path(text: str) -> bool:
    """Whether a scan names a local folder rather than a hub id or a registered name."""
    return text.startswith((".", "~", "/")) or Path(text).is_absolute() or Path(text).exists()


def _configured_scan(folder: Path) -> str | None:
    """The ``scan`` string of ``folder/config.yaml``, if the file has one."""
    import yaml

    try:
        config = yaml.safe_load((folder / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    scan = config.get("scan") if isinstance(config, dict) else None
    return scan if isinstance(scan, str) and scan else None


# -------------------------------------------------------------------------------- downloads


def _hub_call(fn: Callable[[], T], what: str) -> T:
    """Run a hub client call, turning its failures into :class:`TranscoderDownloadError`."""
    from huggingface_hub import constants
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    failures: tuple[type[BaseException], ...] = (OSError, EntryNotFoundError, HFValidationError)
    try:
        import httpx

        failures += (httpx.HTTPError,)
    except ImportError:  # older hub clients use requests, whose errors are OSErrors
        pass
    try:
        return fn()
    except failures as err:
        hint = ""
        if constants.is_offline_mode():
            hint = (
                " HF_HUB_OFFLINE is set and the files are not in the local Hugging Face cache:"
                " pass a local directory, or run save_transcoders_to_cache while online."
            )
        raise TranscoderDownloadError(f"could not fetch {what} from the hub: {err}.{hint}") from err


def hub_file(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """Download (or find in the Hugging Face cache) one file of a hub repo."""
    from huggingface_hub import hf_hub_download

    return Path(
        _hub_call(
            lambda: hf_hub_download(repo_id, filename, revision=revision),
            f"{repo_id}/{filename}" + (f"@{revision}" if revision else ""),
        )
    )


def hf_uri_file(uri: str) -> Path:
    """Download the file named by ``hf://owner/repo/path[?revision=rev]``."""
    repo_id, path, revision = parse_hf_uri(uri)
    if not path:
        raise ValueError(f"hf:// URI does not name a file: {uri!r}")
    return hub_file(repo_id, path, revision)


def hub_config(ref: TranscoderRef) -> Path:
    """Download ``config.yaml`` from the reference's repo folder."""
    return hub_file(ref.repo_id, _in_folder(ref, "config.yaml"), ref.revision)


def hub_folder(ref: TranscoderRef, patterns: list[str]) -> Path:
    """Download files of the reference's folder matching ``patterns``; return the local folder."""
    from huggingface_hub import snapshot_download

    allow = [_in_folder(ref, p) for p in patterns]
    snapshot = _hub_call(
        lambda: snapshot_download(ref.repo_id, revision=ref.revision, allow_patterns=allow),
        str(ref),
    )
    return Path(snapshot) / (ref.subfolder or "")


def hub_entry(ref: TranscoderRef, entry: str) -> Path:
    """A file named relative to the reference's repo folder."""
    return hub_file(ref.repo_id, _in_folder(ref, entry), ref.revision)


def _in_folder(ref: TranscoderRef, name: str) -> str:
    return f"{ref.subfolder}/{name}" if ref.subfolder else name
