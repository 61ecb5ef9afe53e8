"""Feature labels that need no language model, and a hook for one that does.

Sources, strongest first (:data:`~ct_engine.features.cards.LABEL_SOURCES`): ``human`` (the
viewer's annotations, applied where labels are read), ``truth`` (the toy world's known facts),
``explainer`` (an external callable a team plugs in) and ``auto``:

* **auto** (:func:`auto_label`): what the feature reads and what it writes. The reading part
  is the token it fires on when one token takes at least half of its firing tokens
  (``"Mosho"``), else the context before the marked token when at least half of its top
  examples share it (``after "capital of"``), else its two most frequent tokens
  (``"Mosho"/"Fivail"``). The writing part is its top logit (``→ Ludus``), or its two top
  logits when they are within a quarter of each other.
* **truth** (:func:`toy_world_labels`): on the toy world, a feature that is a country
  feature of country C at the subject or last position of person prompts (the definition of
  :class:`ct_engine.toyworld.ground_truth.CountryFeatures`) is labelled ``C``.
* **explainer**: ``explainer(card) -> str | None`` is called with each firing feature's
  card (top examples, logits, statistics); a non-empty answer becomes its label unless the
  toy world's truth labelled it. Off unless given; nothing here needs a network.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ct_engine.features.cards import FeatureCard

TOY_WORLD = "toy-world"
MAX_TOKEN_CHARS = 24


def _quote(token: str) -> str:
    token = token.strip() or token
    if len(token) > MAX_TOKEN_CHARS:
        token = token[: MAX_TOKEN_CHARS - 1] + "\u2026"
    return f'"{token}"'


def _word(token: str) -> str:
    token = token.strip() or repr(token)
    return token if len(token) <= MAX_TOKEN_CHARS else token[: MAX_TOKEN_CHARS - 1] + "\u2026"


def _shared_context(contexts: Sequence[Sequence[str]]) -> str | None:
    """The one or two tokens before the marked token shared by at least half of the top
    examples (``contexts``: each example's tokens before its marked token; the longer shared
    context wins), or None."""
    if not contexts:
        return None
    for width in (2, 1):
        counts = Counter(tuple(c[-width:]) for c in contexts if len(c) >= width)
        if counts:
            context, count = counts.most_common(1)[0]
            if count * 2 >= len(contexts):
                return " ".join(t.strip() for t in context)
    return None


def label_from(
    n_active: int,
    top_tokens: Sequence[tuple[str, int]],
    contexts: Sequence[Sequence[str]],
    top_logits: Sequence[tuple[str, float]],
) -> str:
    """The automatic label from a feature's firing count, most frequent firing tokens, the
    tokens before the marked token of each top example, and top logits (module docstring)."""
    if n_active == 0:
        return ""
    reading = ""
    if top_tokens:
        token, count = top_tokens[0]
        if count * 2 >= n_active:
            reading = _quote(token)
    if not reading:
        context = _shared_context(contexts)
        if context:
            reading = f"after {_quote(context)}"
    if not reading and top_tokens:
        reading = "/".join(_quote(token) for token, _ in top_tokens[:2])
    writing = ""
    if top_logits:
        (first, v1), *rest = top_logits
        writing = f"\u2192 {_word(first)}"
        if rest and v1 > 0 and rest[0][1] >= 0.75 * v1:
            writing += f"/{_word(rest[0][0])}"
    return " ".join(part for part in (reading, writing) if part)


def auto_label(card: FeatureCard) -> str:
    """The automatic label of a card (see the module docstring); ``""`` for a dead feature."""
    contexts = [e.tokens[: e.max_pos] for e in card.top_examples]
    return label_from(card.n_active, card.top_tokens, contexts, card.top_logits)


def _auto_labels(dashboards) -> Iterator[tuple[int, int, str]]:
    """``(layer, feature, label)`` of every firing feature, read from the arrays directly
    (the same rule as :func:`auto_label`, without building whole cards)."""
    vocab, top = dashboards.vocab, dashboards.top
    peak_pos = top.acts.argmax(axis=-1)  # (L, F, k)
    for layer, f in np.argwhere(dashboards.n_active > 0):
        tokens = [
            (vocab[i], int(c))
            for i, c in zip(
                dashboards.input_token_ids[layer, f][:2],
                dashboards.input_token_counts[layer, f][:2],
                strict=True,
            )
            if i >= 0
        ]
        contexts = []
        for slot in np.flatnonzero(np.isfinite(top.keys[layer, f])):
            pos = int(peak_pos[layer, f, slot])
            ids = top.tokens[layer, f, slot, max(pos - 2, 0) : pos]
            contexts.append([vocab[i] for i in ids])
        logits = [
            (vocab[i], float(v))
            for i, v in zip(
                dashboards.top_logit_ids[layer, f][:2],
                dashboards.top_logit_values[layer, f][:2],
                strict=True,
            )
        ]
        label = label_from(int(dashboards.n_active[layer, f]), tokens, contexts, logits)
        yield int(layer), int(f), label


# The country features depend on the model and its transcoders only: measured once per model.
_TRUTH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def toy_world_labels(model) -> dict[tuple[int, int], str]:
    """``{(layer, feature): country}`` for the country features of the toy world (either site,
    reference prompts of every template and split)."""
    if model not in _TRUTH:
        _TRUTH[model] = _measure_truth(model)
    return dict(_TRUTH[model])


def _measure_truth(model) -> dict[tuple[int, int], str]:
    from ct_engine.toyworld.default_model import load_world
    from ct_engine.toyworld.ground_truth import CountryFeatures

    features = CountryFeatures.build(model, load_world())
    masks = features.masks().any(dim=1)  # (C, L, F): a country feature at either site
    labels: dict[tuple[int, int], list[str]] = {}
    for c, layer, f in masks.nonzero().tolist():
        labels.setdefault((layer, f), []).append(features.countries[c])
    return {key: "/".join(names) for key, names in labels.items()}


def apply_labels(
    dashboards, model, explainer: Callable[[FeatureCard], str | None] | None = None
) -> None:
    """Fill ``dashboards.labels`` and ``label_sources``: auto for every firing feature, then
    the explainer's answers, then the toy world's truth (the strongest here)."""
    for layer, f, label in _auto_labels(dashboards):
        if label:
            dashboards.set_label(layer, f, label, "auto")
    fired = np.argwhere(dashboards.n_active > 0)
    truth = toy_world_labels(model) if model.model_name == TOY_WORLD else {}
    if explainer is not None:
        for layer, f in fired:
            key = (int(layer), int(f))
            if key in truth:
                continue
            answer = explainer(dashboards.card(*key))
            if isinstance(answer, str) and answer.strip():
                dashboards.set_label(*key, answer.strip(), "explainer")
    for (layer, f), label in truth.items():
        dashboards.set_label(layer, f, label, "truth")
