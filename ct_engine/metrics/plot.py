"""Per-layer plot of :class:`~ct_engine.metrics.TranscoderMetrics`, saved as a PNG.

Four panels over layers: centered FVU and uncentered NMSE; L0; dead and dense (>1%, >10%)
fractions; single-layer-splice CE loss recovered. Drawn on matplotlib's Agg canvas directly
(no display, and pyplot's global backend is left alone).
"""

from __future__ import annotations

from pathlib import Path

from ct_engine.metrics.result import TranscoderMetrics


def plot_metrics(metrics: TranscoderMetrics, path: str | Path, title: str | None = None) -> Path:
    """Save the per-layer panels of ``metrics`` to ``path`` (PNG); return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = list(range(metrics.n_layers))
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, without touching pyplot's global backend
    (ax_rec, ax_l0), (ax_health, ax_ce) = fig.subplots(2, 2, sharex=True)

    ax_rec.plot(layers, metrics.fvu_centered, "o-", label="FVU (centered)")
    ax_rec.plot(layers, metrics.nmse_uncentered, "s--", label="NMSE (uncentered)")
    ax_rec.set_title("reconstruction error")
    ax_rec.legend()

    ax_l0.bar(layers, metrics.l0, color="tab:green")
    ax_l0.set_title(f"L0 per token (total {metrics.l0_total:.1f})")

    ax_health.plot(layers, metrics.dead_fraction, "o-", label="dead")
    ax_health.plot(layers, metrics.dense_fraction_1pct, "s--", label="dense > 1%")
    ax_health.plot(layers, metrics.dense_fraction_10pct, "^:", label="dense > 10%")
    ax_health.set_ylim(-0.02, 1.02)
    ax_health.set_title(f"feature fractions ({metrics.n_tokens} tokens)")
    ax_health.legend()

    ax_ce.plot(layers, metrics.ce_loss_recovered, "o-", color="tab:purple")
    ax_ce.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax_ce.set_title("CE loss recovered (single-layer splice)")

    for ax in (ax_health, ax_ce):
        ax.set_xlabel("layer")
    for ax in (ax_rec, ax_l0, ax_health, ax_ce):
        ax.set_xticks(layers)
        ax.grid(alpha=0.3)
    summary = (
        f"all replaced: KL {metrics.kl_replaced:.4g}, top-1 {metrics.top1_agreement:.3f}, "
        f"ΔCE {metrics.delta_ce:.4g}"
    )
    fig.suptitle(f"{title}\n{summary}" if title else summary)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path
