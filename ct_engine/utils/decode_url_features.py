"""Features named in a graph viewer's URL (``pinnedIds`` and ``supernodes``), as
``(layer, pos, feature_idx)``: circuit-tracer's ``utils.decode_url_features``.

Node ids follow the graph JSON: a feature is ``{layer}_{feature}_{pos}``, a token
``E_{token_id}_{pos}`` (returned with layer ``-1`` and the token id as ``feature_idx``), an
error node ``{layer}_-1_{pos}``. Error nodes are not features and are left out (circuit-tracer
0.5.0's own error ids, ``0_{layer}_{pos}``, cannot be told from a layer-0 feature and read as
one, as there). A logit node reads as a feature one layer past the last.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import NamedTuple


class Feature(NamedTuple):
    """A feature at one position; indexes ``(L, T, F)`` activations as ``acts[feature]``."""

    layer: int
    pos: int
    feature_idx: int


def _node_feature(node_id: str) -> Feature | None:
    """The feature (or token, layer -1) a node id names; None for an error node."""
    parts = str(node_id).split("_")
    try:
        if parts[0] == "E" and len(parts) == 3:
            return Feature(-1, int(parts[2]), int(parts[1]))
        if len(parts) == 3:
            layer, feature, pos = (int(p) for p in parts)
            return None if feature == -1 else Feature(layer, pos, feature)
    except ValueError:
        pass
    raise ValueError(
        f"not a graph node id: {node_id!r} (expected layer_feature_pos or E_token_pos)"
    )


def decode_url_features(url: str) -> tuple[dict[str, list[Feature]], list[Feature]]:
    """The supernodes and pinned features of a graph URL.

    Returns:
        ``(supernode_features, singleton_features)``: each supernode's name (a repeated name
        gets `` (2)``, `` (3)``...) mapped to its features, and the features of ``pinnedIds``
        in their order.

    Raises:
        ValueError: a ``supernodes`` parameter that is not JSON, or a node id of another form.
    """
    query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    try:
        supernodes = json.loads(query.get("supernodes", ["[]"])[0])
    except json.JSONDecodeError as err:
        raise ValueError(f"the URL's supernodes parameter is not JSON: {err}") from None
    features: dict[str, list[Feature]] = {}
    seen: dict[str, int] = {}
    for name, *node_ids in supernodes:
        seen[name] = seen.get(name, 0) + 1
        key = name if seen[name] == 1 else f"{name} ({seen[name]})"
        features[key] = [f for f in map(_node_feature, node_ids) if f is not None]
    pinned = [p for p in query.get("pinnedIds", [""])[0].split(",") if p]
    singletons = [f for f in map(_node_feature, pinned) if f is not None]
    return features, singletons


def extract_supernode_features(url: str) -> dict[str, list[Feature]]:
    """The supernodes of a graph URL: name -> features (see :func:`decode_url_features`)."""
    return decode_url_features(url)[0]
