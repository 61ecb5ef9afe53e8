"""Viewer graph files in the circuit-tracer / Neuronpedia schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ct_engine.attribution import attribute
from ct_engine.graph import prune_graph
from ct_engine.graph.files import (
    SCHEMA_PATH,
    cantor_pair,
    create_graph_files,
    graph_document,
    node_ids,
)
from tests.umask import CASES, mode, umask

from ..conftest import PROMPT


@pytest.fixture(scope="module")
def model(replacement_model):
    return replacement_model("llama", "plt_jumprelu")


@pytest.fixture(scope="module")
def graph(model):
    return attribute(PROMPT, model, batch_size=64)


def test_cantor_pairing_check_value():
    # Issue #77's Neuronpedia JSON: node 1_57794_1 has feature 1670217704.
    assert cantor_pair(1, 57794) == 1670217704


def test_document_nodes_and_links(model, graph):
    doc = graph_document(graph, "tiny", tokenizer=model.tokenizer, scan="tiny-scan")
    nodes = {n["node_id"]: n for n in doc["nodes"]}
    assert len(nodes) == len(doc["nodes"])  # ids are unique (no error/feature collision)
    T, L = graph.n_pos, graph.n_layers
    kinds = [n["feature_type"] for n in doc["nodes"]]
    assert kinds.count("embedding") == T
    assert kinds.count("logit") == graph.n_logits
    for n in doc["nodes"]:
        if n["feature_type"] == "cross layer transcoder":
            layer, feat, pos = (int(v) for v in n["node_id"].split("_"))
            assert n["feature"] == cantor_pair(layer, feat) and n["ctx_idx"] == pos
            assert n["jsNodeId"] == f"{layer}_{feat}-0" and n["activation"] > 0
        elif n["feature_type"] == "mlp reconstruction error":
            layer, minus_one, pos = n["node_id"].split("_")
            assert minus_one == "-1" and n["jsNodeId"] == f"{layer}_-1-{pos}"
        elif n["feature_type"] == "logit":
            assert n["node_id"].startswith(f"{L + 1}_") and n["node_id"].endswith(f"_{T - 1}")
            assert "(p=" in n["clerp"] and n["influence"] is None
        if n["influence"] is not None:
            assert 0 < n["influence"] <= 1 + 1e-6
    top = next(n for n in doc["nodes"] if n["feature_type"] == "logit" and n["is_target_logit"])
    assert top["feature"] == graph.logit_targets[0].vocab_idx

    # Links join listed nodes, carry the signed adjacency entry, in row-major order.
    index = {node_ids(graph.node_info(i), L)[0]: i for i in range(graph.n_nodes)}
    _, edge_mask, _ = prune_graph(graph)
    assert 0 < len(doc["links"]) <= len(edge_mask)
    previous = (-1, -1)
    for link in doc["links"]:
        assert link["source"] in nodes and link["target"] in nodes
        t, s = index[link["target"]], index[link["source"]]
        assert link["weight"] == pytest.approx(float(graph.adjacency_matrix[t, s]))
        assert link["weight"] != 0 and (t, s) > previous
        previous = (t, s)
    assert doc["metadata"]["prompt_tokens"][0] == "<bos>"
    assert len(doc["metadata"]["prompt_tokens"]) == T


def test_written_file_validates_against_the_shipped_schema(model, graph, tmp_path):
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    path = create_graph_files(graph, "g", tmp_path, tokenizer=model.tokenizer, scan="s")
    document = json.loads(path.read_text())
    jsonschema.validate(document, schema)
    # The schema can fail: a node without an id, or an unknown node type.
    broken = dict(document, nodes=[{**document["nodes"][0], "feature_type": "nonsense"}])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_create_graph_files_upserts_metadata(model, graph, tmp_path):
    path = create_graph_files(graph, "g1", tmp_path, tokenizer=model.tokenizer, scan="s")
    assert json.loads(path.read_text())["metadata"]["slug"] == "g1"
    create_graph_files(graph, "g1", tmp_path, "s", 0.5, tokenizer=model.tokenizer)
    create_graph_files(graph, "g2", tmp_path, tokenizer=model.tokenizer, scan=["a", "b"])
    index = json.loads((tmp_path / "graph-metadata.json").read_text())["graphs"]
    assert [g["slug"] for g in index] == ["g1", "g2"]
    assert index[0]["node_threshold"] == 0.5
    assert index[1]["scan"].startswith("custom-") and index[1]["transcoder_list"] == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "g1.json",
        "g2.json",
        "graph-metadata.json",
    ]


@pytest.mark.parametrize("slug", ["../escape", "a/b", "", ".hidden"])
def test_bad_slug(model, graph, tmp_path, slug):
    with pytest.raises(ValueError, match="slug"):
        create_graph_files(graph, slug, tmp_path, tokenizer=model.tokenizer, scan="s")
    assert not any(tmp_path.iterdir())


def test_missing_scan(model, graph, tmp_path, monkeypatch):
    monkeypatch.setattr(graph, "scan", None)
    with pytest.raises(ValueError, match="no scan"):
        create_graph_files(graph, "x", tmp_path, tokenizer=model.tokenizer)


@pytest.mark.parametrize(("mask", "file_mode", "folder_mode"), CASES)
def test_graph_files_have_the_usual_mode(model, graph, tmp_path, mask, file_mode, folder_mode):
    """Written through mkstemp (0600), renamed with the mode open() gives under the umask."""
    with umask(mask):
        path = create_graph_files(graph, "g", tmp_path / "out", tokenizer=model.tokenizer)
    assert mode(path) == file_mode
    assert mode(path.parent / "graph-metadata.json") == file_mode
    assert mode(path.parent) == folder_mode


def test_the_scan_of_a_local_transcoder_folder_is_its_name(model, graph, tmp_path):
    """The tiny model's transcoders come from an absolute local folder: the viewer's JSON names
    the set by the folder's name, never by a path of the machine that wrote it."""
    folder = str(graph.scan)
    assert folder.startswith("/")  # what attribution records: where the set was read from
    path = create_graph_files(graph, "g", tmp_path, tokenizer=model.tokenizer)
    metadata = json.loads(path.read_text())["metadata"]
    assert metadata["scan"] == Path(folder).name
    assert metadata["scan"].startswith("llama-plt_jumprelu-")  # the fixture's folder name
    assert metadata["transcoder_list"] == []
    index = json.loads((tmp_path / "graph-metadata.json").read_text())["graphs"]
    assert index[0]["scan"] == metadata["scan"]
    # A list of local sets: each named, and the custom id built from the names.
    path = create_graph_files(
        graph, "g2", tmp_path, tokenizer=model.tokenizer, scan=[folder, "a/b"]
    )
    metadata = json.loads(path.read_text())["metadata"]
    assert metadata["transcoder_list"] == [index[0]["scan"], "a/b"]
    assert "/" not in metadata["scan"] and metadata["scan"].startswith("custom-")
