"""Errors raised while reading, validating or fetching transcoders."""

from __future__ import annotations

from os import PathLike


class TranscoderFormatError(ValueError):
    """A transcoder folder, file or tensor does not have the expected layout.

    ``file`` is the offending file (or folder) and ``key`` the offending config key or tensor
    key; both are named in ``str(err)`` when given.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | PathLike[str] | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.key = key
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"file: {self.file}")
        if self.key is not None:
            where.append(f"key: {self.key!r}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class TranscoderDownloadError(OSError):
    """A transcoder reference could not be fetched from the Hugging Face hub.

    Raised instead of the hub client's own errors, with the reference and, in offline mode
    (``HF_HUB_OFFLINE=1``), a hint on how to make the files available locally.
    """
