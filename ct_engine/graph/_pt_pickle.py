"""Pickling that speaks circuit-tracer's ``.pt`` dialect, without importing circuit-tracer.

A circuit-tracer graph file is ``torch.save`` of a dict whose pickle references, besides torch's
tensor machinery, two circuit-tracer classes: ``LogitTarget`` (a NamedTuple, pickled as
``NEWOBJ(cls, (token_str, vocab_idx))``) and ``UnifiedConfig`` (a dataclass, pickled as
``NEWOBJ(cls, ())`` followed by ``BUILD`` with its ``__dict__``, whose ``dtype`` is usually a
``torch.dtype`` global such as ``torch.float32``).

* :class:`CircuitTracerPickler` writes our :class:`LogitTarget` / :class:`ModelConfig` as exactly
  those opcodes, naming circuit-tracer's classes by module and name only.
* :class:`RestrictedUnpickler` reads such files. Unpickling can call any global a file names, so
  ``find_class`` admits only a fixed table of harmless callables (tensor rebuilding, storage
  types, dtypes, ``OrderedDict``, and inert stand-ins for circuit-tracer's and TransformerLens'
  classes); anything else raises :class:`UnsafePickleError` before it is imported or called.
"""

from __future__ import annotations

import collections
import math
import pickle
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from ct_engine.graph.config import LogitTarget, ModelConfig

CT_LOGIT_TARGET = ("circuit_tracer.attribution.targets", "LogitTarget")
CT_UNIFIED_CONFIG = ("circuit_tracer.utils.tl_nnsight_mapping", "UnifiedConfig")

# Field order of circuit-tracer's UnifiedConfig.__dict__ (all fields, None included).
_UNIFIED_CONFIG_FIELDS = (
    "n_layers",
    "d_model",
    "d_head",
    "n_heads",
    "d_mlp",
    "d_vocab",
    "tokenizer_name",
    "model_name",
    "original_architecture",
    "n_key_value_heads",
    "dtype",
)

STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}

_TORCH_DTYPES = {
    name: dtype
    for name in (
        "float32",
        "float64",
        "float16",
        "bfloat16",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "bool",
        "complex64",
        "complex128",
    )
    if isinstance(dtype := getattr(torch, name), torch.dtype)
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced a global outside the allowed table, or was malformed."""


# -- writing ---------------------------------------------------------------------------------


class _GlobalRef:
    """Memo key for a class written by name (one per referenced class)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


_REFS = {ref: _GlobalRef(*ref) for ref in (CT_LOGIT_TARGET, CT_UNIFIED_CONFIG)}


class CircuitTracerPickler(pickle._Pickler):
    """Pure-Python pickler writing our graph values as circuit-tracer's classes.

    Used as ``torch.save(..., pickle_module=TorchPickleModule)``: torch subclasses it to add
    its ``persistent_id`` for tensor storages, so tensors are stored exactly as ``torch.save``
    stores them.
    """

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if type(obj) is LogitTarget:
            self._save_newobj(obj, CT_LOGIT_TARGET, (obj.token_str, obj.vocab_idx), None)
        elif type(obj) is ModelConfig:
            self._save_newobj(obj, CT_UNIFIED_CONFIG, (), unified_config_state(obj))
        else:
            super().save(obj, save_persistent_id)

    def _save_newobj(
        self, obj: Any, ref: tuple[str, str], args: tuple, state: dict[str, Any] | None
    ) -> None:
        """``cls.__new__(cls, *args)`` (+ ``BUILD state``), as pickle does for these classes."""
        if id(obj) in self.memo:
            self.write(self.get(self.memo[id(obj)][0]))
            return
        self._save_global_ref(_REFS[ref])
        self.save(args)
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        if state is not None:
            self.save(state)
            self.write(pickle.BUILD)

    def _save_global_ref(self, ref: _GlobalRef) -> None:
        if id(ref) in self.memo:
            self.write(self.get(self.memo[id(ref)][0]))
            return
        if self.proto >= 4:
            self.save(ref.module)
            self.save(ref.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{ref.module}\n{ref.name}\n".encode())
        self.memoize(ref)


class TorchPickleModule:
    """The ``pickle_module`` handed to ``torch.save``."""

    Pickler = CircuitTracerPickler


def unified_config_state(cfg: ModelConfig) -> dict[str, Any]:
    """circuit-tracer's ``UnifiedConfig.__dict__`` for ``cfg``; dtype names become torch dtypes."""
    state = {name: getattr(cfg, name) for name in _UNIFIED_CONFIG_FIELDS}
    state["dtype"] = _TORCH_DTYPES.get(state["dtype"], state["dtype"])
    return state


# -- reading ---------------------------------------------------------------------------------


class PickledLogitTarget(NamedTuple):
    """Inert stand-in for circuit-tracer's ``LogitTarget`` while unpickling."""

    token_str: str
    vocab_idx: int


class PickledConfig:
    """Inert stand-in for circuit-tracer's ``UnifiedConfig`` or TransformerLens'
    ``HookedTransformerConfig``: it only records the pickled ``__dict__``."""

    def __init__(self, *args: Any, **kwargs: Any):
        if args or kwargs:
            raise UnsafePickleError("config stand-in takes no constructor arguments")
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise UnsafePickleError("config state must be a dict with string keys")
        self.state = dict(state)


class StorageType:
    """Marker for a pickled ``torch.<Type>Storage`` class: which dtype its bytes hold."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _NumpyDtype:
    """Stand-in for ``numpy.dtype`` (numeric kinds only), as pickled by TransformerLens configs."""

    def __init__(self, name: Any, align: Any = False, copy: Any = True):
        if not isinstance(name, str):
            raise UnsafePickleError("numpy dtype name must be a string")
        dtype = np.dtype(name)
        if dtype.kind not in "biufc":
            raise UnsafePickleError(f"refusing non-numeric numpy dtype {name!r}")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "=", "|"):
            self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_scalar(dtype: Any, data: Any = None) -> int | float | complex | bool:
    """``numpy.core.multiarray.scalar`` for numeric dtypes, returned as a Python number."""
    if not isinstance(dtype, _NumpyDtype) or not isinstance(data, bytes):
        raise UnsafePickleError("malformed numpy scalar")
    if len(data) != dtype.dtype.itemsize:
        raise UnsafePickleError("numpy scalar has the wrong number of bytes")
    return np.frombuffer(data, dtype=dtype.dtype)[0].item()


def _latin1_encode(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes`` (latin-1 only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("only latin-1 encoding of strings is allowed")
    return text.encode("latin1")


def _device(spec: Any, index: Any = None) -> torch.device:
    if not isinstance(spec, str) or not (index is None or isinstance(index, int)):
        raise UnsafePickleError("malformed torch.device")
    return torch.device(spec) if index is None else torch.device(spec, index)


def _rebuild_tensor(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    """Safe ``torch._utils._rebuild_tensor_v2``: a strided view of a loaded storage."""
    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise UnsafePickleError("tensor storage must come from the archive")
    if not (_int_tuple(size) and _int_tuple(stride) and type(storage_offset) is int):
        raise UnsafePickleError("malformed tensor size/stride/offset")
    if len(size) != len(stride) or storage_offset < 0 or any(s < 0 for s in (*size, *stride)):
        raise UnsafePickleError("malformed tensor size/stride/offset")
    if backward_hooks not in (None, {}) or metadata not in (None, {}):
        raise UnsafePickleError("tensors with hooks or metadata are not allowed")
    if any(n == 0 for n in size):
        return torch.empty(size, dtype=storage.dtype)
    extent = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
    if extent > len(storage):
        raise UnsafePickleError("tensor view runs past the end of its storage")
    # A zero or overlapping stride lets a few stored bytes declare a huge tensor (a 3 KB file,
    # a 100,000-node adjacency) that takes its full size once anything copies it: a tensor
    # may hold no more values than the file stores for it.
    numel = math.prod(size)
    if numel > len(storage) - storage_offset:
        raise UnsafePickleError(
            f"a tensor of shape {tuple(size)} ({numel:,} values) is declared over "
            f"{len(storage) - storage_offset:,} stored values"
        )
    return storage.as_strided(size, stride, storage_offset)


def _int_tuple(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(type(v) is int for v in value)


_CONFIG_CLASSES = (
    CT_UNIFIED_CONFIG,
    ("transformer_lens.HookedTransformerConfig", "HookedTransformerConfig"),
    ("transformer_lens.config.HookedTransformerConfig", "HookedTransformerConfig"),
    ("transformer_lens.config", "HookedTransformerConfig"),
)

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch", "device"): _device,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "dtype"): _NumpyDtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    CT_LOGIT_TARGET: PickledLogitTarget,
    **{ref: PickledConfig for ref in _CONFIG_CLASSES},
    **{("torch", name): StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
    **{("torch", name): dtype for name, dtype in _TORCH_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for graph ``.pt`` files that can only build the values such files hold.

    Args:
        file: the ``data.pkl`` stream.
        load_storage: ``(key, dtype, numel) -> (numel,) tensor`` reading one storage record.
    """

    def __init__(self, file: Any, load_storage: Callable[[str, torch.dtype, int], torch.Tensor]):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"refusing to load global '{module}.{name}': a graph .pt may only reference "
                "torch tensors and circuit-tracer's graph classes"
            ) from None

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"unsupported persistent id {pid!r:.100}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, StorageType):
            raise UnsafePickleError("persistent id does not name a torch storage type")
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise UnsafePickleError("malformed storage record")
        return self._load_storage(key, storage_type.dtype, numel)
