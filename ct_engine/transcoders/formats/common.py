"""Config parsing and validation helpers shared by the format readers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ..activations import ACTIVATION_NAMES
from ..errors import TranscoderFormatError

CONFIG_FILE = "config.yaml"
PLT_KIND = "transcoder_set"
CLT_KIND = "cross_layer_transcoder"
MODEL_KINDS = (PLT_KIND, CLT_KIND)
REQUIRED_CONFIG_KEYS = ("model_kind", "feature_input_hook", "feature_output_hook")


@dataclass(frozen=True)
class LoadOptions:
    """How to materialise weights, and the model dimensions to check them against.

    Attributes:
        dtype: dtype of the loaded parameters (lazy reads are converted on the fly).
        lazy_encoder: leave encoders on disk, re-read on every use.
        lazy_decoder: leave decoders on disk, read only the rows needed.
        d_model: the model's ``D``; a mismatch raises TranscoderFormatError.
        n_layers: the model's ``L``; a mismatch raises TranscoderFormatError.
    """

    dtype: torch.dtype = torch.float32
    lazy_encoder: bool = False
    lazy_decoder: bool = True
    d_model: int | None = None
    n_layers: int | None = None


@dataclass(frozen=True)
class ActivationSpec:
    """Activation chosen for a transcoder: ``name`` and, for TopK, ``k``."""

    name: str
    k: int | None = None


def read_config(directory: Path) -> dict[str, Any]:
    """Parse ``directory/config.yaml`` (TranscoderFormatError if absent or not a mapping)."""
    if not directory.is_dir():
        raise TranscoderFormatError("transcoder directory does not exist", file=directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise TranscoderFormatError(f"no {CONFIG_FILE} in the transcoder directory", file=path)
    return read_config_file(path)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse one config file, which must hold a YAML mapping."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise TranscoderFormatError(f"invalid YAML{where}: {problem}", file=path) from None
    except (ValueError, RecursionError) as err:
        # A tagged scalar that is no value (a date 2001-13-45, !!int x), bytes that are not
        # UTF-8, or nesting deeper than the parser's recursion.
        problem = "nested too deeply" if isinstance(err, RecursionError) else err
        raise TranscoderFormatError(f"invalid YAML: {problem}", file=path) from None
    if not isinstance(config, dict):
        raise TranscoderFormatError("config must be a YAML mapping", file=path)
    return config


def validate_config(config: Mapping[str, Any], file: Path) -> None:
    """Check the keys every config needs and the ``model_kind`` value."""
    for key in REQUIRED_CONFIG_KEYS:
        if key not in config:
            raise TranscoderFormatError("missing required config key", file=file, key=key)
        if not isinstance(config[key], str):
            raise TranscoderFormatError("config value must be a string", file=file, key=key)
    if config["model_kind"] not in MODEL_KINDS:
        raise TranscoderFormatError(
            f"unknown model_kind {config['model_kind']!r}; expected one of {MODEL_KINDS}",
            file=file,
            key="model_kind",
        )


def resolve_activation(
    config: Mapping[str, Any],
    *,
    config_file: Path,
    has_threshold: bool,
    threshold_file: Path,
    threshold_key: str,
    file_k: int | None = None,
    cross_layer: bool = False,
) -> ActivationSpec:
    """Pick the activation: config ``activation`` > threshold tensor present > ReLU.

    ``k`` for TopK comes from the config key ``k``, else from a ``k`` tensor in the layer file
    (``file_k``, as circuit-tracer's layer writer stores it).
    """
    name = config.get("activation")
    if name is None:
        name = "jump_relu" if has_threshold else "relu"
    if name not in ACTIVATION_NAMES:
        raise TranscoderFormatError(
            f"unknown activation {name!r}; expected one of {ACTIVATION_NAMES}",
            file=config_file,
            key="activation",
        )
    if cross_layer and name == "topk":
        raise TranscoderFormatError(
            "cross-layer transcoders support 'relu' and 'jump_relu' only",
            file=config_file,
            key="activation",
        )
    if name == "jump_relu" and not has_threshold:
        raise TranscoderFormatError(
            "activation is jump_relu but there are no thresholds",
            file=threshold_file,
            key=threshold_key,
        )
    if name != "topk":
        return ActivationSpec(name)
    k = config.get("k", file_k)
    if k is None:
        raise TranscoderFormatError("TopK activation needs k", file=config_file, key="k")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise TranscoderFormatError(
            f"k must be a positive integer, got {k!r}", file=config_file, key="k"
        )
    return ActivationSpec("topk", k)


def require_shape(
    shapes: Mapping[str, tuple[int, ...]],
    key: str,
    expected: tuple[int, ...],
    file: Path,
) -> None:
    """Raise TranscoderFormatError unless tensor ``key`` exists with shape ``expected``."""
    if key not in shapes:
        raise TranscoderFormatError("missing tensor", file=file, key=key)
    if tuple(shapes[key]) != tuple(expected):
        raise TranscoderFormatError(
            f"tensor has shape {tuple(shapes[key])}, expected {tuple(expected)}",
            file=file,
            key=key,
        )


def matrix_dims(
    shapes: Mapping[str, tuple[int, ...]],
    key: str,
    file: Path,
    *,
    transposed: bool = False,
    ndim: int = 2,
) -> tuple[int, ...]:
    """Shape of the (``ndim``-D) tensor ``key``; missing or wrong rank raises."""
    if key not in shapes:
        raise TranscoderFormatError("missing tensor", file=file, key=key)
    shape = tuple(shapes[key])
    if len(shape) != ndim:
        raise TranscoderFormatError(
            f"tensor must be {ndim}-D, has shape {shape}", file=file, key=key
        )
    return shape[::-1] if transposed else shape


def check_dims(
    n_features: int,
    d_model: int,
    *,
    expected: tuple[int, int] | None,
    options: LoadOptions,
    file: Path,
    key: str,
) -> None:
    """Check ``(F, D)`` of one layer against the model's ``D`` and against layer 0."""
    if options.d_model is not None and d_model != options.d_model:
        raise TranscoderFormatError(
            f"transcoder d_model is {d_model} but the model's d_model is {options.d_model}",
            file=file,
            key=key,
        )
    if expected is not None and (n_features, d_model) != expected:
        raise TranscoderFormatError(
            f"(d_transcoder, d_model) = {(n_features, d_model)} differs from layer 0's {expected}",
            file=file,
            key=key,
        )


def check_n_layers(n_layers: int, options: LoadOptions, file: Path, key: str) -> None:
    """Raise if the transcoders' layer count differs from the model's."""
    if options.n_layers is not None and n_layers != options.n_layers:
        raise TranscoderFormatError(
            f"found transcoders for {n_layers} layers but the model has {options.n_layers}",
            file=file,
            key=key,
        )


def check_layer_files(
    n_layers: int, options: LoadOptions, directory: Path, pattern: str, key: str
) -> None:
    """Like :func:`check_n_layers` for numbered files; names the first missing/extra file."""
    if options.n_layers is not None:
        first_bad = min(n_layers, options.n_layers)
        check_n_layers(
            n_layers, options, directory / pattern.format(i=first_bad), key.format(i=first_bad)
        )


def contiguous_layers(numbers: Iterable[int], directory: Path, pattern: str, key: str) -> int:
    """Number of layers ``L`` given the layer numbers found; a gap in ``0..L−1`` raises.

    ``pattern`` is the file name with ``{i}`` for the layer (used to name a missing file).
    """
    found = sorted(set(numbers))
    if not found:
        raise TranscoderFormatError(
            f"no {pattern.format(i='*')} files",
            file=directory / pattern.format(i=0),
            key=key.format(i=0),
        )
    for i in range(found[-1] + 1):
        if i not in found:
            raise TranscoderFormatError(
                f"layer {i} is missing: layer files must be numbered 0..{found[-1]} without gaps",
                file=directory / pattern.format(i=i),
                key=key.format(i=i),
            )
    return len(found)
