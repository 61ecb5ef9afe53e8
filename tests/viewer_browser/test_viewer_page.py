"""The viewer page in headless Chromium against the real server and a real lake."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict

import pytest

if os.environ.get("CT_REQUIRE_BROWSER") == "1":  # CI: a missing package is a failure
    from playwright.sync_api import expect
else:
    expect = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    ).expect

pytestmark = pytest.mark.timeout(600)

NT, ET = 0.8, 0.98  # the page's default thresholds


def graph_ids(server) -> list[str]:
    return [g["id"] for g in server.get_json("/api/graphs")["graphs"]]


def document(server, graph_id: str) -> dict:
    return server.get_json(f"/api/graphs/{graph_id}?node_threshold={NT}&edge_threshold={ET}")


def open_graph(page, server, graph_id: str) -> None:
    page.goto(f"{server.url}/#/graph/{graph_id}")
    page.wait_for_selector("body[data-state=graph]")


def click_node(page, node_id: str, ctrl: bool = False) -> None:
    pos = page.evaluate("id => window.ctViewer.nodeClientPos(id)", node_id)
    assert pos is not None, f"{node_id} is not drawn"
    if ctrl:
        page.keyboard.down("Control")
    page.mouse.click(pos["x"], pos["y"])
    if ctrl:
        page.keyboard.up("Control")


def edges_by_node(doc: dict):
    incoming, outgoing = defaultdict(list), defaultdict(list)
    for link in doc["links"]:
        incoming[link["target"]].append((link["source"], link["weight"]))
        outgoing[link["source"]].append((link["target"], link["weight"]))
    return incoming, outgoing


def features_by_influence(doc: dict) -> list[dict]:
    feats = [n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder"]
    return sorted(feats, key=lambda n: n["influence"])  # cumulative: smallest first


def panel_edges(page, table_id: str) -> list[tuple[str, float]]:
    rows = page.locator(f"#{table_id} tr[data-testid=edge-row]")
    return [
        (rows.nth(k).get_attribute("data-node-id"), float(rows.nth(k).get_attribute("data-weight")))
        for k in range(rows.count())
    ]


def check_edges(shown, expected_all) -> None:
    """``shown`` are the top edges by |weight| among ``expected_all`` (ties in any order)."""
    expected = sorted(expected_all, key=lambda e: -abs(e[1]))[:10]
    assert len(shown) == len(expected)
    got = [abs(w) for _, w in shown]
    assert got == pytest.approx([abs(w) for _, w in expected], rel=1e-5)
    pairs = {(n, round(w, 5)) for n, w in expected_all}
    assert all((n, round(w, 5)) in pairs for n, w in shown)


def test_index_open_graph_and_node_panel(page, live_server, artifacts_dir):
    ids = graph_ids(live_server)
    assert len(ids) == 2
    page.goto(live_server.url + "/")
    page.wait_for_selector("tr[data-testid=graph-row]")
    assert page.locator("tr[data-testid=graph-row]").count() == 2
    assert page.locator("#filter-model option[value=tiny]").count() == 1
    # Filter by prompt text, then open the one graph left.
    page.fill("#filter-q", "Texas")
    expect(page.locator("tr[data-testid=graph-row]")).to_have_count(1)
    row = page.locator("tr[data-testid=graph-row]")
    assert "Texas" in row.inner_text()
    page.screenshot(path=str(artifacts_dir / "index.png"))
    graph_id = row.get_attribute("data-graph-id")
    row.click()
    page.wait_for_selector("body[data-state=graph]")
    assert graph_id in page.url

    doc = document(live_server, graph_id)
    counts = page.locator("#graph-counts")
    assert int(counts.get_attribute("data-nodes")) == len(doc["nodes"])
    assert int(counts.get_attribute("data-links")) == len(doc["links"])

    incoming, outgoing = edges_by_node(doc)
    node = next(
        n for n in features_by_influence(doc) if incoming[n["node_id"]] and outgoing[n["node_id"]]
    )
    node_id = node["node_id"]
    # Hovering shows the node in the tooltip; clicking fills the panel.
    pos = page.evaluate("id => window.ctViewer.nodeClientPos(id)", node_id)
    page.mouse.move(pos["x"], pos["y"])
    page.wait_for_selector("#tooltip:not([hidden])")
    assert node_id in page.inner_text("#tooltip")
    click_node(page, node_id)
    page.wait_for_selector("#panel-body:not([hidden])")
    assert page.inner_text("#panel-node-id") == node_id
    assert page.get_attribute("#panel-kind", "data-kind") == "feature"
    assert page.inner_text("#panel-layer") == node["layer"]
    assert page.inner_text("#panel-pos") == str(node["ctx_idx"])
    token = doc["metadata"]["prompt_tokens"][node["ctx_idx"]]
    assert page.inner_text("#panel-token") == json.dumps(token)
    activation = float(page.get_attribute("#panel-activation", "data-value"))
    assert activation == pytest.approx(node["activation"], rel=1e-6)
    check_edges(panel_edges(page, "panel-incoming"), incoming[node_id])
    check_edges(panel_edges(page, "panel-outgoing"), outgoing[node_id])
    page.screenshot(path=str(artifacts_dir / "graph-node-selected.png"))

    # Clicking an incoming edge selects its source.
    first_source = panel_edges(page, "panel-incoming")[0][0]
    page.locator("#panel-incoming tr[data-testid=edge-row]").first.click()
    assert page.inner_text("#panel-node-id") == first_source

    # Search by node id selects and highlights it.
    page.fill("#search", node_id)
    expect(page.locator("#search-count")).to_have_attribute("data-count", "1")
    assert page.inner_text("#panel-node-id") == node_id

    # A lower node threshold re-fetches a smaller graph.
    page.eval_on_selector(
        "#node-threshold",
        "e => { e.value = '0.3'; e.dispatchEvent(new Event('input', {bubbles: true})); }",
    )
    pruned = live_server.get_json(f"/api/graphs/{graph_id}?node_threshold=0.3&edge_threshold={ET}")
    expect(page.locator("#graph-counts")).to_have_attribute("data-nodes", str(len(pruned["nodes"])))
    assert "nt=0.3" in page.url
    assert len(pruned["nodes"]) < len(doc["nodes"])


def test_label_and_supernode_persist_across_reload(page, live_server, artifacts_dir):
    graph_id = graph_ids(live_server)[0]
    doc = document(live_server, graph_id)
    a, b = (n["node_id"] for n in features_by_influence(doc)[:2])
    open_graph(page, live_server, graph_id)
    page.fill("#author", "ada")

    click_node(page, a)
    page.fill("#label-input", "capital city feature")
    page.click("#label-save")
    expect(page.locator("#panel-label")).to_have_text("capital city feature")

    click_node(page, a, ctrl=True)
    click_node(page, b, ctrl=True)
    pinned = page.locator("li[data-testid=pinned-item]")
    assert [pinned.nth(k).get_attribute("data-node-id") for k in range(pinned.count())] == [a, b]
    page.fill("#supernode-name", "say Austin")
    page.click("#supernode-create")
    page.wait_for_selector("li[data-testid=supernode-item]")
    page.screenshot(path=str(artifacts_dir / "annotations-before-reload.png"))

    stored = live_server.get_json(f"/api/graphs/{graph_id}/annotations")["annotations"]
    kinds = {x["kind"]: x for x in stored}
    assert kinds["label"]["node_ids"] == [a] and kinds["label"]["author"] == "ada"
    assert kinds["supernode"]["node_ids"] == [a, b]
    assert kinds["supernode"]["text"] == "say Austin"

    page.reload()
    page.wait_for_selector("body[data-state=graph]")
    item = page.wait_for_selector("li[data-testid=supernode-item]")
    assert "say Austin" in item.inner_text()
    assert a in item.inner_text() and b in item.inner_text()
    assert page.input_value("#author") == "ada"  # remembered in localStorage
    click_node(page, a)
    assert page.inner_text("#panel-label") == "capital city feature"
    # The label is searchable.
    page.fill("#search", "capital city")
    expect(page.locator("#search-count")).to_have_attribute("data-count", "1")
    assert page.inner_text("#panel-node-id") == a
    page.screenshot(path=str(artifacts_dir / "annotations-after-reload.png"))

    # Deleting the supernode from the list removes it from the lake.
    page.click("li[data-testid=supernode-item] button.sn-delete")
    page.wait_for_selector("li[data-testid=supernode-item]", state="detached")
    stored = live_server.get_json(f"/api/graphs/{graph_id}/annotations")["annotations"]
    assert [x["kind"] for x in stored] == ["label"]


def supernode_edge_pixel(page, box: dict) -> list[int]:
    """The canvas pixel on the middle of a supernode box's left edge (its outline)."""
    return page.evaluate(
        """b => {
            const c = document.getElementById("graph-canvas");
            const r = c.getBoundingClientRect();
            const dpr = window.devicePixelRatio || 1;
            const x = Math.round((b.x0 - r.left) * dpr);
            const y = Math.round(((b.y0 + b.y1) / 2 - r.top) * dpr);
            return Array.from(c.getContext("2d").getImageData(x, y, 1, 1).data);
        }""",
        box,
    )


def test_supernode_boxes_and_remove_label(page, live_server, artifacts_dir):
    graph_id = graph_ids(live_server)[0]
    doc = document(live_server, graph_id)
    # Nodes that the other tests on this (module-scoped) lake do not annotate.
    a, b = (n["node_id"] for n in features_by_influence(doc)[2:4])
    before = live_server.get_json(f"/api/graphs/{graph_id}/annotations")["annotations"]
    open_graph(page, live_server, graph_id)
    page.fill("#author", "grace")
    expect(page.locator("#show-supernodes")).to_be_checked()

    # Two labels on the same node (the older one is removed too).
    click_node(page, a)
    expect(page.locator("#remove-label")).to_be_hidden()
    for text in ("first label", "second label"):
        page.fill("#label-input", text)
        page.click("#label-save")
        expect(page.locator("#panel-label")).to_have_text(text)
    expect(page.locator("#remove-label")).to_be_visible()

    # A supernode is drawn as a box around its members on the main canvas.
    click_node(page, a, ctrl=True)
    click_node(page, b, ctrl=True)
    page.fill("#supernode-name", "grouped pair")
    page.click("#supernode-create")
    page.wait_for_selector("li[data-testid=supernode-item]")
    page.wait_for_function("() => window.ctViewer.supernodeBoxes().length === 1")
    box = page.evaluate("window.ctViewer.supernodeBoxes()")[0]
    assert box["text"] == "grouped pair" and box["members"] == [a, b]
    for node_id in (a, b):
        pos = page.evaluate("id => window.ctViewer.nodeClientPos(id)", node_id)
        assert box["x0"] < pos["x"] < box["x1"] and box["y0"] < pos["y"] < box["y1"]
    page.evaluate("window.ctViewer.redraw()")
    shown = supernode_edge_pixel(page, box)
    page.screenshot(path=str(artifacts_dir / "supernode-box.png"))

    # Unchecking "show supernodes" hides the box; checking it again shows it.
    page.uncheck("#show-supernodes")
    page.wait_for_function("() => window.ctViewer.supernodeBoxes().length === 0")
    page.evaluate("window.ctViewer.redraw()")
    hidden = supernode_edge_pixel(page, box)
    assert shown != hidden
    page.check("#show-supernodes")
    page.wait_for_function("() => window.ctViewer.supernodeBoxes().length === 1")

    # Removing the label deletes every label annotation of the node, in the lake too.
    click_node(page, a)
    page.click("#remove-label")
    expect(page.locator("#panel-label")).to_have_text("")
    expect(page.locator("#remove-label")).to_be_hidden()
    stored = live_server.get_json(f"/api/graphs/{graph_id}/annotations")["annotations"]
    assert [x for x in stored if a in x["node_ids"]] == [
        x for x in stored if x["kind"] == "supernode" and x["text"] == "grouped pair"
    ]
    assert len(stored) == len(before) + 1

    page.reload()
    page.wait_for_selector("body[data-state=graph]")
    page.wait_for_selector("li[data-testid=supernode-item]")
    page.wait_for_function("() => window.ctViewer.supernodeBoxes().length === 1")
    click_node(page, a)
    expect(page.locator("#panel-node-id")).to_have_text(a)
    expect(page.locator("#panel-label")).to_have_text("")
    expect(page.locator("#remove-label")).to_be_hidden()

    # Clean up: the other tests expect no annotations on this graph.
    page.click("li[data-testid=supernode-item] button.sn-delete")
    page.wait_for_selector("li[data-testid=supernode-item]", state="detached")
    assert live_server.get_json(f"/api/graphs/{graph_id}/annotations")["annotations"] == before


def test_steering_changes_probabilities(page, live_server, artifacts_dir):
    graph_id = graph_ids(live_server)[1]
    doc = document(live_server, graph_id)
    feats = [n["node_id"] for n in features_by_influence(doc)[:2]]
    open_graph(page, live_server, graph_id)
    for node_id in feats:
        click_node(page, node_id, ctrl=True)
    rows = page.locator("tr[data-testid=steer-input-row]")
    assert rows.count() == 2
    for k in range(2):
        rows.nth(k).locator("select.steer-mode").select_option("value")
        rows.nth(k).locator("input.steer-amount").fill("25")
    page.click("#steer-run")
    page.wait_for_selector("body[data-steer=done]", timeout=300_000)
    result = page.locator("tr[data-testid=steer-row]")
    assert result.count() > 0
    before = [
        float(x)
        for x in result.locator("td.p-before").evaluate_all("els => els.map(e => e.dataset.value)")
    ]
    after = [
        float(x)
        for x in result.locator("td.p-after").evaluate_all("els => els.map(e => e.dataset.value)")
    ]
    assert max(abs(x - y) for x, y in zip(before, after, strict=True)) > 1e-4
    page.screenshot(path=str(artifacts_dir / "steering.png"))

    # The page shows what the API returns for the same request.
    status, expected = live_server.post_json(
        f"/api/graphs/{graph_id}/steer",
        {
            "interventions": [{"node_id": f, "value": 25.0} for f in feats],
            "freeze_attention": True,
            "top": 10,
        },
    )
    assert status == 200
    tokens = result.evaluate_all("els => els.map(e => e.dataset.token)")
    assert tokens == [c["token"] for c in expected["changes"]]
    assert after == pytest.approx([c["prob_after"] for c in expected["changes"]], abs=1e-6)


def synthetic_document(n_pos: int = 4) -> dict:
    """A small graph document in the file schema, as Neuronpedia or ``ct attribute`` write."""
    tokens = ["<bos>", " The", " cat", " sat"][:n_pos]
    nodes, links = [], []
    for p in range(len(tokens)):
        nodes.append(
            {
                "node_id": f"E_{100 + p}_{p}",
                "feature": p,
                "layer": "E",
                "ctx_idx": p,
                "feature_type": "embedding",
                "jsNodeId": f"E_{100 + p}-{p}",
                "influence": 0.9,
                "activation": None,
                "clerp": "",
            }
        )
    for layer in range(2):
        for p in range(n_pos):
            fid = f"{layer}_{7 + p}_{p}"
            nodes.append(
                {
                    "node_id": fid,
                    "feature": 1000 + p,
                    "layer": str(layer),
                    "ctx_idx": p,
                    "feature_type": "cross layer transcoder",
                    "jsNodeId": f"{layer}_{7 + p}-0",
                    "influence": 0.1 * (p + 1),
                    "activation": 1.5 + p,
                    "clerp": "",
                }
            )
            links.append({"source": f"E_{100 + p}_{p}", "target": fid, "weight": 0.5 - 0.3 * p})
    nodes.append(
        {
            "node_id": f"0_-1_{n_pos - 1}",
            "feature": -1,
            "layer": "0",
            "ctx_idx": n_pos - 1,
            "feature_type": "mlp reconstruction error",
            "jsNodeId": f"0_-1-{n_pos - 1}",
            "influence": 0.5,
            "activation": None,
            "clerp": "",
        }
    )
    nodes.append(
        {
            "node_id": f"3_42_{n_pos - 1}",
            "feature": 42,
            "layer": "3",
            "ctx_idx": n_pos - 1,
            "feature_type": "logit",
            "jsNodeId": f"L_42-{n_pos - 1}",
            "token_prob": 0.7,
            "is_target_logit": True,
            "influence": None,
            "activation": None,
            "clerp": 'Output " on" (p=0.700)',
        }
    )
    links.append(
        {"source": f"1_{7 + n_pos - 1}_{n_pos - 1}", "target": f"3_42_{n_pos - 1}", "weight": 2.0}
    )
    links.append({"source": f"0_-1_{n_pos - 1}", "target": f"3_42_{n_pos - 1}", "weight": -1.0})
    return {
        "metadata": {
            "slug": "imported-cat",
            "scan": "test",
            "transcoder_list": [],
            "prompt_tokens": tokens,
            "prompt": "".join(tokens),
            "node_threshold": 0.8,
            "schema_version": 1,
        },
        "qParams": {
            "pinnedIds": ["1_8_1"],
            "supernodes": [["cat things", "0_9_2", "1_9_2"]],
            "linkType": "both",
            "clickedId": "",
            "sg_pos": "",
        },
        "nodes": nodes,
        "links": links,
    }


def canvas_pixel(page, node_id: str) -> list[int]:
    return page.evaluate(
        """id => {
            const c = document.getElementById('graph-canvas');
            const p = window.ctViewer.nodeClientPos(id);
            const r = c.getBoundingClientRect();
            const dpr = window.devicePixelRatio || 1;
            const d = c.getContext('2d').getImageData(
                Math.round((p.x - r.left) * dpr), Math.round((p.y - r.top) * dpr), 1, 1).data;
            return Array.from(d);
        }""",
        node_id,
    )


def test_import_json_file_and_export(page, live_server, artifacts_dir, tmp_path):
    doc = synthetic_document()
    path = tmp_path / "imported-cat.json"
    path.write_text(json.dumps(doc))
    page.goto(live_server.url + "/")
    page.wait_for_selector("tr[data-testid=graph-row]")
    page.set_input_files("#import-file", str(path))
    page.wait_for_selector("body[data-state=graph][data-source=imported]")
    assert int(page.get_attribute("#graph-counts", "data-nodes")) == len(doc["nodes"])
    assert int(page.get_attribute("#graph-counts", "data-links")) == len(doc["links"])
    assert page.is_visible("#imported-note")
    assert "imported-cat" in page.inner_text("#graph-title")
    # Every node is drawn at its place, in its kind's colour.
    colours = {"cross layer transcoder": (0x4E, 0x79, 0xA7), "embedding": (0x59, 0xA1, 0x4F)}
    for node in doc["nodes"]:
        pos = page.evaluate("id => window.ctViewer.nodeClientPos(id)", node["node_id"])
        assert pos is not None
        if node["feature_type"] in colours:
            rgba = canvas_pixel(page, node["node_id"])
            want = colours[node["feature_type"]]
            assert all(
                math.isclose(a, b, abs_tol=40) for a, b in zip(rgba[:3], want, strict=True)
            ), (
                node["node_id"],
                rgba,
            )
    # The document's pins and supernodes are shown; annotations and steering are off.
    assert page.locator("li[data-testid=pinned-item][data-node-id='1_8_1']").count() == 1
    assert "cat things" in page.inner_text("#supernode-list")
    assert page.is_disabled("#label-save") and page.is_disabled("#supernode-create")
    assert page.is_disabled("#steer-run")
    click_node(page, "1_10_3")
    assert page.inner_text("#panel-node-id") == "1_10_3"
    assert panel_edges(page, "panel-outgoing") == [("3_42_3", 2.0)]
    page.screenshot(path=str(artifacts_dir / "imported.png"))

    with page.expect_download() as info:
        page.click("#export-btn")
    exported = json.loads(open(info.value.path()).read())
    assert info.value.suggested_filename == "imported-cat.json"
    assert [n["node_id"] for n in exported["nodes"]] == [n["node_id"] for n in doc["nodes"]]
    assert exported["links"] == doc["links"]
    assert exported["qParams"]["pinnedIds"] == ["1_8_1"]


def test_export_server_graph(page, live_server):
    graph_id = graph_ids(live_server)[0]
    doc = document(live_server, graph_id)
    open_graph(page, live_server, graph_id)
    with page.expect_download() as info:
        page.click("#export-btn")
    exported = json.loads(open(info.value.path()).read())
    assert exported["metadata"] == doc["metadata"]
    assert exported["links"] == doc["links"]
    assert len(exported["nodes"]) == len(doc["nodes"])
