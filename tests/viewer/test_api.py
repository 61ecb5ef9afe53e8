"""The viewer's HTTP API (``ct_viewer/API.md``) on a real lake: index, documents, annotations,
steering and the security rules. One lake per module (tiny model, 2 prompts)."""

from __future__ import annotations

import json
import threading
import time

import httpx
import jsonschema
import pytest
import torch
from starlette.testclient import TestClient

from ct_engine.graph.files import SCHEMA_PATH
from ct_lake import catalog
from ct_viewer import create_app
from ct_viewer.server import make_server

from .conftest import PROMPTS
from .lake_influence import lake_influence_ranks


@pytest.fixture(scope="module")
def app(viewer_lake):
    return create_app(
        lake_root=viewer_lake.config.lake,
        config_path=viewer_lake.config.path,
        graph_file_dirs=[viewer_lake.files_dir],
    )


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def document(client, viewer_lake):
    response = client.get(f"/api/graphs/{viewer_lake.ids[0]}")
    assert response.status_code == 200
    return response.json()


def _feature_nodes(document):
    return [n for n in document["nodes"] if n["feature_type"] == "cross layer transcoder"]


# -- index and documents -----------------------------------------------------------------------


def test_index_lists_lake_and_file_graphs(client, viewer_lake):
    graphs = client.get("/api/graphs").json()["graphs"]
    by_id = {g["id"]: g for g in graphs}
    assert set(by_id) == {*viewer_lake.ids, "file__copy"}
    for graph_id, text in zip(viewer_lake.ids, PROMPTS, strict=True):
        g = by_id[graph_id]
        assert g["source"] == "lake" and g["model"] == "tiny" and g["prompt_text"] == text
        assert 0 < g["replacement_score"] <= 1 and 0 < g["completeness_score"] <= 1
        assert g["n_features"] > 0 and g["n_edges"] > 0 and g["n_tokens"] > 0
        assert g["top_target"] and 0 < g["top_target_prob"] <= 1
    copy = by_id["file__copy"]
    assert copy["source"] == "file" and copy["model"] is None
    assert copy["replacement_score"] is None and PROMPTS[1] in copy["prompt_text"]
    assert copy["top_target"] == by_id[viewer_lake.ids[1]]["top_target"]
    assert set(copy) == set(by_id[viewer_lake.ids[0]])


def test_index_filters(client, viewer_lake):
    def ids(**params):
        return [g["id"] for g in client.get("/api/graphs", params=params).json()["graphs"]]

    assert ids(model="tiny") == viewer_lake.ids
    assert ids(model="other") == []
    assert ids(q="TEXAS") == [viewer_lake.ids[0]]
    assert set(ids(q="mira lives")) == {viewer_lake.ids[1], "file__copy"}
    assert ids(model="tiny", q="mira") == [viewer_lake.ids[1]]


def test_document_validates_and_thresholds_prune(client, viewer_lake, document):
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(document, schema)
    assert document["metadata"]["slug"] == viewer_lake.ids[0]
    pruning = viewer_lake.config.pruning
    assert document["metadata"]["node_threshold"] == pruning.node_threshold
    url = f"/api/graphs/{viewer_lake.ids[0]}"
    low = client.get(url, params={"node_threshold": 0.3, "edge_threshold": 0.5}).json()
    high = client.get(url, params={"node_threshold": 0.95, "edge_threshold": 0.99}).json()
    jsonschema.validate(high, schema)
    assert len(high["nodes"]) >= len(low["nodes"]) and len(high["links"]) >= len(low["links"])
    assert low["metadata"]["node_threshold"] == 0.3
    for bad in ("1.5", "-0.1", "nan", "abc"):
        response = client.get(url, params={"node_threshold": bad})
        assert response.status_code == 422, bad
        assert "node_threshold" in response.json()["detail"]


def test_document_ranks_nodes_by_influence(client, viewer_lake, document):
    """Each node's rank and share of the total influence, as the lake's nodes table gives
    them; the cumulative ``influence`` of a feature is the sum of the shares up to its rank."""
    model, prompt = viewer_lake.ids[0].split("__")
    rank, share, n = lake_influence_ranks(viewer_lake.config.lake, model, prompt)
    assert document["metadata"]["influence_ranked_nodes"] == n
    by_rank = sorted(share.values(), reverse=True)
    ranked = [x for x in document["nodes"] if x["feature_type"] != "logit"]
    assert ranked and all("influence_rank" not in x for x in document["nodes"] if x not in ranked)
    for node in ranked:
        assert node["influence_rank"] == rank[node["node_id"]], node["node_id"]
        assert node["influence_share"] == pytest.approx(share[node["node_id"]], rel=1e-9)
        cumulative = sum(by_rank[: node["influence_rank"]])
        assert node["influence"] == pytest.approx(cumulative, rel=1e-4, abs=1e-6)
    # The most influential nodes are kept by pruning: the document holds rank 1.
    assert min(x["influence_rank"] for x in ranked) == 1


def test_file_graph_is_served_as_stored(client, viewer_lake):
    response = client.get("/api/graphs/file__copy", params={"node_threshold": 0.1})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == (viewer_lake.files_dir / "copy.json").read_bytes()


# -- annotations -------------------------------------------------------------------------------


def test_annotations_round_trip_through_the_lake(client, app, viewer_lake, document):
    graph_id = viewer_lake.ids[0]
    url = f"/api/graphs/{graph_id}/annotations"
    assert client.get(url).json() == {"annotations": []}
    features = [n["node_id"] for n in _feature_nodes(document)]
    logit = next(n["node_id"] for n in document["nodes"] if n["feature_type"] == "logit")
    label = {"author": "ana", "kind": "label", "node_ids": features[:1], "text": "says Texas"}
    created = client.post(url, json=label)
    assert created.status_code == 201, created.text
    first = created.json()
    assert len(first["id"]) == 32 and first["graph"] == graph_id and first["kind"] == "label"
    assert first["created_at"].endswith("Z")
    group = {"author": "bo", "kind": "supernode", "node_ids": [*features[:2], logit], "text": "S"}
    second = client.post(url, json=group).json()
    listed = client.get(url).json()["annotations"]
    assert [a["id"] for a in listed] == [first["id"], second["id"]]
    assert listed[1]["node_ids"] == group["node_ids"]

    # DuckDB sees them as rows of the annotations view; a second server on the lake too.
    con = catalog.connect(viewer_lake.config.lake)
    try:
        rows = con.execute(
            "SELECT id, kind, author, node_ids FROM annotations WHERE graph = ? "
            "ORDER BY created_at",
            [graph_id],
        ).fetchall()
    finally:
        con.close()
    assert rows == [
        (first["id"], "label", "ana", features[:1]),
        (second["id"], "supernode", "bo", group["node_ids"]),
    ]
    other = create_app(lake_root=viewer_lake.config.lake, config_path=viewer_lake.config.path)
    with TestClient(other) as second_client:
        assert second_client.get(url).json()["annotations"] == listed
        assert second_client.delete(f"{url}/{first['id']}").status_code == 204
    assert [a["id"] for a in client.get(url).json()["annotations"]] == [second["id"]]
    assert client.delete(f"{url}/{first['id']}").status_code == 404
    assert client.delete(f"{url}/not-an-id").status_code == 404
    assert client.delete(f"{url}/{second['id']}").status_code == 204
    assert client.get(url).json() == {"annotations": []}

    # File graphs keep their annotations in the lake too; their node ids are the file's.
    copy_url = "/api/graphs/file__copy/annotations"
    note = {"author": "", "kind": "note", "node_ids": [], "text": "a note"}
    assert client.post(copy_url, json=note).status_code == 201
    assert len(client.get(copy_url).json()["annotations"]) == 1


def test_annotation_bodies_are_validated(client, viewer_lake, document):
    url = f"/api/graphs/{viewer_lake.ids[0]}/annotations"
    feature = _feature_nodes(document)[0]["node_id"]
    good = {"author": "a", "kind": "label", "node_ids": [feature], "text": "t"}
    bad_bodies = [
        [good],
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "text"},
        {**good, "kind": "comment"},
        {**good, "node_ids": [feature, feature]},
        {**good, "node_ids": []},
        {**good, "node_ids": ["99_99_99"]},
        {**good, "node_ids": [1]},
        {**good, "kind": "supernode", "node_ids": []},
        {**good, "text": "   "},
        {**good, "text": "x" * 2001},
        {**good, "author": "x" * 101},
        {**good, "kind": "note", "node_ids": [f"n{i}" for i in range(501)]},
    ]
    for body in bad_bodies:
        response = client.post(url, json=body)
        assert response.status_code == 422, body
        assert isinstance(response.json()["detail"], str)
    assert client.get(url).json() == {"annotations": []}


# -- steering ----------------------------------------------------------------------------------


def test_steering_ablation_matches_the_engine(client, app, viewer_lake, document):
    from ct_engine.graph.cache import load_graph
    from ct_lake.lake import Lake
    from ct_lake.paths import cached_transcoders

    features = _feature_nodes(document)
    top = min(features, key=lambda n: n["influence"])  # smallest cumulative share: most influential
    url = f"/api/graphs/{viewer_lake.ids[0]}/steer"
    response = client.post(url, json={"interventions": [{"node_id": top["node_id"], "value": 0.0}]})
    assert response.status_code == 200, response.text
    result = response.json()
    (row,) = result["interventions"]
    layer, feature, pos = (int(x) for x in top["node_id"].split("_"))
    assert (row["layer"], row["pos"], row["feature"], row["value"]) == (layer, pos, feature, 0.0)
    assert row["clean"] == pytest.approx(top["activation"], rel=1e-4, abs=1e-5)
    assert row["clean"] != 0
    changes = result["changes"]
    assert len(changes) >= 10
    first = max(changes, key=lambda c: c["prob_before"])  # the clean top target
    assert first["token"] == next(
        g["top_target"]
        for g in client.get("/api/graphs").json()["graphs"]
        if g["id"] == viewer_lake.ids[0]
    )
    assert abs(first["prob_after"] - first["prob_before"]) > 1e-6

    # The same ablation directly on the engine.
    entry = viewer_lake.config.model("tiny")
    lake = Lake(viewer_lake.config.lake)
    model, _ = app.state.models.load(entry, cached_transcoders(lake, "tiny"))
    assert [name for name, _ in app.state.models.cache.load_events] == ["tiny"]  # loaded once
    from ct_lake.paths import graph_path

    prompt = viewer_lake.ids[0].split("__")[1]
    tokens = load_graph(graph_path(lake, "tiny", prompt)).input_tokens
    with torch.no_grad():
        clean, _ = model.get_activations(tokens)
        ablated, _ = model.feature_intervention(tokens, [(layer, pos, feature, 0.0)])
    p_clean = torch.softmax(clean[0, -1].double(), -1)[first["token_id"]]
    p_ablated = torch.softmax(ablated[0, -1].double(), -1)[first["token_id"]]
    assert first["prob_before"] == pytest.approx(float(p_clean), abs=1e-6)
    assert first["prob_after"] == pytest.approx(float(p_ablated), abs=1e-6)

    # A multiplier of 1 is the clean run; top bounds the rows.
    same = {"interventions": [{"node_id": top["node_id"], "multiplier": 1.0}], "top": 3}
    result = client.post(url, json=same).json()
    assert result["interventions"][0]["value"] == pytest.approx(row["clean"])
    assert 3 <= len(result["changes"]) <= 6
    for change in result["changes"]:
        assert change["prob_after"] == pytest.approx(change["prob_before"], abs=1e-6)


def test_steering_refusals(client, viewer_lake, document):
    url = f"/api/graphs/{viewer_lake.ids[0]}/steer"
    feature = _feature_nodes(document)[0]["node_id"]
    error = next(n["node_id"] for n in document["nodes"] if n["feature_type"].startswith("mlp"))
    bad = [
        {"interventions": []},
        {"interventions": [{"node_id": error, "value": 0.0}]},
        {"interventions": [{"node_id": "3_3_3", "value": 0.0}]},
        {"interventions": [{"node_id": feature}]},
        {"interventions": [{"node_id": feature, "value": 0.0, "multiplier": 2.0}]},
        {"interventions": [{"node_id": feature, "value": "0"}]},
        {"interventions": [{"node_id": feature, "value": 1e300}]},
        {"interventions": [{"node_id": feature, "value": 0.0}], "top": 0},
        {"interventions": [{"node_id": feature, "value": 0.0}], "freeze_attention": "yes"},
    ]
    for body in bad:
        assert client.post(url, json=body).status_code == 422, body
    nan = b'{"interventions": [{"node_id": "%s", "value": NaN}]}' % feature.encode()
    headers = {"content-type": "application/json"}
    assert client.post(url, content=nan, headers=headers).status_code == 422
    body = {"interventions": [{"node_id": feature, "value": 0.0}]}
    assert client.post("/api/graphs/file__copy/steer", json=body).status_code == 409


# -- security ----------------------------------------------------------------------------------


async def _raw_get(app, path: str) -> tuple[int, bytes]:
    """GET ``path`` as a server would pass it on: no client-side URL normalization, the
    percent-decoded ``path`` next to the ``raw_path``."""
    from urllib.parse import unquote

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8041")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8041),
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


TRAVERSALS = [
    "/static/../server.py",
    "/static/../../ct_assets/lib/lake.py",
    "/static/%2e%2e/server.py",
    "/static/..%2fserver.py",
    "/static/%2e%2e%2fserver.py",
    "/static//etc/passwd",
    "/static/../API.md",
    "/api/graphs/..%2Fetc",
    "/api/graphs/..%2F..%2Fct_lakehouse.yaml",
    "/api/graphs/%2e%2e",
    "/api/graphs/file__..%2F..%2Fetc%2Fpasswd",
    "/api/graphs/file__copy.json",
    "/api/graphs/file__..",
    "/api/graphs/file__%2e%2e%2fcopy",
    "/api/graphs/tiny__p_..%2F..%2F..",
    "/api/graphs/.hidden",
    "/api/graphs/file__copy%00.json",
]


def test_path_traversal_is_refused(client, app):
    import asyncio

    markers = [b"def create_app", b"root:", b"class Lake", b"lake:", b"Endpoints"]
    for path in TRAVERSALS:
        response = client.get(path)
        assert 400 <= response.status_code < 500, path
        assert not any(m in response.content for m in markers), path
        status, body = asyncio.run(_raw_get(app, path))
        assert 400 <= status < 500, path
        assert not any(m in body for m in markers), path
    assert client.get("/api/graphs/tiny__p_000000000000").status_code == 404
    assert client.get("/api/graphs/nope/annotations").status_code == 404
    assert client.post("/api/graphs/nope/steer", json={}).status_code == 404
    response = client.get("/api/graphs/nope")
    assert response.status_code == 404 and "detail" in response.json()


def test_bodies_are_capped_and_json_only(client, viewer_lake):
    url = f"/api/graphs/{viewer_lake.ids[0]}/annotations"
    big = {"author": "a", "kind": "note", "node_ids": [], "text": "x" * 70_000}
    assert client.post(url, json=big).status_code == 413

    def chunks():
        for _ in range(100):
            yield b" " * 1024

    chunked = client.post(url, content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert (
        client.post(url, content=b"author=a", headers={"content-type": "text/plain"}).status_code
        == 415
    )
    assert client.post(url, data={"author": "a"}).status_code == 415
    bad_json = client.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422
    # A cross-site page's request (its Origin) and a rebound DNS name (its Host) are refused.
    body = {"author": "a", "kind": "note", "node_ids": [], "text": "t"}
    evil = client.post(url, json=body, headers={"origin": "http://evil.example"})
    assert evil.status_code == 403
    assert client.get("/api/graphs", headers={"host": "evil.example"}).status_code == 400
    assert client.get(url).json() == {"annotations": []}
    same = client.post(url, json=body, headers={"origin": "http://testserver"})
    assert same.status_code == 201
    assert client.delete(f"{url}/{same.json()['id']}").status_code == 204


def test_security_headers_and_static(client):
    response = client.get("/api/graphs")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page = client.get("/")
    assert page.status_code in (200, 404)  # the page ships in ct_viewer/static (other worker)
    if page.status_code == 200:
        assert page.headers["content-type"].startswith("text/html")
    assert client.get("/static/no-such-file.js").status_code == 404


def test_real_server_binds_loopback_and_caps_chunked_bodies(app, viewer_lake):
    server = make_server(app, port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        assert host == "127.0.0.1"
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as http:
            assert len(http.get("/api/graphs").json()["graphs"]) == 3
            url = f"/api/graphs/{viewer_lake.ids[0]}/annotations"

            def chunks():
                for _ in range(200):
                    yield b" " * 1024

            response = http.post(
                url, content=chunks(), headers={"content-type": "application/json"}
            )
            assert response.status_code == 413
            assert http.get("/static/%2e%2e/server.py").status_code == 404
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()
