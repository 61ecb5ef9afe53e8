"""Features read from a graph viewer URL (circuit-tracer's ``decode_url_features``)."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from ct_engine.utils.decode_url_features import (
    Feature,
    decode_url_features,
    extract_supernode_features,
)


def url_of(pinned: list[str], supernodes: list[list[str]]) -> str:
    query = urllib.parse.urlencode(
        {"slug": "g", "pinnedIds": ",".join(pinned), "supernodes": json.dumps(supernodes)}
    )
    return f"https://www.neuronpedia.org/gemma-2-2b/graph?{query}"


def test_features_tokens_and_error_nodes():
    url = url_of(
        ["27_22605_10", "E_26865_9", "20_-1_9", "0_13727_7"],
        [["Texas", "20_15589_9", "4_13154_9"], ["state", "6_4012_7", "E_2329_7"]],
    )
    supernodes, pinned = decode_url_features(url)
    assert supernodes == {
        "Texas": [Feature(20, 9, 15589), Feature(4, 9, 13154)],
        "state": [Feature(6, 7, 4012), Feature(-1, 7, 2329)],
    }
    # the error node 20_-1_9 is not a feature; a token reads as layer -1, its id as feature
    assert pinned == [Feature(27, 10, 22605), Feature(-1, 9, 26865), Feature(0, 7, 13727)]
    assert extract_supernode_features(url) == supernodes


def test_repeated_supernode_names_are_numbered_and_empty_urls_give_nothing():
    url = url_of([], [["capital", "1_2_3"], ["capital", "4_5_6"], ["capital", "7_8_9"]])
    assert list(extract_supernode_features(url)) == ["capital", "capital (2)", "capital (3)"]
    assert decode_url_features("https://example.org/graph?slug=g") == ({}, [])


@pytest.mark.parametrize(
    ("url", "match"),
    [
        (url_of(["12_abc_3"], []), "not a graph node id: '12_abc_3'"),
        (url_of(["1_2"], []), "not a graph node id: '1_2'"),
        ("https://x.org/g?supernodes=%5B%5B", "supernodes parameter is not JSON"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url, match):
    with pytest.raises(ValueError, match=match):
        decode_url_features(url)
