"""A feature card: what one transcoder feature does, as a researcher reads it.

A :class:`FeatureCard` is the per-feature view of :class:`~ct_engine.features.FeatureDashboards`:
how often and how strongly the feature fires on the corpus, the contexts where it fires most
(and contexts drawn from lower activation quantiles), the tokens it fires on, the tokens its
decoder promotes and suppresses through the unembedding, and a label with its source.

:meth:`FeatureCard.to_circuit_tracer` gives circuit-tracer's feature record (the JSON inside
its ``features/`` binaries: ``transcoder_id, index, examples_quantiles, top_logits,
bottom_logits, act_min, act_max, quantile_values, histogram, activation_frequency``);
:meth:`FeatureCard.to_dict` gives every field (the viewer's JSON).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Where a label came from, strongest first: a person in the viewer, the toy world's known
# facts, an external explainer (a callable the team plugs in), the automatic rule.
LABEL_SOURCES = ("human", "truth", "explainer", "auto")
TOP_EXAMPLES = "Top activations"


@dataclass
class Example:
    """One context window of the corpus and the feature's activation on each of its tokens.

    Attributes:
        tokens: the window's tokens as text (the leading special token left out).
        acts: the feature's activation on each token (same length as ``tokens``).
        max_pos: index in ``tokens`` of the largest activation (the marked token).
        max_act: that activation.
    """

    tokens: list[str]
    acts: list[float]
    max_pos: int
    max_act: float

    def to_circuit_tracer(self) -> dict[str, Any]:
        return {
            "tokens_acts_list": [float(a) for a in self.acts],
            "train_token_ind": int(self.max_pos),
            "is_repeated_datapoint": False,
            "tokens": list(self.tokens),
        }


@dataclass
class ExampleGroup:
    """Examples of one activation band: ``"Top activations"`` or ``"Quantile 50–75%"``."""

    name: str
    examples: list[Example]


@dataclass
class FeatureCard:
    """Everything known about feature ``feature`` of source layer ``layer``.

    Attributes:
        layer, feature: the transcoder feature (``feature`` indexes the layer's ``F``).
        transcoder_id: the transcoder set's name (its ``scan``).
        n_tokens: corpus tokens seen (the leading special tokens left out).
        n_active: tokens where the feature fired (activation > 0).
        frequency: ``n_active / n_tokens``.
        act_min, act_max: smallest and largest activation where it fired (0 when it never did).
        act_mean: mean activation where it fired.
        quantile_levels, quantile_values: activation quantiles over the tokens where it fired
            (from the streamed histogram: within one fine bin, about 3%).
        histogram_edges, histogram_counts: counts of firing tokens per activation bin
            (``len(edges) == len(counts) + 1``; log-spaced bins).
        groups: example groups, top activations first, then quantile bands from high to low.
        top_logits, bottom_logits: ``(token, value)`` promoted / suppressed most by the decoder
            through the unembedding (see :mod:`ct_engine.features.logits`).
        top_tokens: ``(token, count)`` the tokens it fired on most often.
        label, label_source: the label and where it came from (:data:`LABEL_SOURCES`).
    """

    layer: int
    feature: int
    transcoder_id: str
    n_tokens: int
    n_active: int
    frequency: float
    act_min: float
    act_max: float
    act_mean: float
    quantile_levels: list[float] = field(default_factory=list)
    quantile_values: list[float] = field(default_factory=list)
    histogram_edges: list[float] = field(default_factory=list)
    histogram_counts: list[int] = field(default_factory=list)
    groups: list[ExampleGroup] = field(default_factory=list)
    top_logits: list[tuple[str, float]] = field(default_factory=list)
    bottom_logits: list[tuple[str, float]] = field(default_factory=list)
    top_tokens: list[tuple[str, int]] = field(default_factory=list)
    label: str = ""
    label_source: str = ""

    @property
    def top_examples(self) -> list[Example]:
        """The top-activation examples (empty when the feature never fired)."""
        for group in self.groups:
            if group.name == TOP_EXAMPLES:
                return group.examples
        return []

    def to_circuit_tracer(self) -> dict[str, Any]:
        """circuit-tracer's feature record; ``index`` is the feature's index in its layer."""
        return {
            "transcoder_id": self.transcoder_id,
            "index": int(self.feature),
            "examples_quantiles": [
                {
                    "quantile_name": group.name,
                    "examples": [example.to_circuit_tracer() for example in group.examples],
                }
                for group in self.groups
            ],
            "top_logits": [token for token, _ in self.top_logits],
            "bottom_logits": [token for token, _ in self.bottom_logits],
            "act_min": float(self.act_min),
            "act_max": float(self.act_max),
            "quantile_values": [float(v) for v in self.quantile_values],
            "histogram": [int(c) for c in self.histogram_counts],
            "activation_frequency": float(self.frequency),
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready Python values (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureCard:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["groups"] = [
            ExampleGroup(g["name"], [Example(**e) for e in g["examples"]])
            for g in data.get("groups", [])
        ]
        for name in ("top_logits", "bottom_logits", "top_tokens"):
            data[name] = [tuple(pair) for pair in data.get(name, [])]
        return cls(**data)

    @classmethod
    def from_circuit_tracer(cls, record: dict[str, Any], layer: int) -> FeatureCard:
        """A card from a circuit-tracer record (fields it does not carry stay empty; logit
        values are unknown there and read as NaN)."""
        groups = [
            ExampleGroup(
                q["quantile_name"],
                [
                    Example(
                        tokens=list(e["tokens"]),
                        acts=[float(a) for a in e["tokens_acts_list"]],
                        max_pos=int(e["train_token_ind"]),
                        max_act=float(e["tokens_acts_list"][int(e["train_token_ind"])])
                        if e["tokens_acts_list"]
                        else 0.0,
                    )
                    for e in q["examples"]
                ],
            )
            for q in record.get("examples_quantiles", [])
        ]
        nan = float("nan")
        return cls(
            layer=int(layer),
            feature=int(record["index"]),
            transcoder_id=str(record.get("transcoder_id", "")),
            n_tokens=0,
            n_active=0,
            frequency=float(record.get("activation_frequency", 0.0)),
            act_min=float(record.get("act_min", 0.0)),
            act_max=float(record.get("act_max", 0.0)),
            act_mean=nan,
            quantile_values=[float(v) for v in record.get("quantile_values", [])],
            histogram_counts=[int(c) for c in record.get("histogram", [])],
            groups=groups,
            top_logits=[(str(t), nan) for t in record.get("top_logits", [])],
            bottom_logits=[(str(t), nan) for t in record.get("bottom_logits", [])],
        )
