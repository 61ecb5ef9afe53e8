"""Reconstruction error of transcoders: MSE, uncentered NMSE, centered FVU and FVE.

Notation: ``N`` tokens, ``D = d_model``; target ``y_t`` (the MLP output at the transcoder's
output hook) and reconstruction ``ŷ_t``, both ``(N, D)``.

* ``mse`` = (1/N) Σ_t ‖y_t − ŷ_t‖² (squared error summed over ``D``, averaged over tokens);
* ``nmse_uncentered`` = Σ_t ‖y_t − ŷ_t‖² / Σ_t ‖y_t‖² (Anthropic-style normalised MSE);
* ``fvu_centered`` = Σ_t ‖y_t − ŷ_t‖² / Σ_t ‖y_t − ȳ‖², ȳ = (1/N) Σ_t y_t (fraction of variance
  unexplained); ``fve_centered`` = 1 − ``fvu_centered``.

When ``y`` has a large mean, NMSE divides by a much larger total than FVU does, so NMSE is the
smaller (more flattering) number of the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def mse(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    """``(N, D)`` targets and reconstructions → mean over tokens of the squared L2 error."""
    err = (y.double() - y_hat.double()).pow(2).sum(-1)
    return float(err.mean())


def nmse_uncentered(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    """``Σ_t ‖y_t − ŷ_t‖² / Σ_t ‖y_t‖²`` for ``(N, D)`` tensors."""
    y = y.double()
    return float((y - y_hat.double()).pow(2).sum() / y.pow(2).sum())


def fvu_centered(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    """``Σ_t ‖y_t − ŷ_t‖² / Σ_t ‖y_t − ȳ‖²`` for ``(N, D)`` tensors."""
    y = y.double()
    return float((y - y_hat.double()).pow(2).sum() / (y - y.mean(0)).pow(2).sum())


@dataclass
class ReconstructionStats:
    """Streaming float64 sums for one layer; :meth:`update` with batches of ``(n, D)``.

    The centered total Σ_t ‖y_t − ȳ‖² is merged batch by batch with Chan et al.'s parallel
    variance update (no cancellation from Σ‖y‖² − N‖ȳ‖² when the mean is large).
    """

    n: int = 0
    sq_err: float = 0.0
    sq_target: float = 0.0
    centered_total: float = 0.0
    mean: torch.Tensor | None = field(default=None, repr=False)

    def update(self, y: torch.Tensor, y_hat: torch.Tensor) -> None:
        """Add ``n`` tokens: targets ``y (n, D)`` and reconstructions ``y_hat (n, D)``."""
        n_b = y.shape[0]
        if n_b == 0:
            return
        y = y.double()
        self.sq_err += float((y - y_hat.double()).pow(2).sum())
        self.sq_target += float(y.pow(2).sum())
        mean_b = y.mean(0)
        m2_b = float((y - mean_b).pow(2).sum())
        if self.mean is None:
            self.n, self.mean, self.centered_total = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.centered_total += m2_b + float(delta.pow(2).sum()) * self.n * n_b / n
        self.mean = self.mean + delta * (n_b / n)
        self.n = n

    @property
    def mse(self) -> float:
        return self.sq_err / self.n if self.n else float("nan")

    @property
    def nmse_uncentered(self) -> float:
        return _ratio(self.sq_err, self.sq_target) if self.n else float("nan")

    @property
    def fvu_centered(self) -> float:
        return _ratio(self.sq_err, self.centered_total) if self.n else float("nan")

    @property
    def fve_centered(self) -> float:
        return 1.0 - self.fvu_centered


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return 0.0 if num == 0 else float("inf")
