"""``TranscoderMetrics``: per-layer and whole-model quality numbers of a transcoder set."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

# Per-layer metrics, in table order. Each is a list of ``L`` floats on the result.
LAYER_METRICS = (
    "mse",
    "nmse_uncentered",
    "fvu_centered",
    "fve_centered",
    "l0",
    "dead_fraction",
    "dense_fraction_1pct",
    "dense_fraction_10pct",
    "ce_splice",
    "ce_zero_ablation",
    "ce_loss_recovered",
)

# Whole-model metrics (one number each).
MODEL_METRICS = (
    "l0_total",
    "kl_replaced",
    "top1_agreement",
    "ce_clean",
    "ce_replaced",
    "delta_ce",
)


@dataclass
class TranscoderMetrics:
    """Quality metrics of a transcoder set over a token sample.

    Every statistic excludes position 0 (the BOS / leading special token, which the
    attribution engine zeroes) and padding. Reconstruction and sparsity are measured on the
    clean model's activations; fidelity on forward passes whose MLP outputs are replaced at
    positions ``≥ 1`` only (position 0 keeps the real MLP output).

    Attributes (per layer, lists of ``L`` floats):
        mse: (1/N) Σ_t ‖y_t − ŷ_t‖² (squared error summed over d_model, mean over tokens).
        nmse_uncentered: Σ_t ‖y_t − ŷ_t‖² / Σ_t ‖y_t‖².
        fvu_centered: Σ_t ‖y_t − ŷ_t‖² / Σ_t ‖y_t − ȳ‖²; fve_centered = 1 − fvu_centered.
        l0: mean number of features firing (activation ≠ 0) per token at this source layer.
        dead_fraction: fraction of the layer's features that never fire on the ``n_tokens``
            tokens of the sample (depends on ``n_tokens``).
        dense_fraction_1pct, dense_fraction_10pct: fraction of features firing on more than
            1% / 10% of the tokens.
        ce_splice: next-token CE with only this layer's MLP output replaced by the
            reconstruction (for a cross-layer transcoder: the reconstruction of output layer
            ``l`` from the clean encoder inputs of all layers ``≤ l``).
        ce_zero_ablation: next-token CE with this layer's MLP output set to zero.
        ce_loss_recovered: (ce_zero_ablation − ce_splice) / (ce_zero_ablation − ce_clean).

    Attributes (whole model, with every MLP replaced at once, no error terms, the
    reconstruction at each layer computed from that replaced run's own encoder inputs):
        l0_total: Σ_l l0_l, active features per token over all layers.
        kl_replaced: mean over tokens of KL(p_clean ‖ p_replaced), in nats.
        top1_agreement: fraction of tokens where both runs agree on the most likely token.
        ce_clean, ce_replaced: next-token CE (nats) over positions ``1 … T−2`` of each
            prompt (those that have a next token); delta_ce = ce_replaced − ce_clean.

    Counts: ``n_tokens`` (positions ``≥ 1``: reconstruction, sparsity, KL, top-1),
    ``n_predicted_tokens`` (CE positions), ``n_sequences``.
    """

    n_layers: int
    d_transcoder: int
    is_cross_layer: bool
    skip_connection: bool
    n_sequences: int
    n_tokens: int
    n_predicted_tokens: int
    mse: list[float] = field(default_factory=list)
    nmse_uncentered: list[float] = field(default_factory=list)
    fvu_centered: list[float] = field(default_factory=list)
    fve_centered: list[float] = field(default_factory=list)
    l0: list[float] = field(default_factory=list)
    dead_fraction: list[float] = field(default_factory=list)
    dense_fraction_1pct: list[float] = field(default_factory=list)
    dense_fraction_10pct: list[float] = field(default_factory=list)
    ce_splice: list[float] = field(default_factory=list)
    ce_zero_ablation: list[float] = field(default_factory=list)
    ce_loss_recovered: list[float] = field(default_factory=list)
    l0_total: float = math.nan
    kl_replaced: float = math.nan
    top1_agreement: float = math.nan
    ce_clean: float = math.nan
    ce_replaced: float = math.nan
    delta_ce: float = math.nan

    @property
    def mean(self) -> dict[str, float]:
        """Mean over layers of every per-layer metric (NaN layers ignored)."""
        return {name: _nanmean(getattr(self, name)) for name in LAYER_METRICS}

    @property
    def model_metrics(self) -> dict[str, float]:
        """The whole-model metrics by name."""
        return {name: getattr(self, name) for name in MODEL_METRICS}

    def to_rows(self) -> list[dict]:
        """One dict per layer (``{"layer": l, metric: value, ...}``) plus a ``"mean"`` row."""
        rows = [
            {"layer": layer, **{name: getattr(self, name)[layer] for name in LAYER_METRICS}}
            for layer in range(self.n_layers)
        ]
        rows.append({"layer": "mean", **self.mean})
        return rows

    def to_dict(self) -> dict:
        """Everything, JSON-able (non-finite floats become None)."""
        return _json_safe({**asdict(self), "mean": self.mean})


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _json_safe(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
