"""The viewer page in headless Chromium against the real server and a real lake."""

from __future__ import annotations

import json
import math
import os
import re
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
    assert "node_threshold=0.3" in page.url
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
    # A file holds cumulative shares only: ranked among its nodes (4 tokens, 8 features, 1
    # error; ties by order), with the share the nodes up to this one hold.
    assert page.inner_text("#panel-influence") == (
        "rank 8 of 13 in this file \u00b7 ranks 1\u20138 hold 40.0% of total"
    )
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


# -- the view in the URL -----------------------------------------------------------------------


def pinned_ids(page) -> list[str]:
    items = page.locator("li[data-testid=pinned-item]")
    return [items.nth(k).get_attribute("data-node-id") for k in range(items.count())]


def supernode_names(page) -> list[str]:
    return page.locator("li[data-testid=supernode-item] .sn-name").all_inner_texts()


def ring_colours(page, node_id: str, extra: float) -> list[list[int]]:
    """Canvas pixels on the circle of radius ``r + extra`` around a node (8 directions)."""
    return page.evaluate(
        """([id, extra]) => {
            const s = window.ctViewer.state;
            const i = s.model.index.get(id);
            const r = s.model.r[i] * Math.sqrt(s.zoom.k) + extra;
            const c = document.getElementById("graph-canvas");
            const rect = c.getBoundingClientRect();
            const p = window.ctViewer.nodeClientPos(id);
            const dpr = window.devicePixelRatio || 1;
            const out = [];
            for (let k = 0; k < 8; k++) {
                const a = (k * Math.PI) / 4;
                const x = Math.round((p.x - rect.left + r * Math.cos(a)) * dpr);
                const y = Math.round((p.y - rect.top + r * Math.sin(a)) * dpr);
                out.push(Array.from(c.getContext("2d").getImageData(x, y, 1, 1).data));
            }
            return out;
        }""",
        [node_id, extra],
    )


def is_pin_purple(rgba) -> bool:
    return all(
        math.isclose(a, b, abs_tol=45) for a, b in zip(rgba[:3], (0x8E, 0x44, 0xAD), strict=True)
    )


def test_shared_url_restores_and_follows_the_view(page, live_server, artifacts_dir):
    """A link with thresholds, pins, supernodes and a clicked node opens that view (unknown ids
    left out with a notice); changing the view rewrites the link, which reloads the same."""
    from urllib.parse import quote

    graph_id = graph_ids(live_server)[0]
    nt, et = 0.7, 0.95
    doc = live_server.get_json(f"/api/graphs/{graph_id}?node_threshold={nt}&edge_threshold={et}")
    feats = [n["node_id"] for n in features_by_influence(doc)]
    a, b, c, d = feats[:4]
    odd_name = "x, y: z; 100%"
    url = (
        f"{live_server.url}/#/graph/{graph_id}?node_threshold={nt}&edge_threshold={et}"
        f"&clicked={c}&pinned={a},{b},99_99_99"
        f"&supernodes=capital%20path:{a},{b};{quote(odd_name, safe='')}:{c},E_1_999;empty:"
    )
    page.goto(url)
    page.wait_for_selector("body[data-state=graph]")
    page.wait_for_selector("li[data-testid=pinned-item]")
    # Thresholds: the sliders, their numbers, and the document they fetched.
    assert page.input_value("#node-threshold") == "0.7"
    assert page.input_value("#edge-threshold") == "0.95"
    assert page.inner_text("#node-threshold-value") == "0.70"
    assert page.inner_text("#edge-threshold-value") == "0.95"
    assert int(page.get_attribute("#graph-counts", "data-nodes")) == len(doc["nodes"])
    # Pins: listed, and ringed on the canvas.
    assert pinned_ids(page) == [a, b]
    page.evaluate("window.ctViewer.redraw()")
    for node_id in (a, b):
        assert any(is_pin_purple(x) for x in ring_colours(page, node_id, 2)), node_id
    # The clicked node's panel is open.
    expect(page.locator("#panel-body")).to_be_visible()
    assert page.inner_text("#panel-node-id") == c
    # Supernodes: listed by name (from the link, not saved) and boxed on the canvas.
    assert supernode_names(page) == ["capital path", odd_name]
    assert page.locator("[data-testid=supernode-local]").count() == 2
    boxes = page.evaluate("window.ctViewer.supernodeBoxes()")
    assert [(x["text"], x["members"]) for x in boxes] == [
        ("capital path", [a, b]),
        (odd_name, [c]),
    ]
    # What was left out is said once, in the status line.
    assert page.get_attribute("body", "data-url-notice") == "yes"
    status = page.inner_text("#status")
    assert "99_99_99" in status and "E_1_999" in status and "empty" in status
    page.screenshot(path=str(artifacts_dir / "viewer_shared_url.png"))
    # The URL now says what is shown, readably (unknown ids gone).
    assert f"pinned={a},{b}&" in page.url or page.url.endswith(f"pinned={a},{b}")
    assert "99_99_99" not in page.url and f"clicked={c}" in page.url

    # Changing the view rewrites the URL: a pin, a click, a threshold, a removed supernode.
    click_node(page, d, ctrl=True)
    expect(page).to_have_url(re.compile(rf"pinned={a},{b},{d}(&|$)"))
    click_node(page, a)
    expect(page).to_have_url(re.compile(rf"clicked={a}(&|$)"))
    page.eval_on_selector(
        "#node-threshold",
        "e => { e.value = '0.9'; e.dispatchEvent(new Event('input', {bubbles: true})); }",
    )
    expect(page).to_have_url(re.compile(r"node_threshold=0\.9&"))
    wider = live_server.get_json(f"/api/graphs/{graph_id}?node_threshold=0.9&edge_threshold={et}")
    expect(page.locator("#graph-counts")).to_have_attribute("data-nodes", str(len(wider["nodes"])))
    page.locator("li[data-testid=supernode-item]").nth(1).locator("button.sn-delete").click()
    expect(page).not_to_have_url(re.compile("x%2C"))
    assert "supernodes=capital%20path:" in page.url
    # The copy-link button puts that URL on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.click("#copy-link")
    expect(page.locator("#status")).to_contain_text("link copied")
    assert page.evaluate("navigator.clipboard.readText()") == page.url

    # Loading the rewritten link shows the same view, with nothing to leave out.
    shared = page.url
    page.goto(live_server.url + "/")
    page.wait_for_selector("tr[data-testid=graph-row]")
    page.goto(shared)
    page.wait_for_selector("body[data-state=graph]")
    page.wait_for_selector("li[data-testid=supernode-item] .sn-name")
    assert page.input_value("#node-threshold") == "0.9"
    assert pinned_ids(page) == [a, b, d]
    assert page.inner_text("#panel-node-id") == a
    assert supernode_names(page) == ["capital path"]
    assert page.get_attribute("body", "data-url-notice") == "no"
    assert page.url == shared
    # Supernodes of a link are not saved in the lake unless asked to.
    stored = live_server.get_json(f"/api/graphs/{graph_id}/annotations")["annotations"]
    assert [x for x in stored if x["kind"] == "supernode"] == []


def test_bad_links_are_notices_not_errors(page, live_server):
    graph_id = graph_ids(live_server)[0]
    page.goto(
        f"{live_server.url}/#/graph/{graph_id}?node_threshold=abc&edge_threshold=7"
        "&clicked=%E0%A4%A&pinned=,,nope,&supernodes=;:;%ZZ:1_2_3"
    )
    page.wait_for_selector("body[data-state=graph]")
    expect(page.locator("body")).to_have_attribute("data-url-notice", "yes")
    assert page.input_value("#node-threshold") == str(NT)
    status = page.inner_text("#status")
    assert "node_threshold=abc" in status and "edge_threshold=7" in status
    assert pinned_ids(page) == [] and supernode_names(page) == []
    expect(page.locator("#panel-body")).to_be_hidden()


# -- the index's columns -----------------------------------------------------------------------


def shown_column(page, index: int) -> list[str]:
    rows = page.locator("tr[data-testid=graph-row]")
    return [rows.nth(k).locator("td").nth(index).inner_text() for k in range(rows.count())]


def test_index_columns_sort(page, viewer_lake, tmp_path, artifacts_dir):
    """Clicking a header sorts by it, ascending then descending, numbers as numbers and empty
    cells last; the header shows which way."""
    from ct_viewer.server import create_app

    from .conftest import LiveServer

    # Graph files of 1 to 3 tokens next to the lake's two graphs: 4 to 8 edges against the
    # lake's hundreds (so "10" < "4" as text but not as numbers), and no scores (empty cells).
    for n_pos in (1, 2, 3):
        document = synthetic_document(n_pos)
        document["metadata"]["prompt"] = f"file graph of {n_pos} tokens"
        (tmp_path / f"g{n_pos}.json").write_text(json.dumps(document))
    config_path, lake_root = viewer_lake
    server = LiveServer(
        create_app(lake_root=lake_root, config_path=config_path, graph_file_dirs=[tmp_path])
    ).start()
    try:
        summaries = {g["id"]: g for g in server.get_json("/api/graphs")["graphs"]}
        assert len(summaries) == 5
        page.goto(server.url + "/")
        page.wait_for_selector("tr[data-testid=graph-row]")
        expect(page.locator("tr[data-testid=graph-row]")).to_have_count(5)

        def shown_ids() -> list[str]:
            rows = page.locator("tr[data-testid=graph-row]")
            return [rows.nth(k).get_attribute("data-graph-id") for k in range(rows.count())]

        def by(key: str, desc: bool) -> list[str]:
            have = [g for g in summaries.values() if g[key] is not None]
            have.sort(key=lambda g: g[key], reverse=desc)
            return [g["id"] for g in have] + [g["id"] for g in summaries.values() if g[key] is None]

        header = page.locator("th[data-key=n_edges]")
        page.click("[data-testid=sort-n_edges]")
        assert shown_ids() == by("n_edges", False)
        assert [int(x) for x in shown_column(page, 4)] == sorted(
            g["n_edges"] for g in summaries.values()
        )
        assert header.get_attribute("aria-sort") == "ascending"
        assert header.inner_text().endswith("\u25b2")
        page.click("[data-testid=sort-n_edges]")
        assert shown_ids() == by("n_edges", True)
        assert header.get_attribute("aria-sort") == "descending"
        assert header.inner_text().endswith("\u25bc")
        page.screenshot(path=str(artifacts_dir / "index_sorted.png"))

        # Another column: the previous one loses its mark; empty scores stay last both ways.
        page.click("[data-testid=sort-replacement_score]")
        assert header.get_attribute("aria-sort") == "none"
        assert not header.inner_text().endswith(("\u25b2", "\u25bc"))
        assert shown_ids() == by("replacement_score", False)
        assert shown_column(page, 7)[2:] == ["", "", ""]
        page.click("[data-testid=sort-replacement_score]")
        assert shown_ids() == by("replacement_score", True)
        assert shown_column(page, 7)[2:] == ["", "", ""]

        # Text: the prompt, case-insensitively; the order holds while filtering.
        page.click("[data-testid=sort-prompt_text]")
        prompts = shown_column(page, 1)
        assert prompts == sorted(prompts, key=str.casefold)
        page.fill("#filter-q", "file graph")
        expect(page.locator("tr[data-testid=graph-row]")).to_have_count(3)
        assert shown_column(page, 1) == [f"file graph of {n} tokens" for n in (1, 2, 3)]
    finally:
        server.stop()


# -- steering: the value shown is the value sent -----------------------------------------------


def test_steering_shows_and_sends_its_scale(page, live_server, artifacts_dir):
    graph_id = graph_ids(live_server)[1]
    doc = document(live_server, graph_id)
    node = features_by_influence(doc)[0]
    open_graph(page, live_server, graph_id)
    click_node(page, node["node_id"], ctrl=True)
    row = page.locator(f"tr[data-testid=steer-input-row][data-node-id='{node['node_id']}']")
    mode, amount = row.locator("select.steer-mode"), row.locator("input.steer-amount")
    readout = row.locator("[data-testid=steer-readout]")
    # A new row scales by 2, and says so: the mode, the number and what it applies.
    for shown in (mode, amount, readout):
        expect(shown).to_be_visible()
        box, side = shown.bounding_box(), page.locator("#side").bounding_box()
        assert side["x"] <= box["x"] and box["x"] + box["width"] <= side["x"] + side["width"]
    assert mode.input_value() == "multiplier"
    assert "scale" in mode.locator("option:checked").inner_text()
    assert amount.input_value() == "2"
    act = node["activation"]
    assert float(readout.get_attribute("data-value")) == pytest.approx(2 * act, rel=1e-6)

    def run_and_capture() -> dict:
        with page.expect_request(lambda r: r.url.endswith("/steer")) as request:
            page.click("#steer-run")
        page.wait_for_selector("body[data-steer=done]", timeout=300_000)
        return request.value.post_data_json

    body = run_and_capture()
    assert body["interventions"] == [{"node_id": node["node_id"], "multiplier": 2}]
    applied = page.locator("li[data-testid=steer-applied-item]")
    clean = float(applied.get_attribute("data-clean"))
    assert clean == pytest.approx(act, rel=1e-3)
    assert float(applied.get_attribute("data-value")) == pytest.approx(2 * clean, rel=1e-6)

    # The user's number is the one sent, and the one the server applies.
    amount.fill("3.5")
    assert float(readout.get_attribute("data-value")) == pytest.approx(3.5 * act, rel=1e-6)
    page.evaluate("document.body.dataset.steer = ''")
    body = run_and_capture()
    assert body["interventions"] == [{"node_id": node["node_id"], "multiplier": 3.5}]
    expect(applied).to_have_attribute("data-value", re.compile(r"."))
    assert float(applied.get_attribute("data-value")) == pytest.approx(3.5 * clean, rel=1e-6)
    assert "\u00d73.500" in applied.inner_text()
    page.screenshot(path=str(artifacts_dir / "steering_value.png"))

    # Set to a value; an empty box is refused, not sent as 0.
    mode.select_option("value")
    amount.fill("-1.25")
    assert float(readout.get_attribute("data-value")) == -1.25
    page.evaluate("document.body.dataset.steer = ''")
    assert run_and_capture()["interventions"] == [{"node_id": node["node_id"], "value": -1.25}]
    amount.fill("")
    page.click("#steer-run")
    expect(page.locator("#steer-error")).to_contain_text("not a number")
    assert page.get_attribute("body", "data-steer") == "done"


# -- the node panel's influence ----------------------------------------------------------------


def lake_influence(lake_root, graph_id: str) -> tuple[dict, dict, int]:
    """``(rank, share, n)`` by node id from the lake's ``nodes`` table (logits left out)."""
    from tests.viewer.lake_influence import lake_influence_ranks

    model, prompt = graph_id.split("__")
    return lake_influence_ranks(lake_root, model, prompt)


def percent(x: float) -> str:
    """A share as the page writes it: 1 decimal from 10%, 2 from 0.1%, else 2 digits."""
    p = 100 * x
    if p >= 10:
        return f"{p:.1f}%"
    if p >= 0.1:
        return f"{p:.2f}%"
    return f"{p:.{1 - math.floor(math.log10(p))}f}%" if p else "0%"


def test_panel_shows_influence_rank_and_share(page, live_server, viewer_lake, artifacts_dir):
    graph_id = graph_ids(live_server)[0]
    doc = document(live_server, graph_id)
    rank, share, n = lake_influence(viewer_lake[1], graph_id)
    feats = features_by_influence(doc)
    tokens = [x for x in doc["nodes"] if x["feature_type"] == "embedding"]
    open_graph(page, live_server, graph_id)
    for node in (feats[0], feats[len(feats) // 2], tokens[-1]):
        node_id = node["node_id"]
        click_node(page, node_id)
        expect(page.locator("#panel-node-id")).to_have_text(node_id)
        box = page.locator("#panel-influence")
        assert int(box.get_attribute("data-rank")) == rank[node_id]
        assert int(box.get_attribute("data-of")) == n
        assert float(box.get_attribute("data-share")) == pytest.approx(share[node_id], rel=1e-9)
        assert box.inner_text() == (
            f"rank {rank[node_id]} of {n:,} \u00b7 {percent(share[node_id])} of total"
        )
        if node is feats[0]:
            page.screenshot(path=str(artifacts_dir / "panel_influence.png"))
    # The most influential feature comes before every other feature.
    assert rank[feats[0]["node_id"]] == min(rank[f["node_id"]] for f in feats)
    logit = next(x for x in doc["nodes"] if x["feature_type"] == "logit")
    click_node(page, logit["node_id"])
    expect(page.locator("#panel-influence")).to_have_text(re.compile("^\u2014"))
