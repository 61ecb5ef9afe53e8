"""Feature cards in the viewer page (headless Chromium): the toy world's graph in a lake with
its feature dashboards; node labels on the canvas, the hover preview and the card of a
clicked feature node. Screenshots: ``feature_card.png`` (and ``feature_card_quantiles.png``),
``node_labels.png``, ``node_labels_zoomed.png`` under the artifacts folder."""

from __future__ import annotations

import os

import pytest

from tests.viewer.toy_features import private_copy

from .conftest import LiveServer

if os.environ.get("CT_REQUIRE_BROWSER") == "1":  # CI: a missing package is a failure
    from playwright.sync_api import expect
else:
    expect = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    ).expect

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def toy(tmp_path_factory, toy_features_template):
    return private_copy(toy_features_template, tmp_path_factory.mktemp("toy-features-page") / "toy")


@pytest.fixture(scope="module")
def server(toy):
    from ct_viewer.server import create_app

    app = create_app(
        lake_root=toy.lake_root,
        config_path=toy.config_path,
        graph_file_dirs=[toy.graph_dir],
        features_dir=toy.features_dir,
    )
    live = LiveServer(app).start()
    yield live
    live.stop()


def open_graph(page, server, graph_id: str, query: str = "") -> None:
    page.goto(f"{server.url}/#/graph/{graph_id}{query}")
    page.wait_for_selector("body[data-state=graph][data-features=ready]")


def feature_nodes(doc: dict) -> list[dict]:
    """Feature nodes, most influential first (influence is cumulative: smallest first)."""
    feats = [n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder"]
    return sorted(feats, key=lambda n: n["influence"])


def key(node: dict) -> tuple[int, int]:
    layer, feature, _ = (int(x) for x in node["node_id"].split("_"))
    return layer, feature


def truncated(label: str) -> str:
    return label if len(label) <= 26 else label[:25] + "\u2026"


def check_label_boxes(page, boxes: list[dict]) -> None:
    """Labels lie inside the canvas and cover neither each other nor another node."""
    canvas = page.locator("#graph-canvas").bounding_box()
    for b in boxes:
        assert canvas["x"] <= b["x0"] and b["x1"] <= canvas["x"] + canvas["width"] + 0.5
        assert canvas["y"] <= b["y0"] and b["y1"] <= canvas["y"] + canvas["height"] + 0.5
    for k, a in enumerate(boxes):
        for b in boxes[k + 1 :]:
            apart = a["x1"] <= b["x0"] or b["x1"] <= a["x0"] or a["y1"] <= b["y0"]
            assert apart or b["y1"] <= a["y0"], (a, b)


def test_feature_card_of_a_clicked_node(page, server, toy, artifacts_dir):
    graph_id = toy.lake_graph_id
    doc = server.get_json(f"/api/graphs/{graph_id}?node_threshold=0.8&edge_threshold=0.98")
    labels = {
        (f["layer"], f["feature"]): f
        for f in server.get_json(f"/api/graphs/{graph_id}/features")["features"]
    }
    open_graph(page, server, graph_id)

    # A small graph: every labelled feature node is drawn with its label, none overlapping.
    drawn = page.evaluate("window.ctViewer.nodeLabels()")
    want = {
        n["node_id"]: truncated(labels[key(n)]["label"])
        for n in feature_nodes(doc)
        if key(n) in labels
    }
    assert want and {b["id"]: b["text"] for b in drawn} == want
    check_label_boxes(page, drawn)
    page.screenshot(path=str(artifacts_dir / "node_labels.png"))

    node = feature_nodes(doc)[0]
    layer, feature = key(node)
    card = server.get_json(f"/api/graphs/{graph_id}/features/{layer}/{feature}")
    assert card["label"] and card["top_logits"] and card["groups"]

    # Hovering: a preview with the label, its source and the top 3 logits.
    pos = page.evaluate("id => window.ctViewer.nodeClientPos(id)", node["node_id"])
    page.mouse.move(pos["x"], pos["y"])
    page.wait_for_selector("#tooltip:not([hidden]) .tip-logits")
    assert page.inner_text("#tooltip .tip-label") == f"{card['label']} [{card['label_source']}]"
    chips = page.locator("#tooltip .tip-chip")
    assert [chips.nth(k).inner_text().split(" ")[0] for k in range(chips.count())] == [
        t for t, _ in card["top_logits"][:3]
    ]

    # Clicking: the card in the node panel.
    page.mouse.click(pos["x"], pos["y"])
    page.wait_for_selector("#feature-card[data-state=ok]")
    assert page.inner_text("#card-title") == f"Feature card \u2014 layer {layer}, feature {feature}"
    assert page.inner_text("#card-label") == card["label"]
    assert page.inner_text("#card-label-source") == card["label_source"]
    frequency = float(page.get_attribute("#card-frequency", "data-value"))
    assert frequency == pytest.approx(card["frequency"])
    assert page.inner_text("#card-frequency").startswith(f"{100 * card['frequency']:.2f}%")
    assert float(page.get_attribute("#card-act-max", "data-value")) == pytest.approx(
        card["act_max"]
    )
    for box, pairs in (
        ("card-top-logits", card["top_logits"]),
        ("card-bottom-logits", card["bottom_logits"]),
    ):
        shown = page.locator(f"#{box} .chip")
        assert [shown.nth(k).get_attribute("data-token") for k in range(shown.count())] == [
            t for t, _ in pairs
        ]
        values = [float(shown.nth(k).get_attribute("data-value")) for k in range(shown.count())]
        assert values == pytest.approx([v for _, v in pairs])
    bars = page.locator("#card-histogram rect.bar")
    assert [int(bars.nth(k).get_attribute("data-count")) for k in range(bars.count())] == card[
        "histogram_counts"
    ]
    heights = [float(bars.nth(k).get_attribute("height")) for k in range(bars.count())]
    tallest = max(range(len(heights)), key=heights.__getitem__)
    assert card["histogram_counts"][tallest] == max(card["histogram_counts"])

    groups = page.locator("#card-groups details.card-group")
    assert [groups.nth(k).get_attribute("data-group") for k in range(groups.count())] == [
        g["name"] for g in card["groups"]
    ]
    top = card["groups"][0]["examples"]
    examples = groups.nth(0).locator("div.example")
    assert examples.count() == len(top)
    for k, example in enumerate(top):
        row = examples.nth(k)
        marked = row.locator("span.tok.max")
        assert marked.count() == 1
        assert marked.inner_text() == example["tokens"][example["max_pos"]]
        act = float(marked.get_attribute("data-act"))
        assert act == pytest.approx(example["acts"][example["max_pos"]])
        assert act == pytest.approx(example["max_act"], rel=1e-3)  # acts are kept as float16
        # Shaded by activation: the marked token is the most strongly shaded of its row.
        shades = row.evaluate(
            "r => [...r.querySelectorAll('span.tok')].map(t => "
            "[t.classList.contains('max'), getComputedStyle(t).backgroundColor])"
        )
        alpha = [
            (is_max, float(c.split(",")[3].rstrip(")")) if c.count(",") == 3 else 0.0)
            for is_max, c in shades
        ]
        assert max(alpha, key=lambda x: x[1])[0] or max(a for _, a in alpha) == pytest.approx(
            next(a for m, a in alpha if m)
        )
    assert groups.nth(0).get_attribute("open") is not None  # top activations shown
    page.mouse.move(5, 5)  # no tooltip in the picture
    page.evaluate("document.getElementById('feature-card').scrollIntoView()")
    page.screenshot(path=str(artifacts_dir / "feature_card.png"))
    if groups.count() > 1:  # a quantile group opens on click
        assert groups.nth(1).locator("div.example").first.is_hidden()
        groups.nth(1).locator("summary").click()
        expect(groups.nth(1).locator("div.example").first).to_be_visible()
        page.screenshot(path=str(artifacts_dir / "feature_card_quantiles.png"))

    # A person's label (markup shown as text, never parsed) becomes the card's label.
    markup = '<b id="x">bold</b><img src=x>'
    page.fill("#author", "ada")
    page.fill("#label-input", markup)
    page.click("#label-save")
    expect(page.locator("#card-label-source")).to_have_text("human")
    assert page.inner_text("#card-label") == markup
    assert page.locator("#feature-card b, #feature-card img, #x").count() == 0
    page.click("#remove-label")
    expect(page.locator("#card-label-source")).to_have_text(card["label_source"])
    assert page.inner_text("#card-label") == card["label"]


def test_feature_labels_wait_for_a_readable_view(page, server, toy, artifacts_dir):
    graph_id = toy.lake_graph_id
    doc = server.get_json(f"/api/graphs/{graph_id}?node_threshold=1&edge_threshold=1")
    assert len(doc["nodes"]) > 60  # too many to label at the fitted zoom
    open_graph(page, server, graph_id, "?nt=1&et=1")
    assert page.evaluate("window.ctViewer.nodeLabels()") == []

    # Zoom in (wheel) on the busiest feature cell: its labels appear, not overlapping.
    layer0 = [n for n in feature_nodes(doc) if n["layer"] == "0"]
    pos = page.evaluate("id => window.ctViewer.nodeClientPos(id)", layer0[0]["node_id"])
    page.mouse.move(pos["x"], pos["y"])
    page.mouse.wheel(0, -700)
    page.evaluate("window.ctViewer.redraw()")
    assert page.evaluate("window.ctViewer.state.zoom.k") >= 2.5
    drawn = page.evaluate("window.ctViewer.nodeLabels()")
    assert len(drawn) >= 3
    check_label_boxes(page, drawn)
    page.mouse.move(5, 5)
    page.screenshot(path=str(artifacts_dir / "node_labels_zoomed.png"))
