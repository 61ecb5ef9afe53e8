"""Turn per-format weight records into transcoder modules, checking cross-layer consistency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..activations import make_activation
from ..cross_layer import CrossLayerTranscoder
from ..errors import TranscoderFormatError
from ..lazy import LazyTensor
from ..single_layer import PerLayerTranscoder
from ..transcoder_set import TranscoderSet
from .common import ActivationSpec, LoadOptions, check_n_layers, resolve_activation


@dataclass
class LayerWeights:
    """Weights of one per-layer transcoder as read from one file, in module conventions.

    Shapes: ``W_enc (F, D)``, ``b_enc (F,)``, ``W_dec (F, D)``, ``b_dec (D,)``,
    ``threshold (F,)``, ``W_skip (D, D)`` applied as ``x @ W_skip.T``.
    """

    file: Path
    W_enc: torch.Tensor | LazyTensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor | LazyTensor
    b_dec: torch.Tensor
    threshold: torch.Tensor | None
    W_skip: torch.Tensor | None
    threshold_key: str
    skip_key: str
    file_k: int | None = None

    @property
    def dims(self) -> tuple[int, int]:
        """``(F, D)``."""
        return self.b_enc.shape[0], self.b_dec.shape[0]


def build_transcoder_set(
    layers: list[LayerWeights],
    *,
    config: dict[str, Any],
    config_file: Path,
    options: LoadOptions,
    scan: str | list[str] | None,
    layers_key: str,
) -> TranscoderSet:
    """Build a :class:`TranscoderSet`; activation and skip must agree across layers.

    ``layers_key`` names what lists the layers (a config key or a tensor key) in the error
    raised when the layer count differs from the model's.
    """
    check_n_layers(len(layers), options, config_file, layers_key)
    first_spec: ActivationSpec | None = None
    modules = []
    for layer, w in enumerate(layers):
        spec = resolve_activation(
            config,
            config_file=config_file,
            has_threshold=w.threshold is not None,
            threshold_file=w.file,
            threshold_key=w.threshold_key,
            file_k=w.file_k,
        )
        if first_spec is None:
            first_spec = spec
        elif spec != first_spec:
            raise TranscoderFormatError(
                f"layer {layer} resolves to activation {spec} but layer 0 to {first_spec}",
                file=w.file,
                key=w.threshold_key,
            )
        if (w.W_skip is None) != (layers[0].W_skip is None):
            raise TranscoderFormatError(
                "either every layer has a skip connection or none has",
                file=w.file,
                key=w.skip_key,
            )
        modules.append(
            PerLayerTranscoder(
                W_enc=w.W_enc,
                b_enc=w.b_enc,
                W_dec=w.W_dec,
                b_dec=w.b_dec,
                W_skip=w.W_skip,
                layer_idx=layer,
                activation_function=make_activation(spec.name, threshold=w.threshold, k=spec.k),
            )
        )
    return TranscoderSet(
        modules,
        feature_input_hook=config["feature_input_hook"],
        feature_output_hook=config["feature_output_hook"],
        scan=scan,
        config=config,
    )


@dataclass
class CrossLayerWeights:
    """Weights of a cross-layer transcoder, one entry per source layer ``i``.

    Shapes: ``W_enc[i] (F, D)``, ``b_enc[i] (F,)``, ``W_dec[i] (F, L − i, D)``,
    ``b_dec[i] (D,)``, ``threshold[i] (F,)``, ``W_skip[i] (D, D)`` applied as ``x @ W_skip``.
    ``files[i]`` holds the encoder of layer ``i``; the ``*_key`` fields name the tensor keys
    of layer 0 for error messages.
    """

    files: list[Path]
    W_enc: list[torch.Tensor | LazyTensor]
    b_enc: list[torch.Tensor]
    W_dec: list[torch.Tensor | LazyTensor]
    b_dec: list[torch.Tensor]
    threshold: list[torch.Tensor] | None
    W_skip: list[torch.Tensor] | None
    threshold_key: str


def build_cross_layer(
    w: CrossLayerWeights,
    *,
    config: dict[str, Any],
    config_file: Path,
    scan: str | list[str] | None,
) -> CrossLayerTranscoder:
    """Build a :class:`CrossLayerTranscoder` from per-layer weight lists."""
    spec = resolve_activation(
        config,
        config_file=config_file,
        has_threshold=w.threshold is not None,
        threshold_file=w.files[0],
        threshold_key=w.threshold_key,
        cross_layer=True,
    )
    lazy_enc = isinstance(w.W_enc[0], LazyTensor)
    return CrossLayerTranscoder(
        W_enc=w.W_enc if lazy_enc else torch.stack(w.W_enc),  # type: ignore[arg-type]
        b_enc=torch.stack(w.b_enc),
        W_dec=w.W_dec,  # type: ignore[arg-type]
        b_dec=torch.stack(w.b_dec),
        activation=spec.name,
        threshold=torch.stack(w.threshold) if spec.name == "jump_relu" else None,
        W_skip=None if w.W_skip is None else torch.stack(w.W_skip),
        feature_input_hook=config["feature_input_hook"],
        feature_output_hook=config["feature_output_hook"],
        scan=scan,
        config=config,
    )
