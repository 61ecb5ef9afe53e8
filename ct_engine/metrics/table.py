"""Plain-text table of :class:`~ct_engine.metrics.TranscoderMetrics` (per layer + mean row)."""

from __future__ import annotations

import math

from ct_engine.metrics.result import LAYER_METRICS, TranscoderMetrics

# Column headers, narrower than the metric names.
HEADERS = {
    "mse": "mse",
    "nmse_uncentered": "nmse_unc",
    "fvu_centered": "fvu_cen",
    "fve_centered": "fve_cen",
    "l0": "l0",
    "dead_fraction": "dead",
    "dense_fraction_1pct": "dense>1%",
    "dense_fraction_10pct": "dense>10%",
    "ce_splice": "ce_splice",
    "ce_zero_ablation": "ce_zero",
    "ce_loss_recovered": "ce_recov",
}


def _fmt(value) -> str:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    if value is None or math.isnan(value):
        return "nan"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4f}"


def format_table(metrics: TranscoderMetrics) -> str:
    """The per-layer rows and the mean row as an aligned table, then the whole-model numbers."""
    columns = ["layer", *LAYER_METRICS]
    cells = [["layer", *(HEADERS[name] for name in LAYER_METRICS)]]
    cells += [[_fmt(row[name]) for name in columns] for row in metrics.to_rows()]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(-1, lines[1])
    kind = "cross-layer" if metrics.is_cross_layer else "per-layer"
    skip = ", skip" if metrics.skip_connection else ""
    lines += [
        "",
        f"{kind} transcoders{skip}: {metrics.n_layers} layers x {metrics.d_transcoder} features; "
        f"{metrics.n_sequences} prompts, {metrics.n_tokens} tokens scored (position 0 / BOS "
        f"excluded; dead = never fired on these {metrics.n_tokens} tokens), "
        f"{metrics.n_predicted_tokens} next-token predictions",
        f"all MLPs replaced (no error terms): KL(clean||replaced) {_fmt(metrics.kl_replaced)} "
        f"nats/token, top-1 agreement {_fmt(metrics.top1_agreement)}, "
        f"CE clean {_fmt(metrics.ce_clean)} -> replaced {_fmt(metrics.ce_replaced)} "
        f"(delta {_fmt(metrics.delta_ce)})",
        f"l0_total (all layers) {_fmt(metrics.l0_total)}",
    ]
    return "\n".join(lines)
