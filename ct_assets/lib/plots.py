"""Pictures for Dagster metadata and MLflow artifacts.

Drawn with Pillow (which matplotlib brings) straight onto a palette image: a materialization
draws one picture per graph, and matplotlib's layout, antialiased canvas and full-colour PNG
cost about half a second each, several times the science of a small graph.
"""

from __future__ import annotations

import base64
import functools
from pathlib import Path

import torch

MAX_EDGES_DRAWN = 400

_HEIGHT = 600
_MARGIN = {"left": 90, "right": 30, "top": 36, "bottom": 80}
_COLORS = {
    "feature": (44, 160, 44),
    "error": (127, 127, 127),
    "token": (148, 103, 189),
    "logit": (255, 127, 14),
    "positive": (31, 119, 180),
    "negative": (214, 39, 40),
}
_SHAPES = {"feature": "circle", "error": "square", "token": "triangle", "logit": "diamond"}


@functools.cache
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size)


def _marker(draw, shape: str, x: float, y: float, r: float, color) -> None:
    box = (x - r, y - r, x + r, y + r)
    if shape == "circle":
        draw.ellipse(box, fill=color, outline=(0, 0, 0))
    elif shape == "square":
        draw.rectangle(box, fill=color, outline=(0, 0, 0))
    elif shape == "triangle":
        draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=color, outline=(0, 0, 0))
    else:
        draw.polygon(
            [(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=color, outline=(0, 0, 0)
        )


def _blend(color, alpha: float = 0.5) -> tuple[int, int, int]:
    """``color`` at ``alpha`` over white (edges are drawn half transparent)."""
    return tuple(int(255 - alpha * (255 - c)) for c in color)


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
    cumulative-influence rank; edges are blue (positive) or red (negative), width by weight
    (the ``MAX_EDGES_DRAWN`` strongest). ``weights``: the kept edges' weights, in
    ``pruned.edge_mask`` order. Writes a PNG to ``path`` (a scratch file: the lake's write is
    atomic) and returns ``path``."""
    from PIL import Image, ImageDraw

    kept = pruned.node_mask.nonzero().squeeze(-1).tolist()
    L, T = graph.n_layers, graph.n_pos
    width = max(600, T * 90)
    left, right, top, bottom = (_MARGIN[k] for k in ("left", "right", "top", "bottom"))
    plot_w, plot_h = width - left - right, _HEIGHT - top - bottom

    def at(x: float, y: float) -> tuple[float, float]:  # data (position, layer) -> pixels
        return (
            left + (x + 0.5) / (T + 0.5) * plot_w,
            top + plot_h - (y + 1.5) / (L + 2) * plot_h,
        )

    xy, kinds = {}, {}
    for i in kept:
        info = graph.node_info(i)
        y = {"token": -1, "logit": L}.get(info.kind, info.layer)
        jitter = 0.0
        if info.kind == "feature":
            jitter = ((info.feature * 2654435761) % 1000) / 1000 * 0.6 - 0.3
        elif info.kind == "logit":
            jitter = (i - graph.logit_slice.start) * 0.15
        xy[i] = at(info.pos + jitter, y)
        kinds[i] = info.kind

    image = Image.new("RGB", (width, _HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    small, label_font = _font(11), _font(12)
    draw.rectangle((left, top, left + plot_w, top + plot_h), outline=(0, 0, 0))
    names = ["tokens", *[f"layer {layer}" for layer in range(L)], "logits"]
    for y, name in zip(range(-1, L + 1), names, strict=True):
        _, py = at(0, y)
        draw.line((left - 4, py, left, py), fill=(0, 0, 0))
        draw.text((left - 8, py), name, fill=(0, 0, 0), font=label_font, anchor="rm")
    if tokens is not None:
        for pos, text in enumerate(tokens):
            px, _ = at(pos, -1)
            draw.line((px, top + plot_h, px, top + plot_h + 4), fill=(0, 0, 0))
            _rotated_label(image, text, px, top + plot_h + 6, small)
    else:
        draw.text(
            (left + plot_w / 2, _HEIGHT - 20),
            "position",
            fill=(0, 0, 0),
            font=label_font,
            anchor="mm",
        )

    order = torch.argsort(weights.abs(), descending=True)[:MAX_EDGES_DRAWN]
    top_weight = float(weights.abs().max()) if len(weights) else 1.0
    edges = []
    for e in order.tolist():
        t, s = int(pruned.edge_mask.rows[e]), int(pruned.edge_mask.cols[e])
        if t in xy and s in xy:
            edges.append((float(weights[e]), s, t))
    for w, s, t in reversed(edges):  # the strongest last, on top
        color = _blend(_COLORS["positive" if w > 0 else "negative"])
        draw.line((*xy[s], *xy[t]), fill=color, width=max(1, round(0.5 + 3 * abs(w) / top_weight)))

    share = pruned.cumulative_scores
    for kind, shape in _SHAPES.items():
        for i in kept:
            if kinds[i] == kind:
                radius = 3 + 4 * (1 - float(share[i]))
                _marker(draw, shape, *xy[i], radius, _COLORS[kind])
    for row, (kind, shape) in enumerate(_SHAPES.items()):
        x, y = left + 14, top + 14 + 16 * row
        _marker(draw, shape, x, y, 5, _COLORS[kind])
        draw.text((x + 12, y), kind, fill=(0, 0, 0), font=small, anchor="lm")
    draw.text((width / 2, top / 2), title[:80], fill=(0, 0, 0), font=label_font, anchor="mm")
    # A palette of at most 64 colours: the picture has few, and its PNG is then small.
    image.quantize(64, method=Image.Quantize.FASTOCTREE).save(path, format="PNG")
    return path


def _rotated_label(image, text: str, x: float, y: float, font) -> None:
    """``text`` turned 45° with its end at ``(x, y)`` (an x tick label)."""
    from PIL import Image, ImageDraw

    text = text.replace("\n", " ")[:24]
    w = max(1, int(font.getlength(text)) + 2)
    label = Image.new("L", (w, 14), 0)
    ImageDraw.Draw(label).text((0, 7), text, fill=255, font=font, anchor="lm")
    turned = label.rotate(45, expand=True, resample=Image.Resampling.BICUBIC)
    image.paste((0, 0, 0), (int(x - turned.width), int(y)), turned)


def markdown_image(path: Path, alt: str) -> str:
    """The PNG at ``path`` inline as markdown (Dagster shows it in the asset's metadata)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![{alt}](data:image/png;base64,{data})"
