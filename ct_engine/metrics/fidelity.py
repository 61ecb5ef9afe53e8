"""Downstream fidelity: KL divergence, top-1 agreement and next-token cross-entropy.

Logits are ``(N, V)`` over ``N`` selected token positions; CE targets are ``(N,)`` next-token
ids. Per-token values are computed in float32 or wider and summed in float64.

* ``kl`` = mean_t KL(p_clean,t ‖ p_x,t) = mean_t Σ_v p_clean,t,v (log p_clean,t,v − log p_x,t,v);
* ``top1_agreement`` = mean_t 1[argmax p_x,t = argmax p_clean,t];
* ``ce`` = mean_t −log p_x,t[next token];
* ``ce_loss_recovered`` = (CE_zero − CE_splice) / (CE_zero − CE_clean): 1 when the splice is as
  good as the real layer, 0 when it is no better than zero-ablating it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return torch.log_softmax(logits.to(dtype), dim=-1)


def kl_per_token(clean_logits: torch.Tensor, other_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_clean ‖ p_other) of each of the ``N`` rows of ``(N, V)`` logits → ``(N,)``."""
    lp_clean, lp_other = _log_probs(clean_logits), _log_probs(other_logits)
    return (lp_clean.exp() * (lp_clean - lp_other)).sum(-1)


def top1_matches(clean_logits: torch.Tensor, other_logits: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: whether both ``(N, V)`` logits agree on the most likely token."""
    return clean_logits.argmax(-1) == other_logits.argmax(-1)


def ce_per_token(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy ``(N,)`` of ``(N, V)`` logits against ids ``targets (N,)``."""
    return -_log_probs(logits).gather(-1, targets[:, None].long()).squeeze(-1)


def ce_loss_recovered(ce_clean: float, ce_splice: float, ce_zero: float) -> float:
    """``(CE_zero − CE_splice) / (CE_zero − CE_clean)``; NaN when zero-ablation costs nothing."""
    den = ce_zero - ce_clean
    return (ce_zero - ce_splice) / den if den != 0 else float("nan")


@dataclass
class MeanStat:
    """A float64 streaming mean of per-token values."""

    total: float = 0.0
    n: int = 0

    def update(self, values: torch.Tensor) -> None:
        self.total += float(values.double().sum())
        self.n += values.numel()

    @property
    def value(self) -> float:
        return self.total / self.n if self.n else float("nan")
