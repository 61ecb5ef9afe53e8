"""Per-layer scalar normalization of the training activations.

Each layer's inputs and targets are divided by one scalar, ``s = sqrt(E‖v‖² / D)``, so that a
coordinate has unit mean square; unit-norm encoder rows then give pre-activations of order one
whatever the model's activation scale. The scales are folded back into the weights on export.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Normalization:
    """Scales and target statistics, computed on the training activations.

    Attributes:
        x_scale: ``(L,)`` divisor of the inputs ``x_l``.
        y_scale: ``(L,)`` divisor of the targets ``y_l``.
        y_mean: ``(L, D)`` mean normalized target (the initial ``b_dec``).
        y_variance: ``(L,)`` total variance ``E‖ỹ − mean‖²`` of the normalized targets; the
            reconstruction loss of layer ``l`` is divided by it (a per-layer FVU).
    """

    x_scale: torch.Tensor
    y_scale: torch.Tensor
    y_mean: torch.Tensor
    y_variance: torch.Tensor


def _scale(v: torch.Tensor, chunk: int) -> torch.Tensor:
    total = torch.zeros(v.shape[1], dtype=torch.float64)
    for start in range(0, len(v), chunk):
        total += v[start : start + chunk].double().pow(2).sum(dim=(0, 2))
    return (total / (len(v) * v.shape[2])).sqrt().float().clamp_min(1e-12)


def compute_normalization(
    x: torch.Tensor, y: torch.Tensor, max_rows: int = 65536, chunk: int = 8192
) -> Normalization:
    """Statistics of ``x, y (N, L, D)`` from their first ``max_rows`` rows (already shuffled)."""
    x, y = x[:max_rows], y[:max_rows]
    x_scale, y_scale = _scale(x, chunk), _scale(y, chunk)
    y_norm = y.double() / y_scale.double()[None, :, None]
    y_mean = y_norm.mean(0)
    y_variance = (y_norm - y_mean).pow(2).sum(-1).mean(0)
    return Normalization(
        x_scale=x_scale,
        y_scale=y_scale,
        y_mean=y_mean.float(),
        y_variance=y_variance.float().clamp_min(1e-12),
    )
