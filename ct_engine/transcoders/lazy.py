"""Tensors left on disk in a safetensors file and read on demand (lazy encoder / decoder).

A :class:`LazyTensor` names a file and a key plus the small view change a source format
needs (a transpose for ``(D, F)`` encoders, dropping leading output layers of a stacked
cross-layer decoder). Reads convert to the caller's device and dtype, so a module that owns
lazy tensors keeps working after ``.to(device, dtype)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from .errors import TranscoderFormatError


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor in a safetensors file, read from the header only."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except FileNotFoundError as err:
        raise TranscoderFormatError("file does not exist", file=path) from err
    except Exception as err:  # safetensors raises its own error type for corrupt headers
        raise TranscoderFormatError(f"cannot read safetensors file: {err}", file=path) from err


def checked_weights(raw: torch.Tensor, dtype: torch.dtype, file: Path, key: str) -> torch.Tensor:
    """``raw`` as ``dtype``; a :class:`TranscoderFormatError` naming ``file`` and ``key`` if any
    value is NaN or infinite, in the file or once converted (a value past the dtype's range).

    Every reader passes its weights through here as it reads them: eager tensors at load,
    lazy ones when their rows are read, since scanning a lazy decoder at load would read all
    of what laziness leaves on disk. A NaN weight otherwise surfaces much later, as NaN
    attributions that pruning cannot rank."""
    converted = raw.to(dtype)
    if not converted.is_floating_point() or _all_finite(converted):
        return converted
    if raw.is_floating_point() and not _all_finite(raw):
        n_nan, n_inf = int(torch.isnan(raw).sum()), int(torch.isinf(raw).sum())
        first = tuple(int(i) for i in (~torch.isfinite(raw)).nonzero()[0])
        raise TranscoderFormatError(
            f"weights are not finite: {n_nan} NaN and {n_inf} infinite values, the first at "
            f"index {first}",
            file=file,
            key=key,
        )
    largest = float(raw.double().abs().max())
    raise TranscoderFormatError(
        f"weights overflow {str(dtype).removeprefix('torch.')} (largest magnitude {largest:g}): "
        "load them in a wider dtype",
        file=file,
        key=key,
    )


def _all_finite(t: torch.Tensor) -> bool:
    # in slices: one boolean temporary the size of a whole decoder would double its memory
    return all(bool(torch.isfinite(part).all()) for part in t.reshape(-1).split(1 << 24))


def read_tensor(path: Path, key: str) -> torch.Tensor:
    """Read one tensor from a safetensors file onto the CPU."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return f.get_tensor(key)


@dataclass(frozen=True)
class LazyTensor:
    """Tensor ``key`` of the safetensors file ``path``, as seen after an optional view change.

    Attributes:
        path: the safetensors file.
        key: tensor key inside the file.
        shape: shape of the tensor as the module sees it (after ``transpose`` / ``start``).
        transpose: stored as ``(D, F)``; the module sees ``(F, D)``.
        start: stored as ``(F, L, D)``; the module sees ``[:, start:, :]``.
    """

    path: Path
    key: str
    shape: tuple[int, ...]
    transpose: bool = False
    start: int = 0

    def read(self, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The whole tensor, ``shape``, on ``device`` in ``dtype``."""
        t = read_tensor(self.path, self.key)
        if self.transpose:
            t = t.T
        if self.start:
            t = t[:, self.start :]
        t = checked_weights(t, dtype, self.path, self.key)
        return t.to(device=device).contiguous()

    def read_rows(
        self, rows: torch.Tensor, *, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """Rows ``rows`` (LongTensor ``(n,)``, repeats allowed) → ``(n, *shape[1:])``.

        Each distinct row is read from disk once; only those rows are read.
        """
        rows = rows.reshape(-1)
        if rows.numel() == 0:
            return torch.empty((0, *self.shape[1:]), device=device, dtype=dtype)
        unique, inverse = torch.unique(rows.cpu(), return_inverse=True)
        with safe_open(str(self.path), framework="pt", device="cpu") as f:
            view = f.get_slice(self.key)
            t = view[:, unique].T if self.transpose else view[unique]
        if self.start:
            t = t[:, self.start :]
        t = checked_weights(t, dtype, self.path, self.key)
        return t.to(device=device)[inverse.to(device)]
