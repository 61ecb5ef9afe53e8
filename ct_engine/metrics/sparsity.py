"""Sparsity and feature health: L0, dead and dense feature fractions.

A feature *fires* on a token when its activation is non-zero (TopK activations can be
negative, so ``!= 0`` rather than ``> 0``). With ``N`` tokens and ``F`` features per layer:

* ``l0`` = (1/N) Σ_t |{i : a_{t,i} ≠ 0}|, per layer; ``l0_total`` = Σ_l ``l0_l`` (for a
  cross-layer transcoder, the number of active features per token over all layers);
* firing frequency p_i = |{t : a_{t,i} ≠ 0}| / N;
* ``dead_fraction`` = |{i : p_i = 0}| / F: features that never fire over the ``N`` tokens of the
  sample (the number depends on ``N``: report it with the token count);
* ``dense_fraction_1pct`` / ``dense_fraction_10pct`` = |{i : p_i > τ}| / F, τ = 0.01 / 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DENSE_THRESHOLDS = {"dense_fraction_1pct": 0.01, "dense_fraction_10pct": 0.1}


def firing_counts(acts: torch.Tensor) -> torch.Tensor:
    """``acts (N, F)`` → ``(F,)`` int64: on how many of the ``N`` tokens each feature fires."""
    return (acts != 0).sum(0, dtype=torch.int64)


def dead_fraction(counts: torch.Tensor) -> float:
    """Fraction of features whose firing count ``counts (F,)`` is zero."""
    return float((counts == 0).double().mean())


def dense_fraction(counts: torch.Tensor, n_tokens: int, threshold: float) -> float:
    """Fraction of features firing on more than ``threshold`` of ``n_tokens`` tokens."""
    if n_tokens == 0:
        return float("nan")
    return float((counts.double() / n_tokens > threshold).double().mean())


@dataclass
class SparsityStats:
    """Streaming firing counts of one layer's ``F`` features; :meth:`update` with ``(n, F)``."""

    d_transcoder: int
    n: int = 0
    active_total: int = 0
    counts: torch.Tensor | None = None

    def update(self, acts: torch.Tensor) -> None:
        """Add the activations ``acts (n, F)`` of ``n`` tokens."""
        c = firing_counts(acts).cpu()
        self.counts = c if self.counts is None else self.counts + c
        self.active_total += int(c.sum())
        self.n += acts.shape[0]

    def _counts(self) -> torch.Tensor:
        if self.counts is None:
            return torch.zeros(self.d_transcoder, dtype=torch.int64)
        return self.counts

    @property
    def l0(self) -> float:
        return self.active_total / self.n if self.n else float("nan")

    @property
    def dead_fraction(self) -> float:
        return dead_fraction(self._counts())

    def dense_fraction(self, threshold: float) -> float:
        return dense_fraction(self._counts(), self.n, threshold)
