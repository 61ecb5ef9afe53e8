"""GemmaScope (``.npz``) and GemmaScope-2 (safetensors, PLT and CLT) per-layer files.

These files are listed one per layer in a config's ``transcoders:`` list. Encoders are stored
``(D, F)`` and transposed to the module's ``(F, D)``.

* GemmaScope ``.npz``: ``W_enc (D, F)``, ``W_dec (F, D)``, ``b_enc (F,)``, ``b_dec (D,)``,
  ``threshold (F,)``. Always loaded eagerly (npz members cannot be sliced lazily).
* GemmaScope-2 PLT: ``w_enc (D, F)``, ``w_dec (F, D)``, ``b_enc``, ``b_dec``, ``threshold``,
  optional ``affine_skip_connection (D_in, D_out)``; ``W_skip = affineᵀ`` so that the PLT's
  ``x @ W_skipᵀ`` equals ``x @ affine``.
* GemmaScope-2 CLT: file ``i`` holds ``w_enc (D, F)``, ``w_dec (F, L, D)`` (only ``[:, i:, :]``
  is kept: writes to earlier layers are discarded), ``b_enc``, ``b_dec``, ``threshold``,
  optional ``affine_skip_connection`` stacked as is (the CLT applies ``x @ W_skip[j]``).
  Every listed layer is stacked (circuit-tracer drops the last one).

Unlike circuit-tracer, GemmaScope-2 files can be loaded lazily: a lazy encoder is read whole
and transposed, lazy decoder rows are sliced straight from ``w_dec``.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from ..errors import TranscoderFormatError
from ..lazy import LazyTensor, checked_weights, tensor_shapes
from .assemble import CrossLayerWeights, LayerWeights
from .common import LoadOptions, check_dims, check_n_layers, matrix_dims, require_shape

GS2_SKIP_KEY = "affine_skip_connection"


def read_npz_layer(
    path: Path, options: LoadOptions, expected: tuple[int, int] | None
) -> LayerWeights:
    """Read one GemmaScope ``params.npz`` (never lazy, never unpickles)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    # zipfile's own errors too: a truncated or badly deflated record (EOFError, zlib.error),
    # an encrypted one (RuntimeError), a compression it lacks (NotImplementedError).
    except (OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as err:
        raise TranscoderFormatError(f"cannot read npz file: {err}", file=path) from err
    except (zipfile.BadZipFile, zlib.error) as err:
        raise TranscoderFormatError(f"cannot read npz file: {err}", file=path) from err
    shapes = {key: tuple(a.shape) for key, a in arrays.items()}
    n_features, d_model = matrix_dims(shapes, "W_enc", path, transposed=True)
    check_dims(n_features, d_model, expected=expected, options=options, file=path, key="W_enc")
    require_shape(shapes, "W_dec", (n_features, d_model), path)
    require_shape(shapes, "b_enc", (n_features,), path)
    require_shape(shapes, "b_dec", (d_model,), path)
    if "threshold" in shapes:
        require_shape(shapes, "threshold", (n_features,), path)

    def tensor(key: str) -> torch.Tensor:
        raw = torch.from_numpy(np.ascontiguousarray(arrays[key]))
        return checked_weights(raw, options.dtype, path, key)

    return LayerWeights(
        file=path,
        W_enc=tensor("W_enc").T.contiguous(),
        b_enc=tensor("b_enc"),
        W_dec=tensor("W_dec"),
        b_dec=tensor("b_dec"),
        threshold=tensor("threshold") if "threshold" in arrays else None,
        W_skip=None,
        threshold_key="threshold",
        skip_key=GS2_SKIP_KEY,
    )


def _reader(path: Path, dtype: torch.dtype):
    """``read(f, key)``: tensor ``key`` of the open safetensors file ``f`` as ``dtype``, checked."""

    def read(f, key: str) -> torch.Tensor:
        return checked_weights(f.get_tensor(key), dtype, path, key)

    return read


def read_gs2_layer(
    path: Path,
    shapes: dict[str, tuple[int, ...]],
    options: LoadOptions,
    expected: tuple[int, int] | None,
) -> LayerWeights:
    """Read one GemmaScope-2 per-layer safetensors file (``shapes`` = its header)."""
    n_features, d_model = matrix_dims(shapes, "w_enc", path, transposed=True)
    check_dims(n_features, d_model, expected=expected, options=options, file=path, key="w_enc")
    require_shape(shapes, "w_dec", (n_features, d_model), path)
    require_shape(shapes, "b_enc", (n_features,), path)
    require_shape(shapes, "b_dec", (d_model,), path)
    optional = []
    if "threshold" in shapes:
        require_shape(shapes, "threshold", (n_features,), path)
        optional.append("threshold")
    if GS2_SKIP_KEY in shapes:
        require_shape(shapes, GS2_SKIP_KEY, (d_model, d_model), path)
        optional.append(GS2_SKIP_KEY)
    dims = (n_features, d_model)
    read = _reader(path, options.dtype)
    with safe_open(str(path), framework="pt", device="cpu") as f:
        t = {key: read(f, key) for key in ("b_enc", "b_dec", *optional)}
        W_enc = (
            LazyTensor(path, "w_enc", dims, transpose=True)
            if options.lazy_encoder
            else read(f, "w_enc").T.contiguous()
        )
        W_dec = LazyTensor(path, "w_dec", dims) if options.lazy_decoder else read(f, "w_dec")
    skip = t.get(GS2_SKIP_KEY)
    return LayerWeights(
        file=path,
        W_enc=W_enc,
        b_enc=t["b_enc"],
        W_dec=W_dec,
        b_dec=t["b_dec"],
        threshold=t.get("threshold"),
        W_skip=None if skip is None else skip.T.contiguous(),
        threshold_key="threshold",
        skip_key=GS2_SKIP_KEY,
    )


def read_gs2_cross_layer(
    paths: list[Path], options: LoadOptions, config_file: Path
) -> CrossLayerWeights:
    """Read GemmaScope-2 CLT files, ``paths[i]`` = source layer ``i``; all layers are kept."""
    n_layers = len(paths)
    check_n_layers(n_layers, options, config_file, "transcoders")
    w = CrossLayerWeights(
        files=list(paths),
        W_enc=[],
        b_enc=[],
        W_dec=[],
        b_dec=[],
        threshold=[],
        W_skip=[],
        threshold_key="threshold",
    )
    first_shapes = tensor_shapes(paths[0])
    expected = None
    for i, path in enumerate(paths):
        shapes = first_shapes if i == 0 else tensor_shapes(path)
        n_features, d_model = matrix_dims(shapes, "w_enc", path, transposed=True)
        check_dims(n_features, d_model, expected=expected, options=options, file=path, key="w_enc")
        expected = (n_features, d_model)
        require_shape(shapes, "w_dec", (n_features, n_layers, d_model), path)
        require_shape(shapes, "b_enc", (n_features,), path)
        require_shape(shapes, "b_dec", (d_model,), path)
        keys = ["b_enc", "b_dec"]
        for key, shape in (("threshold", (n_features,)), (GS2_SKIP_KEY, (d_model, d_model))):
            if (key in shapes) != (key in first_shapes):
                raise TranscoderFormatError(
                    "either every layer has this tensor or none has", file=path, key=key
                )
            if key in shapes:
                require_shape(shapes, key, shape, path)
                keys.append(key)
        read = _reader(path, options.dtype)
        with safe_open(str(path), framework="pt", device="cpu") as f:
            t = {key: read(f, key) for key in keys}
            if options.lazy_encoder:
                w.W_enc.append(LazyTensor(path, "w_enc", expected, transpose=True))
            else:
                w.W_enc.append(read(f, "w_enc").T.contiguous())
            dec_shape = (n_features, n_layers - i, d_model)
            if options.lazy_decoder:
                w.W_dec.append(LazyTensor(path, "w_dec", dec_shape, start=i))
            else:
                dec = f.get_slice("w_dec")[:, i:, :]
                w.W_dec.append(checked_weights(dec, options.dtype, path, "w_dec").contiguous())
        w.b_enc.append(t["b_enc"])
        w.b_dec.append(t["b_dec"])
        w.threshold.append(t.get("threshold"))
        w.W_skip.append(t.get(GS2_SKIP_KEY))
    if w.threshold[0] is None:
        w.threshold = None
    if w.W_skip[0] is None:
        w.W_skip = None
    return w
