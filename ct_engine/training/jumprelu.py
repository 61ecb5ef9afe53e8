"""JumpReLU and its step function with pseudo-derivatives for the threshold (training only).

Following Rajamanoharan et al. 2024 ("Jumping Ahead"): in the forward pass
``jumprelu(z, θ) = z · H(z − θ)`` and ``step(z, θ) = H(z − θ)`` with the strict comparison the
engine uses (``z > θ``). The true derivative with respect to ``θ`` is zero almost everywhere, so
the backward pass uses a straight-through estimate with a rectangle kernel of width ``ε``:

* ``∂ jumprelu / ∂z = H(z − θ)``, ``∂ jumprelu / ∂θ = −(θ/ε) · rect((z − θ)/ε)``;
* ``∂ step / ∂z = 0``, ``∂ step / ∂θ = −(1/ε) · rect((z − θ)/ε)``;

with ``rect(u) = 1[−½ < u < ½]``. Shapes: ``z (B, ..., F)``, ``θ`` broadcastable to ``z`` (the
gradient of ``θ`` is summed back to its own shape).
"""

from __future__ import annotations

import torch


def _rect(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


def _sum_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to ``shape``."""
    while grad.ndim > len(shape):
        grad = grad.sum(0)
    for dim, size in enumerate(shape):
        if size == 1 and grad.shape[dim] != 1:
            grad = grad.sum(dim, keepdim=True)
    return grad


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, threshold: torch.Tensor, bandwidth: float):
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return z * (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_z = grad * (z > threshold).to(z.dtype)
        grad_t = -(threshold / eps) * _rect((z - threshold) / eps) * grad
        return grad_z, _sum_to(grad_t, threshold.shape), None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, threshold: torch.Tensor, bandwidth: float):
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_t = -(1.0 / eps) * _rect((z - threshold) / eps) * grad
        return torch.zeros_like(z), _sum_to(grad_t, threshold.shape), None


def jumprelu(z: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``z · 1[z > θ]`` with the pseudo-derivative for ``θ``; ``z (..., F)`` → ``(..., F)``."""
    return _JumpReLU.apply(z, threshold, bandwidth)


def step(z: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``1[z > θ]`` with the pseudo-derivative for ``θ``; summed over ``F`` it is the L0."""
    return _Step.apply(z, threshold, bandwidth)
