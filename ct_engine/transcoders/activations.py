"""Transcoder activation functions σ: pre-activations ``z (..., F)`` → activations ``(..., F)``.

Every module takes an optional ``layer`` argument so that cross-layer transcoders, which keep
one threshold row per source layer, can share the same call signature as per-layer ones.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATION_NAMES = ("relu", "jump_relu", "topk")


class ReLU(nn.Module):
    """``σ(z) = max(z, 0)``."""

    name = "relu"

    def forward(self, z: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        return torch.relu(z)


class JumpReLU(nn.Module):
    """``σ(z) = z · 1[z > θ]`` with a per-feature threshold ``θ``.

    The comparison is strict: a pre-activation exactly equal to its threshold is zeroed.

    Args:
        threshold: ``(F,)`` for one layer, or ``(L, 1, F)`` (or ``(L, F)``, reshaped) for a
            cross-layer transcoder, whose row ``threshold[layer]`` applies to source layer
            ``layer``. Stored as a non-trainable parameter named ``threshold`` so that
            ``state_dict`` keys read ``activation_function.threshold``.
    """

    name = "jump_relu"

    def __init__(self, threshold: torch.Tensor) -> None:
        super().__init__()
        if threshold.ndim == 2:
            threshold = threshold.unsqueeze(1)
        if threshold.ndim not in (1, 3):
            raise ValueError(f"threshold must have shape (F,) or (L, 1, F), got {threshold.shape}")
        self.threshold = nn.Parameter(threshold.detach().clone(), requires_grad=False)

    def layer_threshold(self, layer: int | None) -> torch.Tensor:
        """Threshold used for ``layer``: ``(F,)``, or the full tensor when ``layer`` is None."""
        if layer is None or self.threshold.ndim == 1:
            return self.threshold
        return self.threshold[layer].reshape(-1)

    def forward(self, z: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        theta = self.layer_threshold(layer)
        return z * (z > theta).to(z.dtype)


class TopK(nn.Module):
    """Keep the ``k`` largest entries of ``z`` along the last (feature) axis, zero the rest.

    No ReLU is applied, exactly like circuit-tracer: when fewer than ``k`` entries are positive
    the largest negative ones are kept too, so activations can be negative. ``k`` is capped at
    the number of features.
    """

    name = "topk"

    def __init__(self, k: int) -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"TopK needs a positive integer k, got {k!r}")
        self.k = k

    def forward(self, z: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        values, indices = z.topk(min(self.k, z.shape[-1]), dim=-1)
        return torch.zeros_like(z).scatter_(-1, indices, values)

    def extra_repr(self) -> str:
        return f"k={self.k}"


def make_activation(
    name: str, *, threshold: torch.Tensor | None = None, k: int | None = None
) -> nn.Module:
    """Build the activation module called ``name`` (one of :data:`ACTIVATION_NAMES`)."""
    if name == "relu":
        return ReLU()
    if name == "jump_relu":
        if threshold is None:
            raise ValueError("jump_relu needs a threshold")
        return JumpReLU(threshold)
    if name == "topk":
        if k is None:
            raise ValueError("topk needs k")
        return TopK(k)
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATION_NAMES}")
