"""The helpers circuit-tracer's notebooks import from ``utils.demo_utils``.

``extract_supernode_features(url)`` and ``decode_url_features(url)`` read the features of a
graph URL; ``get_top_features(graph, n)`` ranks a graph's features by multi-hop influence;
``get_topk`` and ``get_unembed_vecs`` read logits and unembedding columns. circuit-tracer's
HTML display widgets are not here: the notebooks of this repo print their own tables.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

import torch

from ct_engine.utils.decode_url_features import (
    Feature,
    decode_url_features,
    extract_supernode_features,
)

__all__ = [
    "Feature",
    "cleanup_cuda",
    "decode_url_features",
    "extract_supernode_features",
    "get_top_features",
    "get_topk",
    "get_unembed_vecs",
]


def get_top_features(graph, n: int = 10) -> tuple[list[tuple[int, int, int]], list[float]]:
    """The ``n`` selected features with the largest node influence (direct and indirect, on
    every target, weighted by its probability): ``(layer, pos, feature_idx)`` tuples and
    their influences, largest first."""
    from ct_engine.summary import top_features

    top = top_features(graph, n)
    return [(f.layer, f.pos, f.feature) for f in top], [f.influence for f in top]


def get_topk(logits: torch.Tensor, tokenizer, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable next tokens after the last position: ``(text, probability)``."""
    probs = torch.softmax(logits.squeeze()[-1].double(), dim=-1)
    values, ids = torch.topk(probs, k)
    return [(tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, ids, strict=True)]


def get_unembed_vecs(model, token_ids: Sequence[int], backend: str | None = None):
    """The unembedding column ``(d_model,)`` of each token id. ``backend`` is accepted for
    circuit-tracer's signature: ``model.W_U`` is ``(d_model, d_vocab)`` on both backends."""
    W_U = model.W_U
    return [W_U[:, int(t)] for t in token_ids]


def cleanup_cuda() -> None:
    """Collect garbage and release the CUDA allocator's cached blocks (when CUDA is up)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
