"""circuit-tracer's safetensors layouts, which are also our cache format.

Per-layer (PLT): ``layer_{i}.safetensors`` with ``W_enc (F, D)``, ``b_enc (F,)``,
``W_dec (F, D)``, ``b_dec (D,)``, optional ``activation_function.threshold (F,)``,
``W_skip (D, D)`` and (as circuit-tracer's layer writer stores it) a scalar ``k``.

Cross-layer (CLT): ``W_enc_{i}.safetensors`` with ``W_enc_{i} (F, D)``, ``b_enc_{i} (F,)``,
``b_dec_{i} (D,)``, optional ``threshold_{i} (F,)`` and, our extension, ``W_skip_{i} (D, D)``;
``W_dec_{i}.safetensors`` with ``W_dec_{i} (F, L − i, D)``.

Our writer differs from circuit-tracer's in two ways (its bugs):
CLT skip weights are written (``W_skip_{i}``) and TopK ``k`` is kept in the config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..base import Transcoders
from ..cross_layer import CrossLayerTranscoder
from ..errors import TranscoderFormatError
from ..lazy import LazyTensor, checked_weights, read_tensor, tensor_shapes
from ..transcoder_set import TranscoderSet
from .assemble import CrossLayerWeights, LayerWeights, build_cross_layer
from .common import (
    CLT_KIND,
    PLT_KIND,
    LoadOptions,
    check_dims,
    check_layer_files,
    contiguous_layers,
    matrix_dims,
    require_shape,
)

PLT_PATTERN = "layer_{i}.safetensors"
CLT_ENC_PATTERN = "W_enc_{i}.safetensors"
CLT_DEC_PATTERN = "W_dec_{i}.safetensors"
PLT_THRESHOLD_KEY = "activation_function.threshold"
# Config keys describing where weights came from; meaningless once re-saved in our format.
SOURCE_ONLY_KEYS = ("transcoders", "repo_id", "subfolder", "revision", "activation", "k")


def numbered_files(directory: Path, pattern: str) -> dict[int, Path]:
    """``{i: path}`` for files in ``directory`` matching ``pattern`` (``{i}`` = layer)."""
    prefix, suffix = pattern.split("{i}")
    regex = re.compile(rf"^{re.escape(prefix)}(\d+){re.escape(suffix)}$")
    found = {}
    for path in directory.iterdir():
        match = regex.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def _read(path: Path, keys: list[str], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return {key: checked_weights(f.get_tensor(key), dtype, path, key) for key in keys}


# ---------------------------------------------------------------------------------- readers


def read_plt_layer(
    path: Path,
    shapes: dict[str, tuple[int, ...]],
    options: LoadOptions,
    expected: tuple[int, int] | None,
) -> LayerWeights:
    """Read one circuit-tracer PLT layer file (``shapes`` = its header)."""
    n_features, d_model = matrix_dims(shapes, "W_enc", path)
    check_dims(n_features, d_model, expected=expected, options=options, file=path, key="W_enc")
    require_shape(shapes, "b_enc", (n_features,), path)
    require_shape(shapes, "W_dec", (n_features, d_model), path)
    require_shape(shapes, "b_dec", (d_model,), path)
    optional = []
    if PLT_THRESHOLD_KEY in shapes:
        require_shape(shapes, PLT_THRESHOLD_KEY, (n_features,), path)
        optional.append(PLT_THRESHOLD_KEY)
    if "W_skip" in shapes:
        require_shape(shapes, "W_skip", (d_model, d_model), path)
        optional.append("W_skip")
    eager = [
        key
        for key, lazy in (("W_enc", options.lazy_encoder), ("W_dec", options.lazy_decoder))
        if not lazy
    ]
    t = _read(path, ["b_enc", "b_dec", *optional, *eager], options.dtype)
    file_k = int(read_tensor(path, "k").reshape(-1)[0].item()) if "k" in shapes else None
    return LayerWeights(
        file=path,
        W_enc=t["W_enc"] if "W_enc" in t else LazyTensor(path, "W_enc", (n_features, d_model)),
        b_enc=t["b_enc"],
        W_dec=t["W_dec"] if "W_dec" in t else LazyTensor(path, "W_dec", (n_features, d_model)),
        b_dec=t["b_dec"],
        threshold=t.get(PLT_THRESHOLD_KEY),
        W_skip=t.get("W_skip"),
        threshold_key=PLT_THRESHOLD_KEY,
        skip_key="W_skip",
        file_k=file_k,
    )


def plt_layer_files(directory: Path, options: LoadOptions) -> list[Path]:
    """``layer_{i}.safetensors`` files of ``directory`` in layer order (gaps raise)."""
    files = numbered_files(directory, PLT_PATTERN)
    n_layers = contiguous_layers(files, directory, PLT_PATTERN, "W_enc")
    check_layer_files(n_layers, options, directory, PLT_PATTERN, "W_enc")
    return [files[i] for i in range(n_layers)]


def read_clt_directory(
    directory: Path,
    *,
    config: dict[str, Any],
    config_file: Path,
    options: LoadOptions,
    scan: str | list[str] | None,
) -> CrossLayerTranscoder:
    """Read a circuit-tracer CLT folder (``W_enc_{i}`` / ``W_dec_{i}`` files)."""
    enc_files = numbered_files(directory, CLT_ENC_PATTERN)
    n_layers = contiguous_layers(enc_files, directory, CLT_ENC_PATTERN, "W_enc_{i}")
    check_layer_files(n_layers, options, directory, CLT_ENC_PATTERN, "W_enc_{i}")
    dec_files = numbered_files(directory, CLT_DEC_PATTERN)
    mismatched = sorted(set(dec_files) ^ set(range(n_layers)))
    if mismatched:
        raise TranscoderFormatError(
            f"W_dec files must match the {n_layers} W_enc files",
            file=directory / CLT_DEC_PATTERN.format(i=mismatched[0]),
            key=f"W_dec_{mismatched[0]}",
        )
    w = CrossLayerWeights(
        files=[enc_files[i] for i in range(n_layers)],
        W_enc=[],
        b_enc=[],
        W_dec=[],
        b_dec=[],
        threshold=[],
        W_skip=[],
        threshold_key="threshold_0",
    )
    first_shapes = tensor_shapes(enc_files[0])
    expected = None
    for i in range(n_layers):
        enc_path, dec_path = enc_files[i], dec_files[i]
        shapes = tensor_shapes(enc_path)
        n_features, d_model = matrix_dims(shapes, f"W_enc_{i}", enc_path)
        check_dims(
            n_features, d_model, expected=expected, options=options, file=enc_path, key=f"W_enc_{i}"
        )
        expected = (n_features, d_model)
        require_shape(shapes, f"b_enc_{i}", (n_features,), enc_path)
        require_shape(shapes, f"b_dec_{i}", (d_model,), enc_path)
        keys = [f"b_enc_{i}", f"b_dec_{i}"]
        for name, shape in (("threshold", (n_features,)), ("W_skip", (d_model, d_model))):
            if (f"{name}_{i}" in shapes) != (f"{name}_0" in first_shapes):
                raise TranscoderFormatError(
                    "either every layer has this tensor or none has",
                    file=enc_path,
                    key=f"{name}_{i}",
                )
            if f"{name}_{i}" in shapes:
                require_shape(shapes, f"{name}_{i}", shape, enc_path)
                keys.append(f"{name}_{i}")
        dec_shape = (n_features, n_layers - i, d_model)
        require_shape(tensor_shapes(dec_path), f"W_dec_{i}", dec_shape, dec_path)
        if not options.lazy_encoder:
            keys.append(f"W_enc_{i}")
        t = _read(enc_path, keys, options.dtype)
        w.W_enc.append(
            LazyTensor(enc_path, f"W_enc_{i}", expected)
            if options.lazy_encoder
            else t[f"W_enc_{i}"]
        )
        w.b_enc.append(t[f"b_enc_{i}"])
        w.b_dec.append(t[f"b_dec_{i}"])
        w.threshold.append(t.get(f"threshold_{i}"))
        w.W_skip.append(t.get(f"W_skip_{i}"))
        if options.lazy_decoder:
            w.W_dec.append(LazyTensor(dec_path, f"W_dec_{i}", dec_shape))
        else:
            w.W_dec.append(_read(dec_path, [f"W_dec_{i}"], options.dtype)[f"W_dec_{i}"])
    if w.threshold[0] is None:
        w.threshold = None
    if w.W_skip[0] is None:
        w.W_skip = None
    return build_cross_layer(w, config=config, config_file=config_file, scan=scan)


# ---------------------------------------------------------------------------------- writers


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(path))


def write_transcoder_set(transcoders: TranscoderSet, directory: Path) -> None:
    """Write ``layer_{i}.safetensors`` for every layer (weights read one layer at a time)."""
    for layer, tc in enumerate(transcoders):
        tensors = {
            "W_enc": tc.encoder_weight(),
            "b_enc": tc.b_enc,
            "W_dec": tc.decoder_weight(),
            "b_dec": tc.b_dec,
        }
        if tc.activation_function.name == "jump_relu":
            tensors[PLT_THRESHOLD_KEY] = tc.activation_function.threshold
        if tc.W_skip is not None:
            tensors["W_skip"] = tc.W_skip
        _save(tensors, directory / PLT_PATTERN.format(i=layer))


def write_cross_layer(clt: CrossLayerTranscoder, directory: Path) -> None:
    """Write ``W_enc_{i}`` / ``W_dec_{i}`` files for every source layer, skip included."""
    for i in range(clt.n_layers):
        enc = {
            f"W_enc_{i}": clt.encoder_weight(i),
            f"b_enc_{i}": clt.b_enc[i],
            f"b_dec_{i}": clt.b_dec[i],
        }
        if clt.activation_name == "jump_relu":
            enc[f"threshold_{i}"] = clt.activation_function.layer_threshold(i)
        if clt.W_skip is not None:
            enc[f"W_skip_{i}"] = clt.W_skip[i]
        _save(enc, directory / CLT_ENC_PATTERN.format(i=i))
        _save({f"W_dec_{i}": clt.decoder_weight(i)}, directory / CLT_DEC_PATTERN.format(i=i))


def cache_config(transcoders: Transcoders) -> dict[str, Any]:
    """The ``config.yaml`` content for ``transcoders`` saved in our format.

    JumpReLU is implied by the thresholds (no ``activation`` key, as circuit-tracer expects);
    ReLU and TopK are explicit, with ``k`` for TopK.
    """
    source = transcoders.config
    config: dict[str, Any] = {"model_kind": CLT_KIND if transcoders.is_cross_layer else PLT_KIND}
    if "model_name" in source:
        config["model_name"] = source["model_name"]
    config["feature_input_hook"] = transcoders.feature_input_hook
    config["feature_output_hook"] = transcoders.feature_output_hook
    if transcoders.scan is not None:
        config["scan"] = transcoders.scan
    if transcoders.activation_name in ("relu", "topk"):
        config["activation"] = transcoders.activation_name
    if transcoders.activation_name == "topk":
        config["k"] = transcoders.topk_k
    for key, value in source.items():
        if key not in config and key not in SOURCE_ONLY_KEYS:
            config[key] = value
    return config
