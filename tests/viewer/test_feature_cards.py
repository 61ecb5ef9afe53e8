"""Feature cards in the viewer's server: circuit-tracer's feature files under ``/features/``
(HTTP Range, as its frontend reads them), the card and label endpoints for a graph file
(``--features_dir``) and for a lake graph (the lake's feature tables), and the commands'
wiring. One real toy-world run per session, a copy per module (``tests/viewer/toy_features.py``)."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import zlib

import pytest
from starlette.testclient import TestClient

from ct_cli.main import main
from ct_viewer import create_app

from .toy_features import PROMPT, SLUG, private_copy

FILE_ID = f"file__{SLUG}"


@pytest.fixture(scope="module")
def toy(tmp_path_factory, toy_features_template):
    return private_copy(toy_features_template, tmp_path_factory.mktemp("toy-features") / "toy")


@pytest.fixture(scope="module")
def client(toy):
    app = create_app(
        lake_root=toy.lake_root,
        config_path=toy.config_path,
        graph_file_dirs=[toy.graph_dir],
        features_dir=toy.features_dir,
    )
    with TestClient(app) as c:
        yield c


def feature_nodes(document: dict) -> list[tuple[int, int]]:
    """``(layer, feature)`` of the document's feature nodes, in order, without repeats."""
    pairs = []
    for node in document["nodes"]:
        if node["feature_type"] == "cross layer transcoder":
            layer, feature, _ = (int(x) for x in node["node_id"].split("_"))
            if (layer, feature) not in pairs:
                pairs.append((layer, feature))
    return pairs


def browser_index(raw: bytes) -> list[dict]:
    """``index.json.gz`` as circuit-tracer's page reads it: gunzip, then JSON."""
    return json.loads(gzip.decompress(raw))


def browser_record(blob: bytes) -> dict:
    """One record as circuit-tracer's page reads it: a 4-byte little-endian length, then
    that many bytes of zlib-compressed JSON (bytes after them ignored)."""
    (length,) = struct.unpack_from("<I", blob)
    return json.loads(zlib.decompress(blob[4 : 4 + length]))


# -- /features/: the raw files, with Range ------------------------------------------------------


def test_feature_files_are_served_with_byte_ranges(client, toy):
    raw_index = (toy.features_dir / "index.json.gz").read_bytes()
    response = client.get("/features/index.json.gz")
    assert response.status_code == 200 and response.content == raw_index
    # Raw bytes: the page gunzips the index itself, so no Content-Encoding may undo it first.
    assert response.headers["content-type"] == "application/octet-stream"
    assert "content-encoding" not in response.headers
    assert response.headers["accept-ranges"] == "bytes"
    index = browser_index(response.content)
    assert len(index) == toy.dashboards.n_layers == 4

    layer = 2
    offsets = index[layer]["offsets"]
    data = (toy.features_dir / index[layer]["filename"]).read_bytes()
    size = len(data)
    assert offsets[-1] == size and len(offsets) == toy.dashboards.d_transcoder + 1
    dead = int((toy.dashboards.n_active[layer] == 0).argmax())  # a feature that never fired
    live = int(toy.dashboards.n_active[layer].argmax())
    last = len(offsets) - 2
    for feature in sorted({0, dead, live, last}):
        start, end = offsets[feature], offsets[feature + 1]
        # circuit-tracer's request: an inclusive end, one byte past the record.
        response = client.get(
            f"/features/{index[layer]['filename']}", headers={"Range": f"bytes={start}-{end}"}
        )
        assert response.status_code == 206
        shown_end = min(end, size - 1)  # the last record's extra byte is past the file
        assert response.headers["content-range"] == f"bytes {start}-{shown_end}/{size}"
        assert response.content == data[start : shown_end + 1]
        record = browser_record(response.content)
        card = toy.dashboards.card(layer, feature)
        assert record["index"] == feature
        assert record["top_logits"] == [token for token, _ in card.top_logits]
        assert record["act_max"] == pytest.approx(card.act_max, rel=1e-3)
        assert record["activation_frequency"] == pytest.approx(card.frequency, rel=1e-3)
        examples = record["examples_quantiles"][0]["examples"] if card.groups else []
        assert [e["tokens"] for e in examples] == [e.tokens for e in card.top_examples]

    filename = f"/features/{index[layer]['filename']}"
    suffix = client.get(filename, headers={"Range": "bytes=-100"})
    assert suffix.status_code == 206 and suffix.content == data[-100:]
    assert suffix.headers["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"
    tail = client.get(filename, headers={"Range": f"bytes={size - 7}-"})
    assert tail.status_code == 206 and tail.content == data[-7:]
    whole = client.get(filename)
    assert whole.status_code == 200 and whole.content == data
    for unsatisfiable in (f"bytes={size}-{size + 10}", f"bytes={size + 100}-"):
        response = client.get(filename, headers={"Range": unsatisfiable})
        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{size}"
    manifest = client.get("/features/ct_features.json")
    assert manifest.status_code == 200
    assert json.loads(manifest.content)["n_tokens"] == toy.dashboards.n_tokens


def test_only_the_folders_feature_files_are_served(toy, tmp_path):
    folder = tmp_path / "features"
    shutil.copytree(toy.features_dir, folder)
    (folder / "notes.txt").write_text("not a feature file")
    # A bin file that is a link to a copy outside the folder: same bytes, still refused.
    outside = tmp_path / "outside.bin"
    shutil.copy(folder / "layer_1.bin", outside)
    (folder / "layer_1.bin").unlink()
    (folder / "layer_1.bin").symlink_to(outside)
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    app = create_app(lake_root=None, graph_file_dirs=[toy.graph_dir], features_dir=folder)
    with TestClient(app) as client:
        assert client.get("/features/layer_0.bin").status_code == 200
        for path in (
            "/features/notes.txt",
            "/features/layer_1.bin",
            "/features/../secret.txt",
            "/features/%2e%2e/secret.txt",
            "/features/%2e%2e%2fsecret.txt",
            f"/features/{secret}",
            "/features//etc/passwd",
            "/features/",
        ):
            response = client.get(path)
            assert response.status_code == 404, path
            assert b"secret" not in response.content
            assert response.json()["detail"]
    without = create_app(lake_root=None, graph_file_dirs=[toy.graph_dir])
    with TestClient(without) as client:
        response = client.get("/features/index.json.gz")
        assert response.status_code == 404 and "--features_dir" in response.json()["detail"]


def test_a_folder_that_is_not_a_features_folder_is_one_line(toy, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"index\.json\.gz: missing") as info:
        create_app(lake_root=None, graph_file_dirs=[toy.graph_dir], features_dir=empty)
    assert "\n" not in str(info.value)
    broken = tmp_path / "broken"
    shutil.copytree(toy.features_dir, broken)
    (broken / "index.json.gz").write_bytes(b"not gzip")

    monkeypatch.delenv("CT_CONFIG", raising=False)
    monkeypatch.setattr("ct_viewer.server.serve", lambda app, host, port: None)
    config = tmp_path / "c.yaml"
    config.write_text("lake: lake\nmodels: []\n")
    base = ["serve", "--config", str(config), "--graph_file_dir", str(toy.graph_dir)]
    for folder, message in (
        (empty, "index.json.gz: missing"),
        (broken, "not gzip-compressed JSON"),
        (tmp_path / "nowhere", "no such folder"),
    ):
        assert main([*base, "--features_dir", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ct serve: error: ") and message in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # ct attribute --server checks the folder before it loads the model.
    attribute = [
        "attribute",
        "-p",
        PROMPT,
        "-m",
        "toy-world",
        "-t",
        "toy-world-plt",
        "--slug",
        "s",
        "--graph_file_dir",
        str(tmp_path / "g"),
        "--server",
        "--features_dir",
        str(empty),
    ]
    assert main(attribute) == 2
    err = capsys.readouterr().err
    assert "index.json.gz: missing" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()  # nothing was attributed


# -- cards and labels ---------------------------------------------------------------------------


def test_card_of_a_graph_file_comes_from_the_features_folder(client, toy):
    document = client.get(f"/api/graphs/{FILE_ID}").json()
    pairs = feature_nodes(document)
    assert pairs
    for layer, feature in pairs:
        response = client.get(f"/api/graphs/{FILE_ID}/features/{layer}/{feature}")
        assert response.status_code == 200
        card = response.json()
        want = toy.dashboards.card(layer, feature)
        assert (card["layer"], card["feature"]) == (layer, feature)
        assert (card["label"], card["label_source"]) == (want.label, want.label_source)
        assert card["label"]  # every feature of the graph fired on the corpus: it has a label
        assert card["frequency"] == pytest.approx(want.frequency, rel=1e-12)
        assert card["n_active"] == want.n_active and card["n_tokens"] == want.n_tokens == 3000
        assert card["act_max"] == pytest.approx(want.act_max, rel=1e-3)
        assert [t for t, _ in card["top_logits"]] == [t for t, _ in want.top_logits]
        assert [v for _, v in card["top_logits"]] == pytest.approx(
            [v for _, v in want.top_logits], rel=1e-3
        )
        assert [t for t, _ in card["bottom_logits"]] == [t for t, _ in want.bottom_logits]
        assert [g["name"] for g in card["groups"]] == [g.name for g in want.groups]
        top = card["groups"][0]["examples"]
        assert [e["tokens"] for e in top] == [e.tokens for e in want.top_examples]
        assert [e["max_pos"] for e in top] == [e.max_pos for e in want.top_examples]
        assert sum(card["histogram_counts"]) == want.n_active


def test_card_of_a_lake_graph_comes_from_the_lake(client, toy):
    document = client.get(f"/api/graphs/{toy.lake_graph_id}").json()
    pairs = feature_nodes(document)
    assert pairs
    for layer, feature in pairs:
        card = client.get(f"/api/graphs/{toy.lake_graph_id}/features/{layer}/{feature}").json()
        want = toy.dashboards.card(layer, feature)
        assert (card["label"], card["label_source"]) == (want.label, want.label_source)
        # The lake keeps float32: closer than the feature files' 4 significant digits.
        assert card["act_max"] == pytest.approx(want.act_max, rel=1e-6)
        assert card["act_mean"] == pytest.approx(want.act_mean, rel=1e-6)
        assert card["frequency"] == pytest.approx(want.frequency, rel=1e-12)
        assert card["top_logits"] == [[t, pytest.approx(v, rel=1e-6)] for t, v in want.top_logits]
        assert card["top_tokens"] == [[t, c] for t, c in want.top_tokens]
        assert [len(g["examples"]) for g in card["groups"]] == [
            len(g.examples) for g in want.groups
        ]
        assert [e["acts"] for e in card["groups"][0]["examples"]] == [
            pytest.approx(e.acts, rel=1e-6, abs=1e-7) for e in want.top_examples
        ]


def test_labels_of_a_graphs_features(client, toy):
    for graph_id, source in ((FILE_ID, "files"), (toy.lake_graph_id, "lake")):
        body = client.get(f"/api/graphs/{graph_id}/features").json()
        assert body["source"] == source and body["detail"] == ""
        got = {
            (f["layer"], f["feature"]): (f["label"], f["label_source"]) for f in body["features"]
        }
        for (layer, feature), (label, label_source) in got.items():
            want = toy.dashboards.card(layer, feature)
            assert (label, label_source) == (want.label, want.label_source)
        document = client.get(f"/api/graphs/{graph_id}").json()
        assert set(feature_nodes(document)) <= set(got)
    # The lake graph's labels cover its unpruned features, not only the drawn ones.
    lake = client.get(f"/api/graphs/{toy.lake_graph_id}/features").json()["features"]
    assert len(lake) > len(feature_nodes(client.get(f"/api/graphs/{FILE_ID}").json()))
    truth = [f for f in lake if f["label_source"] == "truth"]
    assert truth, "the toy world's known features are labelled from its facts"


def test_missing_cards_are_404_with_the_reason(client, toy):
    def detail(path: str) -> str:
        response = client.get(path)
        assert response.status_code == 404
        return response.json()["detail"]

    assert "out of range" in detail(f"/api/graphs/{FILE_ID}/features/0/5000")
    assert "out of range" in detail(f"/api/graphs/{FILE_ID}/features/7/0")
    assert "not in the feature dashboards" in detail(
        f"/api/graphs/{toy.lake_graph_id}/features/9/1"
    )
    assert detail("/api/graphs/file__nope/features/0/1")
    assert client.get(f"/api/graphs/{FILE_ID}/features/-1/0").status_code == 404
    without = create_app(lake_root=None, graph_file_dirs=[toy.graph_dir])
    with TestClient(without) as other:
        response = other.get(f"/api/graphs/{FILE_ID}/features/0/548")
        assert response.status_code == 404 and "--features_dir" in response.json()["detail"]
        body = other.get(f"/api/graphs/{FILE_ID}/features").json()
        assert body["source"] is None and body["features"] == []
        assert "--features_dir" in body["detail"]


def test_a_lake_graph_without_dashboards_in_the_lake_uses_the_features_folder(toy, tmp_path):
    lake = shutil.copytree(toy.lake_root, tmp_path / "lake")
    for name in ("feature_stats", "feature_examples", "feature_logits"):
        shutil.rmtree(lake / name)
    args = {"lake_root": lake, "config_path": toy.config_path, "graph_file_dirs": []}
    card_path = f"/api/graphs/{toy.lake_graph_id}/features/0/548"
    with TestClient(create_app(**args, features_dir=toy.features_dir)) as client:
        card = client.get(card_path).json()
        assert card["label"] == toy.dashboards.card(0, 548).label
        assert card["act_max"] == pytest.approx(toy.dashboards.card(0, 548).act_max, rel=1e-3)
        assert client.get(f"/api/graphs/{toy.lake_graph_id}/features").json()["source"] == "files"
    with TestClient(create_app(**args)) as client:
        response = client.get(card_path)
        assert response.status_code == 404
        assert "materialize the feature_dashboards asset" in response.json()["detail"]


def test_a_persons_label_outranks_the_dashboards_on_the_lake_card(client, toy):
    document = client.get(f"/api/graphs/{toy.lake_graph_id}").json()
    node = next(n for n in document["nodes"] if n["feature_type"] == "cross layer transcoder")
    layer, feature, _ = (int(x) for x in node["node_id"].split("_"))
    card_path = f"/api/graphs/{toy.lake_graph_id}/features/{layer}/{feature}"
    before = client.get(card_path).json()
    label = {"author": "ann", "kind": "label", "node_ids": [node["node_id"]], "text": "my label"}
    created = client.post(f"/api/graphs/{toy.lake_graph_id}/annotations", json=label)
    assert created.status_code == 201
    try:
        card = client.get(card_path).json()
        assert (card["label"], card["label_source"]) == ("my label", "human")
        assert card["top_logits"] == before["top_logits"]
        labels = client.get(f"/api/graphs/{toy.lake_graph_id}/features").json()["features"]
        mine = next(f for f in labels if (f["layer"], f["feature"]) == (layer, feature))
        assert (mine["label"], mine["label_source"]) == ("my label", "human")
    finally:
        annotation = created.json()["id"]
        client.delete(f"/api/graphs/{toy.lake_graph_id}/annotations/{annotation}")
    assert client.get(card_path).json()["label"] == before["label"]


def test_a_rebuilt_features_folder_is_read_again(toy, tmp_path):
    from ct_engine.features.files import write_feature_files

    folder = shutil.copytree(toy.features_dir, tmp_path / "features")
    app = create_app(lake_root=None, graph_file_dirs=[toy.graph_dir], features_dir=folder)
    dashboards = toy.dashboards
    layer, feature = 0, int(dashboards.n_active[0].argmax())
    path = f"/api/graphs/{FILE_ID}/features/{layer}/{feature}"
    with TestClient(app) as client:
        assert client.get(path).json()["label"] == dashboards.card(layer, feature).label
        old = (dashboards.labels[layer, feature], dashboards.label_sources[layer, feature])
        dashboards.labels[layer, feature] = "rebuilt"
        try:
            write_feature_files(dashboards, folder)  # replaces the folder atomically
        finally:
            dashboards.labels[layer, feature], dashboards.label_sources[layer, feature] = old
        assert client.get(path).json()["label"] == "rebuilt"
        labels = client.get(f"/api/graphs/{FILE_ID}/features").json()["features"]
        assert all(f["label"] != "rebuilt" or f["feature"] == feature for f in labels)


# -- the commands -------------------------------------------------------------------------------


def test_ct_serve_and_ct_attribute_serve_the_features_folder(toy, tmp_path, monkeypatch, capsys):
    for command in ("serve", "attribute"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--features_dir" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["attribute", "--help"])
    assert "feature cards" in " ".join(capsys.readouterr().out.split())
    served = []
    monkeypatch.setattr("ct_viewer.server.serve", lambda app, host, port: served.append(app))
    monkeypatch.delenv("CT_CONFIG", raising=False)
    config = ["--config", str(toy.config_path)]
    files = ["--graph_file_dir", str(toy.graph_dir), "--features_dir", str(toy.features_dir)]
    assert main(["serve", *config, *files]) == 0
    assert f"feature files {toy.features_dir}" in capsys.readouterr().out
    with TestClient(served.pop()) as client:
        card = client.get(f"/api/graphs/{FILE_ID}/features/0/548").json()
        assert card["label"] == toy.dashboards.card(0, 548).label
        assert client.get("/features/index.json.gz").status_code == 200

    monkeypatch.setattr(
        "ct_viewer.commands.attribute._serve_viewer", lambda app, port: served.append(app)
    )
    graphs = tmp_path / "graphs"
    argv = ["attribute", "-p", PROMPT, "-m", "toy-world", "-t", "toy-world-plt"]
    argv += ["--slug", "cli", "--graph_file_dir", str(graphs), "--max_feature_nodes", "40"]
    argv += ["--batch_size", "32", "--server", "--features_dir", str(toy.features_dir)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "not used" not in captured.err  # the viewer uses it
    with TestClient(served.pop()) as client:
        document = client.get("/api/graphs/file__cli").json()
        layer, feature = feature_nodes(document)[0]
        card = client.get(f"/api/graphs/file__cli/features/{layer}/{feature}").json()
        assert card["label"] == toy.dashboards.card(layer, feature).label
        assert client.get("/api/graphs/file__cli/features").json()["source"] == "files"
