"""Bad requests to the viewer (``ct serve``): one JSON error each, from a real server.

The server runs over a lake with one damaged file in ``graphs`` and one in ``annotations``,
and a graph folder with a malformed JSON file: the list still answers, with the good graphs,
and names the damaged ones. Add a case: one :class:`Http` line in ``CASES``.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from ct_lake.keys import prompt_key
from ct_lake.lake import Lake
from ct_lake.paths import graph_slug
from tests.bad_inputs.harness import Http, check_http, ids

P1, P2 = prompt_key("one"), prompt_key("two")
GOOD = {
    "metadata": {"prompt": "fine", "prompt_tokens": ["a", "b"]},
    "nodes": [{"node_id": "1_2_1", "feature_type": "cross layer transcoder"}],
    "links": [],
}
NOTE = {"author": "a", "kind": "note", "node_ids": ["1_2_1"], "text": "t"}
G = "/api/graphs"

CASES = [
    # ids that are not graphs, paths that try to leave their folder
    Http("unknown-file-graph", "GET", f"{G}/file__nope", 404, r"^no graph file__nope$"),
    Http("unknown-lake-graph", "GET", f"{G}/m__p_000000000000", 404, r"no graph m__p_0{12}$"),
    Http("id-not-an-id", "GET", f"{G}/file__a%20b", 404, r"^no such graph$"),
    Http("id-dot-dot", "GET", f"{G}/file__..", 404, r"^no graph file__\.\.$"),
    Http("id-traversal", "GET", f"{G}/..%2F..%2Fetc%2Fpasswd", 404, r"^Not Found$"),
    Http("id-traversal-file", "GET", f"{G}/file__..%2Fsecret", 404, r"^Not Found$"),
    Http("file-outside-folder", "GET", f"{G}/file__secret", 404, r"no graph file__secret"),
    Http("metadata-not-a-graph", "GET", f"{G}/file__graph-metadata", 404, r"no graph"),
    Http("static-traversal", "GET", "/static/../server.py", 404, r"Not Found"),
    Http("features-without-folder", "GET", "/features/../x", 404, r"no features folder"),
    Http("lake-graph-file-missing", "GET", f"{G}/m__{P1}", 404, r"its file is missing"),
    Http("no-such-route", "GET", "/api/nope", 404, r"Not Found"),
    Http("wrong-method", "PUT", G, 405, r"Method Not Allowed"),
    # query parameters
    Http(
        "threshold-not-a-number",
        "GET",
        f"{G}/file__good?node_threshold=abc",
        422,
        r"^node_threshold must be a number in \[0, 1\]$",
    ),
    Http(
        "threshold-out-of-range",
        "GET",
        f"{G}/file__good?edge_threshold=1.5",
        422,
        r"^edge_threshold must be a number in \[0, 1\]$",
    ),
    Http("threshold-nan", "GET", f"{G}/file__good?node_threshold=nan", 422, r"node_threshold"),
    # request bodies
    Http("note-not-json", "POST", f"{G}/file__good/annotations", 422, r"^invalid JSON", "{x"),
    Http("note-nan", "POST", f"{G}/file__good/annotations", 422, r"NaN is not valid JSON", "NaN"),
    Http(
        "note-deep-json",
        "POST",
        f"{G}/file__good/annotations",
        422,
        r"^invalid JSON",
        "[" * 10000 + "]" * 10000,
    ),
    Http(
        "note-not-json-type",
        "POST",
        f"{G}/file__good/annotations",
        415,
        r"Content-Type: application/json",
        "a=1",
        {"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Http(
        "note-too-large",
        "POST",
        f"{G}/file__good/annotations",
        413,
        r"larger than 65536 bytes",
        {**NOTE, "text": "x" * 70000},
    ),
    Http("note-empty-object", "POST", f"{G}/file__good/annotations", 422, r"author", {}),
    Http("note-a-list", "POST", f"{G}/file__good/annotations", 422, r"object", [NOTE]),
    Http(
        "note-unknown-node",
        "POST",
        f"{G}/file__good/annotations",
        422,
        r"9_9_9",
        {**NOTE, "node_ids": ["9_9_9"]},
    ),
    Http(
        "note-bad-kind",
        "POST",
        f"{G}/file__good/annotations",
        422,
        r"kind",
        {**NOTE, "kind": "rant"},
    ),
    Http(
        "note-on-a-broken-file",
        "POST",
        f"{G}/file__bad/annotations",
        409,
        r"^graph file bad\.json is not a graph document",
        NOTE,
    ),
    Http("delete-unknown-note", "DELETE", f"{G}/file__good/annotations/abc", 404, r"annotation"),
    Http(
        "steer-a-file-graph",
        "POST",
        f"{G}/file__good/steer",
        409,
        r"steering needs the graph's model",
        {"interventions": []},
    ),
    # the lake: a damaged partition names itself
    Http(
        "annotations-damaged",
        "GET",
        f"{G}/file__hurt/annotations",
        500,
        r"^the annotations of graph file__hurt cannot be read \(.*\); `ct lake check`",
    ),
    # who may ask
    Http(
        "foreign-host",
        "GET",
        G,
        400,
        r'^invalid Host header \("evil\.example"\)',
        headers={"Host": "evil.example"},
    ),
    Http(
        "cross-origin-write",
        "POST",
        f"{G}/file__good/annotations",
        403,
        r"^cross-origin request refused$",
        NOTE,
        {"Origin": "http://evil.example"},
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from ct_viewer.server import create_app, listen, make_server

    root = tmp_path_factory.mktemp("viewer-bad-inputs")
    lake = Lake(root / "lake")
    for prompt in (P1, P2):
        lake.write_table("graphs", [{"n_tokens": 2, "top_target": "x"}], model="m", prompt=prompt)
        lake.write_table("prompts", [{"text": f"prompt {prompt}", "n_chars": 8}], prompt=prompt)
    note = {"id": "n1", "author": "a", "kind": "note", "node_ids": [], "text": "t"}
    lake.write_table("annotations", [note], graph="file__hurt")
    for table, partition in (
        ("graphs", f"model=m/prompt={P2}"),
        ("annotations", "graph=file__hurt"),
    ):
        (path,) = (root / "lake" / table / partition).glob("*.parquet")
        path.write_bytes(b"PAR1 damaged")
    files = root / "graphs"
    files.mkdir()
    for name in ("good", "hurt"):
        (files / f"{name}.json").write_text(json.dumps(GOOD))
    (files / "bad.json").write_text('{"metadata": {}, "nodes": [')
    (files / "notdoc.json").write_text('{"nodes": [1, 2]}')
    (root / "secret.json").write_text(json.dumps(GOOD))
    (files / "secret.json").symlink_to(root / "secret.json")
    (files / "graph-metadata.json").write_text("{}")
    app = create_app(lake_root=root / "lake", graph_file_dirs=[files])
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    uvicorn_server = make_server(app, "127.0.0.1", port)
    uvicorn_server.config.log_level = "warning"
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uvicorn_server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the viewer did not start"
        time.sleep(0.05)
    yield port
    uvicorn_server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_viewer_bad_request(case, server):
    check_http(case, "127.0.0.1", server)


def test_the_list_keeps_the_good_graphs_and_names_the_damaged(server):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
    connection.request("GET", G)
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 200
    assert [g["id"] for g in body["graphs"]] == [graph_slug("m", P1), "file__good", "file__hurt"]
    assert body["graphs"][0]["prompt_text"] == f"prompt {P1}"
    damaged = {d["graph"]: d for d in body["damaged"]}
    assert set(damaged) == {graph_slug("m", P2), "file__bad", "file__notdoc"}
    lake_file = damaged[graph_slug("m", P2)]
    assert lake_file["source"] == "lake" and lake_file["file"].startswith(
        f"graphs/model=m/prompt={P2}/"
    )
    assert (
        damaged["file__bad"]["file"] == "bad.json" and "not JSON" in damaged["file__bad"]["error"]
    )
    assert "not a graph document" in damaged["file__notdoc"]["error"]
