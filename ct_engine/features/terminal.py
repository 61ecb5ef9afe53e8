"""A feature card as text for a terminal (``ct features show``).

:func:`card_text` gives the label and its source, how often and how strongly the feature
fires, its activation quantiles, a histogram drawn with Unicode block bars, the logits it
promotes and suppresses, the tokens it fires on, and its example contexts: the top ones first,
then a few from each quantile band, each with the strongest token marked ``«token»`` and the
activations of the tokens around it. Plain Python: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ct_engine.features.cards import TOP_EXAMPLES, Example, FeatureCard

# Eighths of a character cell, for bars finer than one cell.
_EIGHTHS = " ▏▎▍▌▋▊▉"
_FULL = "█"
_VISIBLE = {"\n": "⏎", "\r": "␍", "\t": "⇥"}


def card_text(
    card: FeatureCard,
    *,
    top_examples: int = 8,
    quantile_examples: int = 2,
    context: int = 10,
    nearby: int = 3,
    bar_width: int = 30,
) -> str:
    """``card`` as lines of text (no trailing newline).

    ``top_examples`` top contexts and ``quantile_examples`` from each quantile band are shown,
    each cut to ``context`` tokens either side of its strongest token; the activations of the
    ``nearby`` tokens either side of it are listed under each top context."""
    title = f"layer {card.layer}, feature {card.feature}"
    if card.transcoder_id:
        title += f" · {card.transcoder_id}"
    lines = [title, "=" * len(title)]
    source = f" ({card.label_source})" if card.label_source else ""
    lines.append(f"label: {card.label or '(none)'}{source}")
    lines.append(_firing_line(card))
    if card.act_max <= 0 and not card.groups:
        return "\n".join(lines)
    if card.quantile_values:
        lines += ["", "activation quantiles (where it fired):"]
        lines.append("  " + "  ".join(_quantiles(card)))
    if card.histogram_counts:
        lines += ["", "activation histogram (tokens where it fired):"]
        lines += _histogram(card, bar_width)
    for title, pairs in (
        ("top logits (promoted)", card.top_logits),
        ("bottom logits (suppressed)", card.bottom_logits),
    ):
        if pairs:
            lines += ["", f"{title}:", "  " + "  ".join(_logit(t, v) for t, v in pairs)]
    if card.top_tokens:
        lines += ["", "fires most on tokens:"]
        lines.append("  " + "  ".join(f"{_visible(t)} ×{c:,}" for t, c in card.top_tokens))
    for group in card.groups:
        top = group.name == TOP_EXAMPLES
        shown = group.examples[: top_examples if top else quantile_examples]
        if not shown:
            continue
        lines += ["", f"{group.name} ({len(shown)} of {len(group.examples)}):"]
        for example in shown:
            lines.append(f"  {_number(example.max_act):>8}  {_context(example, context)}")
            if top:
                lines.append(f"  {'':>8}  {_nearby(example, nearby)}")
    return "\n".join(lines)


def _firing_line(card: FeatureCard) -> str:
    if card.n_tokens:
        share = f"{card.n_active:,} of {card.n_tokens:,} tokens ({100 * card.frequency:.3g}%)"
    else:
        share = f"{100 * card.frequency:.3g}% of tokens"
    if card.act_max <= 0 and not card.groups:
        return f"never fired: 0 of {card.n_tokens:,} tokens (a dead feature)"
    mean = "" if math.isnan(card.act_mean) else f", mean {_number(card.act_mean)}"
    return (
        f"fires on {share}; activation min {_number(card.act_min)}{mean}, "
        f"max {_number(card.act_max)}"
    )


def _quantiles(card: FeatureCard) -> list[str]:
    levels = card.quantile_levels
    if len(levels) != len(card.quantile_values):
        return [_number(v) for v in card.quantile_values]
    return [
        f"{_percent(q)}: {_number(v)}" for q, v in zip(levels, card.quantile_values, strict=True)
    ]


def _percent(q: float) -> str:
    return f"{100 * q:.4g}%"


def _histogram(card: FeatureCard, width: int) -> list[str]:
    counts = card.histogram_counts
    edges = card.histogram_edges
    peak = max(counts) or 1
    labels = (
        [f"{_number(a)} – {_number(b)}" for a, b in zip(edges, edges[1:], strict=False)]
        if len(edges) == len(counts) + 1
        else [f"bin {i}" for i in range(len(counts))]
    )
    pad = max(len(label) for label in labels)
    return [
        f"  {label:>{pad}}  {_bar(count / peak, width):<{width}}  {count:,}"
        for label, count in zip(labels, counts, strict=True)
    ]


def _bar(fraction: float, width: int) -> str:
    """A bar ``fraction`` of ``width`` cells long, to an eighth of a cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    if fraction > 0 and eighths == 0:
        eighths = 1  # a non-empty bin always shows
    full, rest = divmod(eighths, 8)
    return (_FULL * full + (_EIGHTHS[rest] if rest else "")).rstrip()


def _logit(token: str, value: float) -> str:
    shown = _visible(token)
    return shown if math.isnan(value) else f"{shown} {value:+.3g}"


def _context(example: Example, context: int) -> str:
    """The example's tokens within ``context`` of its strongest one, that one in « »."""
    start = max(0, example.max_pos - context)
    stop = min(len(example.tokens), example.max_pos + context + 1)
    pieces = [
        f"«{_visible(tok)}»" if i == example.max_pos else _visible(tok)
        for i, tok in enumerate(example.tokens[start:stop], start=start)
    ]
    text = _join(example.tokens, pieces)
    return ("…" if start > 0 else "") + text + ("…" if stop < len(example.tokens) else "")


def _nearby(example: Example, nearby: int) -> str:
    start = max(0, example.max_pos - nearby)
    stop = min(len(example.tokens), example.max_pos + nearby + 1)
    return " | ".join(
        f"{_visible(example.tokens[i]).strip() or '␣'} {_number(example.acts[i])}"
        for i in range(start, stop)
    )


def _join(tokens: Sequence[str], pieces: list[str]) -> str:
    """Subword vocabularies carry their own spaces; word-level ones (the toy world) do not."""
    spaced = any(tok.startswith(" ") or tok.endswith(" ") for tok in tokens)
    return "".join(pieces) if spaced else " ".join(pieces)


def _visible(token: str) -> str:
    return "".join(_VISIBLE.get(ch, ch) for ch in token)


def _number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    return f"{value:.4g}"
