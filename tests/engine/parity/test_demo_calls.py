"""circuit-tracer's notebook lines, as its demos write them, run here on a tiny Llama with
random transcoders (the TransformerLens backend): the model's instance attributes of the
parity table, ``model(prompt)``, interventions, generation with the demos' keywords,
attribution, graph files, the notebook server and the demo helpers."""

from __future__ import annotations

import urllib.parse

import httpx
import pytest
import torch

from ct_engine import ReplacementModel, attribute
from ct_engine.attribution.targets import CustomTarget
from ct_engine.graph import prune_graph
from ct_engine.utils import create_graph_files
from ct_engine.utils.demo_utils import (
    Feature,
    extract_supernode_features,
    get_top_features,
    get_topk,
    get_unembed_vecs,
)
from ct_viewer.local_server import serve

from ..conftest import PROMPT
from . import circuit_tracer_0_5_0 as table
from .test_parity import api_differences, check

INSTANCE = [e for e in table.API if e.kind == "instance"]


@pytest.fixture(scope="module")
def model(tiny_model_dir, transcoder_dir):
    return ReplacementModel.from_pretrained(
        model_name=tiny_model_dir("llama"),
        transcoder_set=transcoder_dir("llama", "plt_jumprelu"),
        backend="transformerlens",
        device="cpu",
    )


@pytest.fixture(scope="module")
def graph(model):
    return attribute(
        prompt=PROMPT,
        model=model,
        max_n_logits=10,
        desired_logit_prob=0.95,
        batch_size=64,
        max_feature_nodes=64,
        offload=None,
        verbose=False,
    )


@pytest.mark.parametrize("entry", INSTANCE, ids=[e.name for e in INSTANCE])
def test_instance_attribute(entry, model):
    check(entry.name, api_differences(entry, {ReplacementModel: model}))


def _last_active_feature(model) -> Feature:
    _, acts = model.get_activations(PROMPT)
    layer, feature = (int(i) for i in torch.nonzero(acts[:, -1])[-1])
    return Feature(layer=layer, pos=-1, feature_idx=feature)


def test_calling_the_model_gives_the_logits(model):
    logits = model(PROMPT)
    expected, _ = model.get_activations(PROMPT)
    n_tokens = len(model.ensure_tokenized(PROMPT))
    assert logits.shape == (1, n_tokens, model.d_vocab)
    torch.testing.assert_close(logits, expected)
    with pytest.raises(ValueError, match="logits only"):
        model(PROMPT, return_type="loss")


def test_intervention_demo_lines(model):
    feature = _last_active_feature(model)
    with torch.inference_mode():
        original_logits = model(PROMPT)
        new_logits, _ = model.feature_intervention(PROMPT, [(*feature, 0.0)])
    assert not torch.equal(original_logits, new_logits)

    _, activations = model.get_activations(PROMPT, sparse=True)
    assert activations.is_sparse
    value = activations[feature]  # the demos index sparse activations with a Feature
    assert float(value) > 0

    sequence_length = len(model.tokenizer(PROMPT).input_ids)
    open_ended = slice(sequence_length - 1, None, None)
    steer = [(feature.layer, open_ended, feature.feature_idx, 10 * value)]
    before = model.generate(
        PROMPT, do_sample=False, use_past_kv_cache=False, verbose=False, max_new_tokens=2
    )
    after = model.feature_intervention_generate(
        PROMPT, steer, do_sample=False, verbose=False, max_new_tokens=2
    )[0]
    assert isinstance(before, str) and isinstance(after, str)
    assert before.startswith(PROMPT) and after.startswith(PROMPT)


def test_attribute_demo_lines(model, graph, tmp_path):
    graph_path = tmp_path / "graphs" / "example_graph.pt"
    graph_path.parent.mkdir()
    graph.to_pt(graph_path)
    create_graph_files(
        graph_or_path=graph_path,
        slug="dallas-austin",
        output_path=tmp_path / "graph_files",
        node_threshold=0.8,
        edge_threshold=0.98,
    )
    assert (tmp_path / "graph_files" / "dallas-austin.json").is_file()
    pruned = prune_graph(graph, node_threshold=0.7, edge_threshold=0.95)
    assert pruned.node_mask.shape == (graph.adjacency_matrix.shape[0],)

    server = serve(data_dir=tmp_path / "graph_files", port=0)
    try:
        listed = httpx.get(f"{server.url}api/graphs", timeout=30).json()["graphs"]
        assert [g["id"] for g in listed] == ["file__dallas-austin"]
    finally:
        server.stop()
    assert any("GET /api/graphs" in line for line in server.get_logs())


def test_tutorial_helpers_read_a_graph_url(graph):
    features, scores = get_top_features(graph, n=3)
    assert len(features) == 3 and scores == sorted(scores, reverse=True)
    ids = [f"{layer}_{feat}_{pos}" for layer, pos, feat in features]
    supernodes = urllib.parse.quote(str([["top", *ids], ["top", ids[0]]]).replace("'", '"'))
    url = f"https://example.org/graph?slug=x&pinnedIds={ids[0]}%2C3_-1_2&supernodes={supernodes}"
    decoded = extract_supernode_features(url)
    assert decoded == {
        "top": [Feature(*f) for f in features],
        "top (2)": [Feature(*features[0])],
    }


def test_logit_helpers(model):
    logits = model(PROMPT)
    top = get_topk(logits, model.tokenizer, k=3)
    probs = torch.softmax(logits[0, -1].double(), -1)
    best = int(probs.argmax())
    assert top[0] == (model.tokenizer.decode([best]), pytest.approx(float(probs[best])))
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    vecs = get_unembed_vecs(model, [best, 3], "transformerlens")
    torch.testing.assert_close(torch.stack(vecs, 1), model.W_U[:, [best, 3]])


def test_attribution_targets_demo_lines(model):
    """A logit-difference target built as the demo builds it, and the token strings."""
    probs = torch.softmax(model.get_activations(model.ensure_tokenized(PROMPT))[0][0, -1], -1)
    idx_x, idx_y = (int(i) for i in probs.topk(2).indices)
    vec_x, vec_y = get_unembed_vecs(model, [idx_x, idx_y], "transformerlens")
    target = CustomTarget(
        token_str="x-y", prob=float(probs[idx_x] - probs[idx_y]), vec=vec_x - vec_y
    )
    graph = attribute(
        prompt=PROMPT,
        model=model,
        attribution_targets=[target],
        batch_size=64,
        max_feature_nodes=32,
    )
    assert [t.token_str for t in graph.logit_targets] == ["x-y"]
    assert graph.logit_targets[0].vocab_idx == model.d_vocab  # a virtual index past the vocab
