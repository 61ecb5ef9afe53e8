"""Feature dashboards: what each transcoder feature does, measured on a corpus.

    from ct_engine.features import build_dashboards, CorpusSpec, corpus_texts
    dashboards = build_dashboards(model, corpus_texts(CorpusSpec(tokens=200_000), "toy-world"))
    card = dashboards.card(layer=2, feature=17)
    card.label, card.top_logits[:3], card.top_examples[0].tokens

:func:`build_dashboards` makes one streaming pass over the corpus (memory bounded by the
number of features, not by the corpus length); :class:`FeatureDashboards` holds the arrays and
gives each feature's :class:`FeatureCard`; :mod:`ct_engine.features.files` reads and writes
circuit-tracer's feature files (``index.json.gz`` and per-layer ``.bin``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ct_engine.features.cards import LABEL_SOURCES, Example, ExampleGroup, FeatureCard
from ct_engine.features.corpus import CorpusSpec, corpus_texts, read_texts, toy_world_texts
from ct_engine.features.dashboards import FeatureDashboards

if TYPE_CHECKING:
    from ct_engine.features.collect import build_dashboards


def __getattr__(name: str):
    # build_dashboards needs torch; reading feature files and cards (`ct features show`, the
    # viewer) must not import it, so it is loaded on first use.
    if name == "build_dashboards":
        from ct_engine.features.collect import build_dashboards

        return build_dashboards
    raise AttributeError(f"module 'ct_engine.features' has no attribute {name!r}")


__all__ = [
    "LABEL_SOURCES",
    "CorpusSpec",
    "Example",
    "ExampleGroup",
    "FeatureCard",
    "FeatureDashboards",
    "build_dashboards",
    "corpus_texts",
    "read_texts",
    "toy_world_texts",
]
