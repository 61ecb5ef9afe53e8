"""Pictures for Dagster metadata and MLflow artifacts (matplotlib, Agg canvas, atomic writes)."""

from __future__ import annotations

import base64
from pathlib import Path

import torch

MAX_EDGES_DRAWN = 400


def plot_pruned_graph(
    graph,
    pruned,
    path: Path,
    weights: torch.Tensor,
    *,
    title: str = "",
    tokens: list[str] | None = None,
) -> Path:
    """The pruned graph laid out by position (x) and layer (y): tokens at the bottom, target
    logits on top, features (dots) and errors (squares) in between. Dot size follows
    cumulative-influence rank; edges are blue (positive) or red (negative), width by weight.
    ``weights``: the kept edges' weights, in ``pruned.edge_mask`` order."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    kept = pruned.node_mask.nonzero().squeeze(-1).tolist()
    L = graph.n_layers
    xy, kinds = {}, {}
    for i in kept:
        info = graph.node_info(i)
        y = {"token": -1, "logit": L}.get(info.kind, info.layer)
        jitter = 0.0
        if info.kind == "feature":
            jitter = ((info.feature * 2654435761) % 1000) / 1000 * 0.6 - 0.3
        elif info.kind == "logit":
            jitter = (i - graph.logit_slice.start) * 0.15
        xy[i] = (info.pos + jitter, y)
        kinds[i] = info.kind
    order = torch.argsort(weights.abs(), descending=True)[:MAX_EDGES_DRAWN]
    fig = Figure(figsize=(max(6, graph.n_pos * 0.9), 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    top = float(weights.abs().max()) if len(weights) else 1.0
    segments, colors, widths = [], [], []
    for e in order.tolist():  # one LineCollection: far cheaper than a plot call per edge
        t, s = int(pruned.edge_mask.rows[e]), int(pruned.edge_mask.cols[e])
        if t in xy and s in xy:
            w = float(weights[e])
            segments.append([xy[s], xy[t]])
            colors.append("tab:blue" if w > 0 else "tab:red")
            widths.append(0.3 + 2.5 * abs(w) / top)
    ax.add_collection(
        LineCollection(segments, colors=colors, linewidths=widths, alpha=0.5, zorder=1)
    )
    share = pruned.cumulative_scores
    styles = {
        "feature": ("o", "tab:green"),
        "error": ("s", "tab:gray"),
        "token": ("^", "tab:purple"),
        "logit": ("D", "tab:orange"),
    }
    for kind, (marker, color) in styles.items():
        nodes = [i for i in kept if kinds[i] == kind]
        if nodes:
            sizes = [20 + 120 * (1 - float(share[i])) for i in nodes]
            ax.scatter(
                [xy[i][0] for i in nodes],
                [xy[i][1] for i in nodes],
                s=sizes,
                marker=marker,
                color=color,
                label=kind,
                zorder=2,
                edgecolors="black",
                linewidths=0.3,
            )
    ax.set_yticks(range(-1, L + 1), ["tokens", *[f"layer {l}" for l in range(L)], "logits"])
    if tokens is not None:
        ax.set_xticks(range(len(tokens)), tokens, rotation=45, ha="right", fontsize=8)
    else:
        ax.set_xlabel("position")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title[:80], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)  # a scratch file: the lake's write is atomic
    return path


def markdown_image(path: Path, alt: str) -> str:
    """The PNG at ``path`` inline as markdown (Dagster shows it in the asset's metadata)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![{alt}](data:image/png;base64,{data})"
