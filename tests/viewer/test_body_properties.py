"""Property-based tests of the viewer's request bodies: any body POSTed to the annotation and
steering endpoints gets a 2xx or a one-line JSON 4xx error, never a 500. On a private copy of the
tiny lake (the stored annotations never reach other modules)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from ct_viewer import create_app
from tests.conftest import copy_tiny_lake

# Derandomized and database-free: CI runs the same examples every time.
SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory, tiny_lake_template):
    from ct_lake.config import load_config

    return load_config(copy_tiny_lake(tiny_lake_template, tmp_path_factory.mktemp("props") / "l"))


@pytest.fixture(scope="module")
def client(lake):
    with TestClient(create_app(lake_root=lake.lake, config_path=lake.path)) as c:
        yield c


@pytest.fixture(scope="module")
def graph(client):
    (first, *_) = (g["id"] for g in client.get("/api/graphs").json()["graphs"])
    nodes = client.get(f"/api/graphs/{first}").json()["nodes"]
    features = [n["node_id"] for n in nodes if n["feature_type"] == "cross layer transcoder"]
    others = [n["node_id"] for n in nodes if n["feature_type"] != "cross layer transcoder"]
    return first, features[:4], others[:2]


def _check(response, ok: int) -> None:
    assert response.status_code == ok or 400 <= response.status_code < 500, response.text
    body = response.json()
    if response.status_code != ok:
        assert isinstance(body["detail"], str) and "\n" not in body["detail"], body


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
# Raw bytes sent as application/json: invalid JSON, NaN, deep nesting, odd encodings.
raw_bodies = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [b"NaN", b'{"top": Infinity}', b"[" * 5000, b"\xef\xbb\xbf{}", b'{"a":1,"a":2}']
    ),
)


def _post(client, url, body):
    if isinstance(body, bytes):
        return client.post(url, content=body, headers={"content-type": "application/json"})
    return client.post(url, json=body)


@st.composite
def annotation_bodies(draw, features, others):
    """Mostly well-formed annotations, so that a fair share is stored."""
    kind = _mostly(draw, st.sampled_from(["label", "supernode", "note"]), st.just("x") | scalars)
    n_nodes = _mostly(draw, st.just(1), st.integers(0, 3))
    body = {
        "author": _mostly(draw, st.text("ab c", max_size=4), scalars),
        "kind": kind,
        "node_ids": draw(
            st.lists(
                st.sampled_from(features) | st.sampled_from([*others, "9_9_9"]),
                min_size=n_nodes,
                max_size=n_nodes,
            )
        ),
        "text": _mostly(draw, st.text("xyz ", min_size=1, max_size=6), scalars),
    }
    if not draw(st.integers(0, 4)):
        key = draw(st.sampled_from(sorted(body)))
        if draw(st.booleans()):
            del body[key]
        else:
            body[key] = draw(json_values)
    return body


@st.composite
def any_annotation_body(draw, features, others):
    return _mostly(draw, annotation_bodies(features, others), json_values | raw_bodies, share=3)


def test_any_annotation_body_is_stored_or_refused_with_json(client, graph):
    graph_id, features, others = graph
    seen = Counter()

    @settings(max_examples=40, **SETTINGS)
    @given(any_annotation_body(features, others))
    def post(body):
        response = _post(client, f"/api/graphs/{graph_id}/annotations", body)
        _check(response, 201)
        seen[response.status_code] += 1
        if response.status_code == 201:
            stored = response.json()  # author and text are stored stripped (API.md)
            assert stored["author"] == body["author"].strip()
            assert stored["text"] == body["text"].strip()
            assert (stored["kind"], stored["node_ids"]) == (body["kind"], body["node_ids"])

    post()
    assert seen[201] and seen[422], seen  # the examples reach both outcomes


def _mostly(draw, good, other, share: int = 4):
    """A value from ``good`` ``share`` times in ``share + 1``, else from ``other``."""
    return draw(good if draw(st.integers(0, share)) else other)


@st.composite
def steer_bodies(draw, features, others):
    """Mostly well-formed bodies on steerable nodes, so that a fair share runs the model."""

    def intervention():
        node = _mostly(
            draw, st.sampled_from(features), st.sampled_from([*others, "0_0_9"]) | scalars
        )
        item = {"node_id": node}
        which = _mostly(
            draw, st.sampled_from(["value", "multiplier"]), st.sampled_from(["both", "neither"])
        )
        if which in ("value", "both"):
            item["value"] = _mostly(draw, st.floats(-1e3, 1e3), st.floats() | scalars)
        if which in ("multiplier", "both"):
            item["multiplier"] = _mostly(draw, st.floats(-10, 10), scalars)
        return item

    body = {
        "interventions": [
            intervention() for _ in range(_mostly(draw, st.integers(1, 2), st.just(0)))
        ]
    }
    if draw(st.booleans()):
        body["top"] = _mostly(draw, st.integers(1, 30), st.integers(-2, 0) | scalars)
    if draw(st.booleans()):
        body["freeze_attention"] = _mostly(draw, st.booleans(), scalars)
    return body


@st.composite
def any_steer_body(draw, features, others):
    return _mostly(draw, steer_bodies(features, others), json_values | raw_bodies, share=3)


def test_any_steering_body_steers_or_is_refused_with_json(client, graph):
    graph_id, features, others = graph
    seen = Counter()

    valid = {"interventions": [{"node_id": features[0], "multiplier": 2.0}]}
    response = _post(client, f"/api/graphs/{graph_id}/steer", valid)
    assert response.status_code == 200, response.text

    @settings(max_examples=40, **SETTINGS)
    @given(any_steer_body(features, others))
    def post(body):
        response = _post(client, f"/api/graphs/{graph_id}/steer", body)
        _check(response, 200)
        seen[response.status_code] += 1
        if response.status_code == 200:
            result = response.json()
            assert len(result["interventions"]) == len(body["interventions"])
            for change in result["changes"]:
                assert 0 <= change["prob_after"] <= 1 and 0 <= change["prob_before"] <= 1

    post()
    assert seen[200] and seen[422], seen  # the examples reach both outcomes


def test_a_body_nested_past_the_parser_is_a_json_422(client, graph):
    response = _post(client, f"/api/graphs/{graph[0]}/steer", b"[" * 100_000)
    assert response.status_code in (413, 422), response.text
    assert json.loads(response.text)["detail"]
