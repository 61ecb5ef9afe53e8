"""Feature dashboards of a whole transcoder set: arrays over ``(layer, feature)``, and cards.

:func:`ct_engine.features.build_dashboards` fills a :class:`FeatureDashboards` in one
streaming pass over a corpus; :meth:`FeatureDashboards.card` reads one feature's
:class:`~ct_engine.features.cards.FeatureCard` out of it.

Shapes: ``L`` source layers, ``F`` features per layer, ``k`` top examples, ``S`` sampled
examples, ``W`` tokens per context window, ``H`` fine histogram bins, ``Q`` quantile levels,
``n`` logits and input tokens kept per feature.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ct_engine.features.cards import TOP_EXAMPLES, Example, ExampleGroup, FeatureCard

QUANTILE_LEVELS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0)
DISPLAY_BINS = 24


@dataclass
class ExampleStore:
    """Context windows kept per feature (the top ones, or a uniform sample of active ones).

    Attributes:
        keys: ``(L, F, k)`` float32, the ranking key (max activation, or the sample's key);
            ``-inf`` marks an empty slot.
        max_act: ``(L, F, k)`` float32, the window's largest activation of the feature.
        tokens: ``(L, F, k, W)`` int32 token ids (``-1`` past the window's end).
        acts: ``(L, F, k, W)`` float16, the feature's activation on each token.
    """

    keys: np.ndarray
    max_act: np.ndarray
    tokens: np.ndarray
    acts: np.ndarray

    def examples(self, layer: int, feature: int, vocab: list[str]) -> list[Example]:
        """The filled slots of one feature as examples, largest activation first."""
        order = np.argsort(-self.max_act[layer, feature], kind="stable")
        out = []
        for slot in order:
            if not np.isfinite(self.keys[layer, feature, slot]):
                continue
            ids = self.tokens[layer, feature, slot]
            n = int((ids >= 0).sum())
            acts = self.acts[layer, feature, slot, :n].astype(np.float32)
            pos = int(np.argmax(acts)) if n else 0
            out.append(
                Example(
                    tokens=[vocab[int(i)] for i in ids[:n]],
                    acts=[round(float(a), 4) for a in acts],
                    max_pos=pos,
                    max_act=float(self.max_act[layer, feature, slot]),
                )
            )
        return out


@dataclass
class FeatureDashboards:
    """Activation statistics, examples and output effects of every feature of a set.

    Attributes:
        model_name, transcoder_id: what was measured (``transcoder_id`` is the set's scan).
        corpus: a short description of the corpus (path or generator, token budget).
        n_tokens: corpus tokens seen (leading special tokens left out).
        n_windows: context windows seen; ``window``: tokens per window (``W``, at most).
        vocab: display text of every token id.
        n_active: ``(L, F)`` int64 tokens where each feature fired.
        act_sum, act_min, act_max: ``(L, F)`` float64 sum, min and max of firing activations.
        hist_edges: ``(H + 1,)`` log-spaced edges of the fine histogram (first edge 0: the
            first bin takes everything below ``hist_edges[1]``).
        hist: ``(L, F, H)`` int64 firing tokens per fine bin.
        top: the ``k`` windows with the largest activation of each feature.
        sample: a uniform sample (without replacement) of windows where each feature fired.
        top_logit_ids, top_logit_values, bottom_logit_ids, bottom_logit_values: ``(L, F, n)``
            output effect through the unembedding (:mod:`ct_engine.features.logits`).
        input_token_ids, input_token_counts: ``(L, F, n)`` tokens each feature fired on most
            (``-1`` pads); exact while ``input_counts_exact``.
        labels, label_sources: ``(L, F)`` object arrays of strings (``""`` = no label).
        seconds: wall time of the whole build; ``timings``: its phases in seconds
            (``pass`` over the corpus, ``output_effects``, ``tokens``, ``labels``).
    """

    model_name: str
    transcoder_id: str
    corpus: str
    n_tokens: int
    n_windows: int
    window: int
    vocab: list[str]
    n_active: np.ndarray
    act_sum: np.ndarray
    act_min: np.ndarray
    act_max: np.ndarray
    hist_edges: np.ndarray
    hist: np.ndarray
    top: ExampleStore
    sample: ExampleStore
    top_logit_ids: np.ndarray
    top_logit_values: np.ndarray
    bottom_logit_ids: np.ndarray
    bottom_logit_values: np.ndarray
    input_token_ids: np.ndarray
    input_token_counts: np.ndarray
    input_counts_exact: bool = True
    labels: np.ndarray = field(default=None)  # type: ignore[assignment]
    label_sources: np.ndarray = field(default=None)  # type: ignore[assignment]
    quantile_groups: int = 4
    examples_per_group: int = 5
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.labels is None:
            self.labels = np.full(self.n_active.shape, "", dtype=object)
        if self.label_sources is None:
            self.label_sources = np.full(self.n_active.shape, "", dtype=object)

    @property
    def n_layers(self) -> int:
        return int(self.n_active.shape[0])

    @property
    def d_transcoder(self) -> int:
        return int(self.n_active.shape[1])

    @property
    def frequency(self) -> np.ndarray:
        """``(L, F)`` share of corpus tokens where each feature fired."""
        return self.n_active / max(self.n_tokens, 1)

    def check_feature(self, layer: int, feature: int) -> None:
        """Raise ``ValueError`` (one line) when ``(layer, feature)`` is out of range."""
        if not 0 <= layer < self.n_layers:
            raise ValueError(
                f"layer {layer} is out of range: the set has layers 0..{self.n_layers - 1}"
            )
        if not 0 <= feature < self.d_transcoder:
            raise ValueError(
                f"feature {feature} is out of range: layer {layer} has features "
                f"0..{self.d_transcoder - 1}"
            )

    def set_label(self, layer: int, feature: int, label: str, source: str) -> None:
        self.labels[layer, feature] = label
        self.label_sources[layer, feature] = source

    # -- statistics -----------------------------------------------------------------------

    def quantiles(self, layer: int, feature: int, levels=QUANTILE_LEVELS) -> list[float]:
        """Activation quantiles over the firing tokens, read from the fine histogram with
        geometric interpolation inside a bin, clamped to ``[act_min, act_max]``."""
        counts = self.hist[layer, feature]
        total = counts.sum()
        lo, hi = float(self.act_min[layer, feature]), float(self.act_max[layer, feature])
        if total == 0:
            return [0.0 for _ in levels]
        cum = np.cumsum(counts)
        out = []
        for q in levels:
            rank = q * total
            b = int(np.searchsorted(cum, max(rank, 1e-9), side="left"))
            b = min(b, len(counts) - 1)
            before = cum[b - 1] if b > 0 else 0
            inside = (rank - before) / max(counts[b], 1)
            left = max(self.hist_edges[b], lo)
            right = min(self.hist_edges[b + 1], hi)
            if right <= left:
                value = left
            else:
                value = left * (right / left) ** float(np.clip(inside, 0.0, 1.0))
            out.append(float(np.clip(value, lo, hi)))
        return out

    def display_histogram(self, layer: int, feature: int) -> tuple[list[float], list[int]]:
        """At most :data:`DISPLAY_BINS` log-spaced bins between the first and last non-empty
        fine bins: ``(edges, counts)``, the outer edges clamped to ``act_min``/``act_max``."""
        counts = self.hist[layer, feature]
        nonzero = np.flatnonzero(counts)
        if len(nonzero) == 0:
            return [], []
        first, last = int(nonzero[0]), int(nonzero[-1])
        span = last - first + 1
        step = int(np.ceil(span / DISPLAY_BINS))
        edges, merged = [], []
        for start in range(first, last + 1, step):
            stop = min(start + step, last + 1)
            edges.append(float(self.hist_edges[start]))
            merged.append(int(counts[start:stop].sum()))
        edges.append(float(self.hist_edges[last + 1]))
        edges[0] = float(self.act_min[layer, feature])
        edges[-1] = float(self.act_max[layer, feature])
        return edges, merged

    # -- cards ------------------------------------------------------------------------------

    def groups(self, layer: int, feature: int) -> list[ExampleGroup]:
        """Top activations, then the sampled windows split by rank into
        ``quantile_groups`` bands of equal size (highest band first), ``examples_per_group``
        examples each, spread evenly through the band."""
        top = self.top.examples(layer, feature, self.vocab)
        if not top:
            return []
        groups = [ExampleGroup(TOP_EXAMPLES, top)]
        sampled = self.sample.examples(layer, feature, self.vocab)
        n = self.quantile_groups
        if not sampled or n <= 0:
            return groups
        bands = np.array_split(np.arange(len(sampled)), n)
        for i, band in enumerate(bands):
            if len(band) == 0:
                continue
            hi_pct = 100 - round(100 * i / n)
            lo_pct = 100 - round(100 * (i + 1) / n)
            picks = band[
                np.linspace(0, len(band) - 1, min(len(band), self.examples_per_group))
                .round()
                .astype(int)
            ]
            groups.append(
                ExampleGroup(
                    f"Quantile {lo_pct}\u2013{hi_pct}%",
                    [sampled[j] for j in dict.fromkeys(picks.tolist())],
                )
            )
        return groups

    def card(self, layer: int, feature: int) -> FeatureCard:
        """The :class:`FeatureCard` of feature ``feature`` of layer ``layer``."""
        self.check_feature(layer, feature)
        n_active = int(self.n_active[layer, feature])
        edges, counts = self.display_histogram(layer, feature)
        fired = n_active > 0

        def tokens(ids, values, cast):
            return [
                (self.vocab[int(i)], cast(v)) for i, v in zip(ids, values, strict=True) if i >= 0
            ]

        return FeatureCard(
            layer=int(layer),
            feature=int(feature),
            transcoder_id=self.transcoder_id,
            n_tokens=int(self.n_tokens),
            n_active=n_active,
            frequency=n_active / max(self.n_tokens, 1),
            act_min=float(self.act_min[layer, feature]) if fired else 0.0,
            act_max=float(self.act_max[layer, feature]) if fired else 0.0,
            act_mean=float(self.act_sum[layer, feature] / n_active) if fired else 0.0,
            quantile_levels=list(QUANTILE_LEVELS),
            quantile_values=self.quantiles(layer, feature),
            histogram_edges=edges,
            histogram_counts=counts,
            groups=self.groups(layer, feature),
            top_logits=tokens(
                self.top_logit_ids[layer, feature], self.top_logit_values[layer, feature], float
            ),
            bottom_logits=tokens(
                self.bottom_logit_ids[layer, feature],
                self.bottom_logit_values[layer, feature],
                float,
            ),
            top_tokens=tokens(
                self.input_token_ids[layer, feature], self.input_token_counts[layer, feature], int
            ),
            label=str(self.labels[layer, feature]),
            label_source=str(self.label_sources[layer, feature]),
        )

    def cards(self, layer: int | None = None) -> Iterator[FeatureCard]:
        """Every card, layer by layer (or of one layer)."""
        layers = range(self.n_layers) if layer is None else [layer]
        for layer_ in layers:
            for feature in range(self.d_transcoder):
                yield self.card(layer_, feature)
