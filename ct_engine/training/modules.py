"""Trainable JumpReLU transcoders (per-layer and cross-layer) and their export to the engine.

Both work on *normalized* activations ``x̃_l = x_l / s_x[l]`` and ``ỹ_l = y_l / s_y[l]`` (one
scalar per layer, see :mod:`.normalization`) and share the encoder:

``z_l = x̃_l · W_enc[l]ᵀ + b_enc[l]``, ``a_l = jumprelu(z_l, θ_l)``, ``θ = exp(log_threshold)``.

* per-layer (PLT): ``ŷ_l = a_l · W_dec[l] + b_dec[l]``;
* cross-layer (CLT): ``ŷ_j = Σ_{i ≤ j} a_i · W_dec[i][:, j − i] + b_dec[j]``.

Decoder rows have unit norm (re-projected after each optimizer step); for a CLT the norm of a
feature is taken over all the output layers it writes to. :meth:`to_transcoders` folds the
normalization scales into the weights and returns the engine's frozen
``TranscoderSet`` / ``CrossLayerTranscoder``.

Shapes: ``B`` batch, ``L`` layers, ``F`` features per layer, ``D = d_model``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from ct_engine.transcoders import (
    CrossLayerTranscoder,
    JumpReLU,
    PerLayerTranscoder,
    Transcoders,
    TranscoderSet,
)

from .jumprelu import jumprelu, step


class TrainableTranscoders(nn.Module, ABC):
    """Shared JumpReLU encoder of every source layer.

    Args:
        n_layers, d_model, n_features: ``L``, ``D``, ``F``.
        threshold: initial JumpReLU threshold (normalized units).
        bandwidth: width ``ε`` of the pseudo-derivative kernel.
        generator: seeded generator for the initialization.
    """

    kind = ""

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_features: int,
        *,
        threshold: float,
        bandwidth: float,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        self.n_layers, self.d_model, self.n_features = n_layers, d_model, n_features
        self.bandwidth = bandwidth
        self.W_enc = nn.Parameter(torch.empty(n_layers, n_features, d_model))
        self.b_enc = nn.Parameter(torch.zeros(n_layers, n_features))
        self.log_threshold = nn.Parameter(
            torch.full((n_layers, n_features), float(torch.tensor(threshold).log()))
        )
        self.b_dec = nn.Parameter(torch.zeros(n_layers, d_model))
        self._generator = generator

    @property
    def threshold(self) -> torch.Tensor:
        """``θ``, ``(L, F)``."""
        return self.log_threshold.exp()

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``x̃ (B, L, D)`` → ``z (B, L, F)``."""
        return torch.einsum("bld,lfd->blf", x, self.W_enc) + self.b_enc

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x̃ (B, L, D)`` → ``(a (B, L, F), active (B, L, F))``, ``active`` = ``1[z > θ]``
        carrying the threshold's pseudo-derivative (its sum over ``F`` is the L0)."""
        z = self.pre_activations(x)
        theta = self.threshold
        return jumprelu(z, theta, self.bandwidth), step(z, theta, self.bandwidth)

    @abstractmethod
    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """``a (B, L, F)`` → ``ŷ (B, L, D)``."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x̃ (B, L, D)`` → ``(ŷ (B, L, D), active (B, L, F))``."""
        acts, active = self.encode(x)
        return self.decode(acts), active

    @abstractmethod
    def decoder_norms(self) -> torch.Tensor:
        """Norm of each feature's full decoder, ``(L, F)``."""

    @abstractmethod
    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm."""

    @abstractmethod
    @torch.no_grad()
    def initialize(self, y_mean: torch.Tensor, encoder_scale: float = 1.0) -> None:
        """Random unit-norm decoders, encoders = ``encoder_scale`` × the decoder directions
        (tied init), ``b_dec`` = the mean target ``y_mean (L, D)``."""

    @abstractmethod
    def to_transcoders(
        self,
        x_scale: torch.Tensor,
        y_scale: torch.Tensor,
        *,
        feature_input_hook: str,
        feature_output_hook: str,
        config: dict | None = None,
    ) -> Transcoders:
        """Frozen engine transcoders on raw activations (scales ``(L,)`` folded in)."""


def _random_unit_rows(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Gaussian ``(L, F, ...)`` with each ``[l, f]`` slice scaled to unit norm."""
    w = torch.randn(shape, generator=generator)
    norms = w.flatten(2).norm(dim=-1)
    return w / norms.reshape(*norms.shape, *[1] * (len(shape) - 2))


class TrainablePLT(TrainableTranscoders):
    """Per-layer JumpReLU transcoders, one per layer, trained side by side.

    Extra parameter: ``W_dec (L, F, D)``.
    """

    kind = "plt"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.W_dec = nn.Parameter(torch.empty(self.n_layers, self.n_features, self.d_model))

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        return torch.einsum("blf,lfd->bld", acts, self.W_dec) + self.b_dec

    def decoder_norms(self) -> torch.Tensor:
        return self.W_dec.norm(dim=-1)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def initialize(self, y_mean: torch.Tensor, encoder_scale: float = 1.0) -> None:
        shape = (self.n_layers, self.n_features, self.d_model)
        self.W_dec.copy_(_random_unit_rows(shape, self._generator))
        self.W_enc.copy_(self.W_dec * encoder_scale)
        self.b_dec.copy_(y_mean)

    def to_transcoders(
        self,
        x_scale: torch.Tensor,
        y_scale: torch.Tensor,
        *,
        feature_input_hook: str,
        feature_output_hook: str,
        config: dict | None = None,
    ) -> TranscoderSet:
        with torch.no_grad():
            layers = [
                PerLayerTranscoder(
                    W_enc=self.W_enc[l] / x_scale[l],
                    b_enc=self.b_enc[l].clone(),
                    W_dec=self.W_dec[l] * y_scale[l],
                    b_dec=self.b_dec[l] * y_scale[l],
                    activation_function=JumpReLU(self.threshold[l].clone()),
                    layer_idx=l,
                )
                for l in range(self.n_layers)
            ]
        return TranscoderSet(
            layers,
            feature_input_hook=feature_input_hook,
            feature_output_hook=feature_output_hook,
            config=config,
        )


class TrainableCLT(TrainableTranscoders):
    """A cross-layer JumpReLU transcoder.

    Extra parameters: ``W_dec_{i} (F, L − i, D)`` for each source layer ``i`` (slot ``j − i``
    writes to output layer ``j``), in the ParameterList ``W_dec``.
    """

    kind = "clt"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        L, F, D = self.n_layers, self.n_features, self.d_model
        self.W_dec = nn.ParameterList([nn.Parameter(torch.empty(F, L - i, D)) for i in range(L)])

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        B, L, F = acts.shape
        out = self.b_dec.expand(B, L, self.d_model)
        for i in range(L):
            written = (acts[:, i] @ self.W_dec[i].reshape(F, -1)).reshape(B, L - i, -1)
            out = out + nn.functional.pad(written, (0, 0, i, 0))  # into output layers i..L-1
        return out

    def decoder_norms(self) -> torch.Tensor:
        return torch.stack([w.flatten(1).norm(dim=-1) for w in self.W_dec])

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        for w in self.W_dec:
            w.div_(w.flatten(1).norm(dim=-1).clamp_min(1e-8)[:, None, None])

    @torch.no_grad()
    def initialize(self, y_mean: torch.Tensor, encoder_scale: float = 1.0) -> None:
        for i, w in enumerate(self.W_dec):
            w.copy_(_random_unit_rows((1, *w.shape), self._generator)[0])
            # Encoder = the decoder direction into the source layer's own output.
            own = w[:, 0]
            own = own / own.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            self.W_enc[i].copy_(own * encoder_scale)
        self.b_dec.copy_(y_mean)

    def to_transcoders(
        self,
        x_scale: torch.Tensor,
        y_scale: torch.Tensor,
        *,
        feature_input_hook: str,
        feature_output_hook: str,
        config: dict | None = None,
    ) -> CrossLayerTranscoder:
        L = self.n_layers
        with torch.no_grad():
            return CrossLayerTranscoder(
                W_enc=self.W_enc / x_scale[:, None, None],
                b_enc=self.b_enc.clone(),
                W_dec=[self.W_dec[i] * y_scale[i:, None] for i in range(L)],
                b_dec=self.b_dec * y_scale[:, None],
                activation="jump_relu",
                threshold=self.threshold.clone(),
                feature_input_hook=feature_input_hook,
                feature_output_hook=feature_output_hook,
                config=config,
            )


TRAINABLE = {"plt": TrainablePLT, "clt": TrainableCLT}
