"""Quality of trained transcoders, measured on the exported (engine) transcoders.

* FVU (centered): ``Σ‖y − ŷ‖² / Σ‖y − ȳ‖²`` per output layer, ``ȳ`` the mean over the
  evaluated positions;
* L0: mean number of active features per position, per source layer;
* dead fraction: share of a source layer's features that never fire on the evaluated
  training positions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ct_engine.metrics.reconstruction import ReconstructionStats
from ct_engine.metrics.sparsity import SparsityStats
from ct_engine.transcoders import Transcoders


@dataclass
class LayerMetrics:
    """Metrics of one layer (FVU of output layer ``layer``; L0/dead of source layer ``layer``)."""

    layer: int
    fvu_train: float
    fvu_holdout: float
    l0_train: float
    l0_holdout: float
    dead_fraction: float


@dataclass
class TrainingMetrics:
    """Per-layer metrics plus their means and the overall dead-feature fraction."""

    layers: list[LayerMetrics]
    dead_fraction: float
    n_train_positions: int
    n_holdout_positions: int

    @property
    def mean_fvu_holdout(self) -> float:
        return sum(m.fvu_holdout for m in self.layers) / len(self.layers)

    @property
    def mean_l0_holdout(self) -> float:
        return sum(m.l0_holdout for m in self.layers) / len(self.layers)

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """A fixed-width text table of the per-layer metrics."""
        lines = ["layer  fvu_train  fvu_holdout  l0_train  l0_holdout  dead"]
        for m in self.layers:
            lines.append(
                f"{m.layer:5d}  {m.fvu_train:9.4f}  {m.fvu_holdout:11.4f}  {m.l0_train:8.2f}"
                f"  {m.l0_holdout:10.2f}  {m.dead_fraction:4.3f}"
            )
        lines.append(f"dead features overall: {self.dead_fraction:.3f}")
        return "\n".join(lines)


@dataclass
class _Pass:
    fvu: list[float]  # per layer, centered
    l0: list[float]
    fired: torch.Tensor  # (L, F) bool


@torch.no_grad()
def _evaluate(transcoders: Transcoders, x: torch.Tensor, y: torch.Tensor, chunk: int) -> _Pass:
    """One pass over ``x, y (N, L, D)`` in chunks of positions, with the streaming statistics
    of :mod:`ct_engine.metrics` (one definition of FVU and L0 for training and evaluation)."""
    n_layers = transcoders.n_layers
    recon_stats = [ReconstructionStats() for _ in range(n_layers)]
    sparsity = [SparsityStats(transcoders.d_transcoder) for _ in range(n_layers)]
    for start in range(0, len(x), chunk):
        xb = x[start : start + chunk].transpose(0, 1)  # (L, n, D)
        yb = y[start : start + chunk].transpose(0, 1)
        acts = transcoders.encode(xb)  # (L, n, F)
        recon = transcoders.decode(acts, xb)
        for layer in range(n_layers):
            recon_stats[layer].update(yb[layer], recon[layer])
            sparsity[layer].update(acts[layer])
    fired = torch.stack([s._counts() > 0 for s in sparsity])
    return _Pass(
        fvu=[r.fvu_centered for r in recon_stats], l0=[s.l0 for s in sparsity], fired=fired
    )


def evaluate_on_activations(
    transcoders: Transcoders,
    x: torch.Tensor,
    y: torch.Tensor,
    x_holdout: torch.Tensor,
    y_holdout: torch.Tensor,
    *,
    max_train_rows: int = 32768,
    chunk: int = 2048,
) -> TrainingMetrics:
    """Metrics of ``transcoders`` on raw activations ``(N, L, D)``: the first
    ``max_train_rows`` training rows and every holdout row."""
    train = _evaluate(transcoders, x[:max_train_rows], y[:max_train_rows], chunk)
    holdout = _evaluate(transcoders, x_holdout, y_holdout, chunk)
    dead = ~train.fired
    layers = [
        LayerMetrics(
            layer=l,
            fvu_train=train.fvu[l],
            fvu_holdout=holdout.fvu[l],
            l0_train=train.l0[l],
            l0_holdout=holdout.l0[l],
            dead_fraction=float(dead[l].float().mean()),
        )
        for l in range(transcoders.n_layers)
    ]
    return TrainingMetrics(
        layers=layers,
        dead_fraction=float(dead.float().mean()),
        n_train_positions=min(len(x), max_train_rows),
        n_holdout_positions=len(x_holdout),
    )
