"""``create_graph_files`` with circuit-tracer's arguments, on a toy-world graph, offline."""

from __future__ import annotations

import inspect
import json

import pytest

from ct_engine.commands.demo import DEMO_PROMPT
from ct_engine.graph import Graph
from ct_engine.graph.files import METADATA_FILE, create_graph_files
from ct_engine.presets import MODELS


@pytest.fixture(scope="module")
def toy_graph() -> Graph:
    from ct_engine.attribution import attribute
    from ct_engine.replacement import ReplacementModel

    model = ReplacementModel.from_pretrained("toy-world", "toy-world-plt", device="cpu")
    return attribute(DEMO_PROMPT, model, max_n_logits=3, batch_size=64)


def test_signature_is_circuit_tracers():
    from ct_engine.utils import create_graph_files as from_utils

    assert from_utils is create_graph_files
    params = list(inspect.signature(create_graph_files).parameters.values())
    assert [p.name for p in params[:6]] == [
        "graph_or_path",
        "slug",
        "output_path",
        "scan",
        "node_threshold",
        "edge_threshold",
    ]
    assert [p.default for p in params[3:6]] == [None, 0.8, 0.98]
    assert params[6].name == "tokenizer" and params[6].kind is inspect.Parameter.KEYWORD_ONLY


def test_toy_world_graph_needs_no_tokenizer(toy_graph, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert toy_graph.cfg.tokenizer_name == "toy-world"
    path = create_graph_files(toy_graph, "x", tmp_path)
    assert path == tmp_path / "x.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == [METADATA_FILE, "x.json"]
    document = json.loads(path.read_text())
    tokenizer = AutoTokenizer.from_pretrained(MODELS["toy-world"])
    assert document["metadata"]["prompt_tokens"] == [
        tokenizer.decode([int(t)]) for t in toy_graph.input_tokens
    ]
    assert document["metadata"]["prompt"] == toy_graph.input_string
    assert toy_graph.input_string.endswith(DEMO_PROMPT)
    assert document["metadata"]["scan"] == "toy-world-plt"  # the shipped folder's name
    types = {node["feature_type"] for node in document["nodes"]}
    assert {"embedding", "logit", "cross layer transcoder"} <= types
    index = json.loads((tmp_path / METADATA_FILE).read_text())
    assert [g["slug"] for g in index["graphs"]] == ["x"]


def test_positional_scan_and_thresholds(toy_graph, tmp_path):
    path = create_graph_files(toy_graph, "p", tmp_path, "my-scan", 0.5, 0.9)
    metadata = json.loads(path.read_text())["metadata"]
    assert metadata["scan"] == "my-scan" and metadata["node_threshold"] == 0.5


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_graph_file_path_gives_the_same_files(toy_graph, tmp_path, suffix):
    graph_file = tmp_path / f"graph{suffix}"
    toy_graph.to_pt(graph_file) if suffix == ".pt" else toy_graph.save(graph_file)
    from_object = create_graph_files(toy_graph, "g", tmp_path / "a")
    from_file = create_graph_files(str(graph_file), "g", tmp_path / "b")
    assert json.loads(from_file.read_text()) == json.loads(from_object.read_text())


def test_bad_graph_arguments(toy_graph, tmp_path):
    (tmp_path / "graph.json").write_text("{}")
    with pytest.raises(ValueError, match=r"\.pt \(circuit-tracer\) or \.safetensors"):
        create_graph_files(tmp_path / "graph.json", "g", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no graph file"):
        create_graph_files(tmp_path / "missing.pt", "g", tmp_path / "out")
    # The old order (node_threshold fourth) is refused rather than read as a scan.
    with pytest.raises(TypeError, match="pass node_threshold= by name"):
        create_graph_files(toy_graph, "g", tmp_path / "out", 0.5)
    assert not (tmp_path / "out").exists()
