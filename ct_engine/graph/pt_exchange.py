"""Exchange with circuit-tracer: its ``Graph.to_pt`` / ``Graph.from_pt`` ``.pt`` files.

A circuit-tracer graph file is ``torch.save`` (zip format, pickle protocol 2) of the dict::

    {"input_string", "adjacency_matrix" (dense), "cfg" (UnifiedConfig), "active_features",
     "logit_targets" (list[LogitTarget]), "logit_probabilities", "vocab_size", "input_tokens",
     "selected_features", "activation_values", "scan"}

:func:`write_pt` writes exactly that, with ``cfg`` and the targets pickled under circuit-tracer's
class names (see :mod:`ct_engine.graph._pt_pickle`), so circuit-tracer 0.5.0 loads it.

:func:`read_pt` never runs ``torch.load``'s full unpickler: it opens the zip itself and
unpickles ``data.pkl`` with :class:`~ct_engine.graph._pt_pickle.RestrictedUnpickler`, which
refuses every global outside a short allow-list, because a ``.pt`` file can otherwise execute
arbitrary code. It also reads older layouts: ``logit_targets`` (or ``logit_tokens``) stored as a
tensor of token ids, ``scan_name`` instead of ``scan``, and a TransformerLens
``HookedTransformerConfig`` as ``cfg``.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import pickletools
import sys
import uuid
import zipfile
import zlib
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from ct_engine.graph._pt_pickle import (
    PickledConfig,
    PickledLogitTarget,
    RestrictedUnpickler,
    TorchPickleModule,
    UnsafePickleError,
)
from ct_engine.graph.config import LogitTarget, ModelConfig
from ct_engine.graph.graph import Graph

_TENSOR_KEYS = (
    "input_tokens",
    "active_features",
    "activation_values",
    "selected_features",
    "adjacency_matrix",
    "logit_probabilities",
)
# What a damaged data.pkl makes the unpickler raise (UnsafePickleError aside): truncated or
# unknown opcodes, a stack or memo it does not hold, arguments the allowed classes refuse.
_DAMAGED_PICKLE = (
    pickle.UnpicklingError,
    EOFError,
    LookupError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
    RecursionError,
    RuntimeError,
    MemoryError,
)
_KNOWN_KEYS = {
    *_TENSOR_KEYS,
    "input_string",
    "cfg",
    "logit_targets",
    "logit_tokens",
    "vocab_size",
    "scan",
    "scan_name",
}


def write_pt(graph: Graph, path: str | PathLike[str], scan_key: str = "scan") -> None:
    """Write ``graph`` as circuit-tracer's ``Graph.to_pt`` would; atomic.

    Args:
        graph: the graph; a sparse adjacency is written dense (circuit-tracer needs dense).
        path: destination ``.pt``.
        scan_key: ``"scan"`` (circuit-tracer 0.5.0) or ``"scan_name"`` (later versions).
    """
    if scan_key not in ("scan", "scan_name"):
        raise ValueError("scan_key must be 'scan' or 'scan_name'")
    payload = {
        "input_string": graph.input_string,
        "adjacency_matrix": _cpu(graph.dense_adjacency()),
        "cfg": graph.cfg,
        "active_features": _cpu(graph.active_features),
        "logit_targets": list(graph.logit_targets),
        "logit_probabilities": _cpu(graph.logit_probabilities),
        "vocab_size": graph.vocab_size,
        "input_tokens": _cpu(graph.input_tokens),
        "selected_features": _cpu(graph.selected_features),
        "activation_values": _cpu(graph.activation_values),
        scan_key: graph.scan,
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle, pickle_module=TorchPickleModule, pickle_protocol=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_pt(path: str | PathLike[str], map_location: str | torch.device = "cpu") -> Graph:
    """Load a circuit-tracer graph ``.pt`` safely (see the module docstring).

    Raises:
        FileNotFoundError: no file at ``path``; ``IsADirectoryError``: a folder.
        UnsafePickleError: the file references anything but tensors and graph classes, or
            declares more data than it holds.
        ValueError: not a torch zip archive, or not a graph.
    """
    payload = load_pt_payload(path)
    return graph_from_payload(payload).to(map_location)


def load_pt_payload(path: str | PathLike[str]) -> Any:
    """Unpickle the object inside a torch zip archive with the restricted unpickler."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"graph file {path} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, not a graph file")
    try:
        if not zipfile.is_zipfile(path):  # which raises BadZipFile on some damaged end records
            raise ValueError(
                f"{path} is not a torch zip archive (legacy torch.save formats unsupported)"
            )
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive, path)
            names = set(archive.namelist())
            byteorder_record = prefix + "byteorder"
            if byteorder_record in names:
                byteorder = archive.read(byteorder_record).decode()
                if byteorder != sys.byteorder:
                    raise ValueError(f"{path} was written {byteorder}-endian; this machine is not")
            storages: dict[str, torch.Tensor] = {}

            def load_storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
                if key in storages:
                    storage = storages[key]
                    if storage.dtype != dtype or len(storage) != numel:
                        raise UnsafePickleError(f"storage {key!r} is used with two different types")
                    return storage
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise UnsafePickleError(f"storage record {key!r} is missing from the archive")
                storages[key] = _read_storage(archive, record, dtype, numel)
                return storages[key]

            data = io.BytesIO(archive.read(prefix + "data.pkl"))
            try:
                _check_memo(data.getvalue())
                return RestrictedUnpickler(data, load_storage).load()
            except UnsafePickleError as err:
                raise UnsafePickleError(f"{path}: {err}") from None
            except _DAMAGED_PICKLE as err:  # opcodes or arguments no torch.save writes
                detail = (str(err).splitlines() or [""])[0]
                raise ValueError(
                    f"{path}: data.pkl is not a readable pickle ({type(err).__name__}: {detail})"
                ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as err:
        # A bad CRC, a broken deflate stream, a truncated record, an unknown compression, an
        # encrypted record.
        raise ValueError(f"{path} is a damaged zip archive: {err}") from None
    except OSError as err:
        if err.errno != errno.EINVAL:  # permissions, the disk: not the file's content
            raise
        raise ValueError(f"{path} is a damaged zip archive: a record lies outside it") from None


def _check_memo(pickled: bytes) -> None:
    """Refuse memo slots past the pickle's own size: CPython's unpickler sizes its memo to the
    largest slot it is given, so six bytes (``LONG_BINPUT`` 2**30) would allocate gigabytes."""
    try:
        for opcode, arg, _ in pickletools.genops(pickled):
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > len(pickled):
                raise UnsafePickleError(
                    f"memo slot {arg} is past the pickle's {len(pickled)} bytes"
                )
    except ValueError:  # an opcode genops cannot read: the unpickler refuses it too
        return


def graph_from_payload(payload: Any) -> Graph:
    """Build a :class:`Graph` from an unpickled circuit-tracer ``to_pt`` dict."""
    if not isinstance(payload, dict) or not all(isinstance(k, str) for k in payload):
        raise ValueError("a graph .pt must hold a dict with string keys")
    missing = [k for k in (*_TENSOR_KEYS, "input_string", "cfg") if k not in payload]
    if "logit_targets" not in payload and "logit_tokens" not in payload:
        missing.append("logit_targets")
    if missing:
        raise ValueError(f"graph .pt is missing {missing}")
    tensors = {}
    for key in _TENSOR_KEYS:
        value = payload[key]
        if type(value) is not torch.Tensor:
            raise ValueError(f"graph .pt field {key!r} is not a tensor")
        tensors[key] = value.detach()
    cfg = _config(payload["cfg"])
    targets = payload.get("logit_targets", payload.get("logit_tokens"))
    scan = payload.get("scan", payload.get("scan_name"))
    vocab_size = payload.get("vocab_size")
    ignored = sorted(set(payload) - _KNOWN_KEYS)
    return Graph(
        input_string=_checked(payload["input_string"], str, "input_string"),
        logit_targets=_logit_targets(targets),
        vocab_size=cfg.d_vocab if vocab_size is None else _checked(vocab_size, int, "vocab_size"),
        cfg=cfg,
        scan=_scan(scan),
        meta={"pt_ignored_keys": ignored} if ignored else {},
        **tensors,
    )


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu()


def _archive_prefix(archive: zipfile.ZipFile, path: Any) -> str:
    """The top-level folder holding ``data.pkl`` (torch names it after the file)."""
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise ValueError(f"{path}: expected one '<name>/data.pkl' record, found {len(pickles)}")
    return pickles[0][: -len("data.pkl")]


def _read_storage(
    archive: zipfile.ZipFile, record: str, dtype: torch.dtype, numel: int
) -> torch.Tensor:
    """``(numel,)`` tensor of ``dtype`` holding the bytes of one storage record."""
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    info = archive.getinfo(record)
    if info.file_size != nbytes:
        raise UnsafePickleError(f"storage record {record!r} does not hold {numel} {dtype} values")
    # torch.save stores records uncompressed: a compressed one could inflate far past the
    # file's size, and the buffer below is allocated before a byte is read.
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        raise UnsafePickleError(f"storage record {record!r} is compressed; torch never does that")
    if info.header_offset + info.compress_size > os.path.getsize(archive.filename):
        raise UnsafePickleError(f"storage record {record!r} runs past the end of the file")
    buffer = torch.empty(nbytes, dtype=torch.uint8)
    view = memoryview(buffer.numpy())
    with archive.open(record) as stream:
        filled = 0
        while filled < nbytes:
            n = stream.readinto(view[filled:])
            if not n:
                raise UnsafePickleError(f"storage record {record!r} is truncated")
            filled += n
    return buffer.view(dtype)


def _config(value: Any) -> ModelConfig:
    if isinstance(value, PickledConfig):
        return ModelConfig.from_dict(getattr(value, "state", {}))
    if isinstance(value, dict):
        return ModelConfig.from_dict(value)
    raise ValueError(f"graph .pt 'cfg' has unsupported type {type(value).__name__}")


def _logit_targets(value: Any) -> list[LogitTarget]:
    if type(value) is torch.Tensor:
        return [LogitTarget("", int(i)) for i in value.flatten().tolist()]
    if not isinstance(value, list):
        raise ValueError("graph .pt 'logit_targets' must be a list or a tensor")
    targets = []
    for item in value:
        if not isinstance(item, (PickledLogitTarget, tuple)) or len(item) != 2:
            raise ValueError("graph .pt logit target is not a (token_str, vocab_idx) pair")
        token_str, vocab_idx = item
        targets.append(
            LogitTarget(
                _checked(token_str, str, "token_str"), _checked(vocab_idx, int, "vocab_idx")
            )
        )
    return targets


def _scan(value: Any) -> str | list[str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("graph .pt 'scan' must be a string, a list of strings or None")


def _checked(value: Any, kind: type, name: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ValueError(f"graph .pt field {name!r} must be {kind.__name__}")
    return value
