"""The interface shared by per-layer (:class:`TranscoderSet`) and cross-layer transcoders.

Shapes: ``L`` layers, ``T`` positions, ``D = d_model``, ``F = d_transcoder`` features per layer.
A transcoder for layer ``l`` reads ``x_l`` at ``feature_input_hook`` and reconstructs the
activation at ``feature_output_hook`` (TransformerLens hook names).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from .components import AttributionComponents
from .lazy import LazyTensor


class Transcoders(nn.Module, ABC):
    """A full set of transcoders for a model, one source layer per transformer layer.

    Attributes:
        n_layers: ``L``.
        d_model: ``D``.
        d_transcoder: ``F``, features per source layer.
        feature_input_hook: hook whose activations the encoders read.
        feature_output_hook: hook whose activations the decoders reconstruct.
        scan: feature-visualisation identifier (``"owner/repo[//sub/folder][@rev]"`` for hub
            sets, the config's ``scan`` or the folder path for local ones).
        config: the ``config.yaml`` content the set was loaded from (may be empty).
        is_cross_layer: True for cross-layer transcoders.
    """

    is_cross_layer: bool = False

    def __init__(
        self,
        *,
        n_layers: int,
        d_model: int,
        d_transcoder: int,
        feature_input_hook: str,
        feature_output_hook: str,
        scan: str | list[str] | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.n_layers = n_layers
        self.d_model = d_model
        self.d_transcoder = d_transcoder
        self.feature_input_hook = feature_input_hook
        self.feature_output_hook = feature_output_hook
        self.scan = scan
        self.config = dict(config or {})

    # ----------------------------------------------------------------------------- properties

    @property
    @abstractmethod
    def skip_connection(self) -> bool:
        """Whether a linear skip term ``x → x·W_skip`` is part of the reconstruction."""

    @property
    @abstractmethod
    def activation_name(self) -> str:
        """``"relu"``, ``"jump_relu"`` or ``"topk"``."""

    @property
    @abstractmethod
    def lazy_encoder(self) -> bool:
        """Whether encoder weights are read from disk on every use."""

    @property
    @abstractmethod
    def lazy_decoder(self) -> bool:
        """Whether decoder rows are read from disk on demand."""

    @property
    @abstractmethod
    def lazy_sources(self) -> list[LazyTensor]:
        """The on-disk tensors read on demand (empty when fully in memory)."""

    @property
    def device(self) -> torch.device:
        """Device of the parameters (lazy reads land here too)."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the parameters (lazy reads are converted to it)."""
        return next(self.parameters()).dtype

    @property
    def topk_k(self) -> int | None:
        """``k`` of a TopK activation, else None."""
        return None

    # ------------------------------------------------------------------------------- weights

    @abstractmethod
    def encoder_weight(self, layer: int) -> torch.Tensor:
        """Full encoder of source layer ``layer``, ``(F, D)`` (read from disk when lazy)."""

    @abstractmethod
    def decoder_weight(self, layer: int) -> torch.Tensor:
        """Full decoder of source layer ``layer``: ``(F, D)`` per-layer, ``(F, L − layer, D)``
        cross-layer (read from disk when lazy)."""

    @abstractmethod
    def decoder_vectors(self, layer: int, feat_ids: torch.Tensor) -> torch.Tensor:
        """Unscaled decoder rows of features ``feat_ids`` (LongTensor ``(n,)``) of ``layer``.

        Returns ``(n, D)`` for per-layer transcoders and ``(n, L − layer, D)`` for cross-layer
        ones (slot ``j − layer`` is written to output layer ``j``). With a lazy decoder only
        these rows are read from disk.
        """

    def encoder_vectors(self, layer: int, feat_ids: torch.Tensor) -> torch.Tensor:
        """Unscaled encoder rows ``W_enc[layer][feat_ids]``, ``(n, D)``."""
        return self.encoder_weight(layer)[feat_ids.to(self.device)]

    # ----------------------------------------------------------------------------- the maths

    @abstractmethod
    def apply_activation_function(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """Activation of source layer ``layer``: ``z (..., F)`` → ``(..., F)``."""

    @abstractmethod
    def encode_layer(
        self, x: torch.Tensor, layer: int, apply_activation_function: bool = True
    ) -> torch.Tensor:
        """Encode source layer ``layer``: ``x (..., D)`` → ``(..., F)``.

        The pre-activation is ``x @ W_enc[layer].T + b_enc[layer]`` with ``x`` cast to the
        encoder dtype; the activation function is applied unless told otherwise.
        """

    @abstractmethod
    def compute_skip(self, layer: int, x: torch.Tensor) -> torch.Tensor | None:
        """Skip term written at output layer ``layer`` from ``x (..., D)``: ``(..., D)`` or None."""

    @abstractmethod
    def decode(self, acts: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruct every output layer: ``acts (L, ..., F)`` → ``(L, ..., D)``.

        Includes ``b_dec`` and, when :attr:`skip_connection`, the skip term computed from the
        encoder inputs ``x (L, ..., D)`` (a ValueError is raised if ``x`` is then missing).
        """

    @abstractmethod
    def compute_attribution_components(
        self, x: torch.Tensor, zero_positions: slice = slice(0, 1)
    ) -> AttributionComponents:
        """Sparse attribution inputs for one prompt whose encoder inputs are ``x (L, T, D)``.

        Activations at positions ``zero_positions`` are set to zero first. See
        :class:`AttributionComponents` for the fields and their ordering.
        """

    def encode(self, x: torch.Tensor, apply_activation_function: bool = True) -> torch.Tensor:
        """Encode every layer: ``x (L, ..., D)`` → ``(L, ..., F)``."""
        if x.shape[0] != self.n_layers:
            raise ValueError(f"expected {self.n_layers} layers on axis 0, got {x.shape[0]}")
        return torch.stack(
            [
                self.encode_layer(x[layer], layer, apply_activation_function)
                for layer in range(self.n_layers)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Full reconstruction ``decode(encode(x), x)``: ``(L, ..., D)`` → ``(L, ..., D)``."""
        return self.decode(self.encode(x), x)

    def _check_skip_input(self, x: torch.Tensor | None) -> None:
        if self.skip_connection and x is None:
            raise ValueError("these transcoders have a skip connection: decode needs x")

    def extra_repr(self) -> str:
        return (
            f"n_layers={self.n_layers}, d_model={self.d_model}, d_transcoder={self.d_transcoder},"
            f" activation={self.activation_name!r}, skip={self.skip_connection},"
            f" lazy_encoder={self.lazy_encoder}, lazy_decoder={self.lazy_decoder}"
        )
