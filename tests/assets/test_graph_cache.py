"""Each graph is read, pruned and pictured once per run, with the results of a fresh computation;
a graph read again (the graph cache's budget let it go) takes its node influence from the lake's
``nodes`` table instead of computing it again."""

from __future__ import annotations

import gc
import json

import numpy as np
import pytest
import torch

from tests.conftest import PROMPTS


@pytest.fixture(scope="module")
def tiny_graph(tiny_lakehouse_files):
    from ct_engine import ReplacementModel, attribute

    files = tiny_lakehouse_files
    model = ReplacementModel.from_pretrained(str(files / "model"), str(files / "plt"))
    graph = attribute(PROMPTS[0], model, max_n_logits=5, batch_size=32, max_feature_nodes=200)
    graph.adjacency_matrix = graph.adjacency_matrix.to_sparse_coo().coalesce()  # as stored
    return graph, model.tokenizer


def test_pruned_once_per_graph_and_thresholds(tiny_graph):
    from ct_assets.lib import graph_cache
    from ct_engine.graph import prune_graph

    graph, _ = tiny_graph
    before = dict(graph_cache.COUNTS)
    first = graph_cache.pruned(graph, 0.8, 0.98)
    assert graph_cache.pruned(graph, 0.8, 0.98) is first
    other = graph_cache.pruned(graph, 0.5, 0.9)
    assert graph_cache.COUNTS["pruned"] - before["pruned"] == 2
    assert graph_cache.COUNTS["reused"] - before["reused"] == 1

    fresh = prune_graph(graph, 0.8, 0.98)
    assert torch.equal(first.node_mask, fresh.node_mask)
    assert torch.equal(first.edge_mask.rows, fresh.edge_mask.rows)
    assert torch.equal(first.edge_mask.cols, fresh.edge_mask.cols)
    assert torch.equal(first.cumulative_scores, fresh.cumulative_scores)
    assert other.node_mask.sum() < first.node_mask.sum()  # a lower threshold keeps fewer

    # a graph that is gone is forgotten (its id may come back for another graph)
    copy = type(graph)(**{f: getattr(graph, f) for f in graph.__dataclass_fields__})
    graph_cache.pruned(copy, 0.8, 0.98)
    key = (id(copy), 0.8, 0.98)
    assert key in graph_cache._PRUNED
    del copy
    gc.collect()
    assert key not in graph_cache._PRUNED


def test_viewer_document_from_the_shared_prune_equals_a_fresh_one(tiny_graph):
    from ct_assets.lib import graph_cache
    from ct_engine.graph.files import graph_document

    graph, tokenizer = tiny_graph
    shared = graph_document(
        graph, "g", tokenizer=tokenizer, scan="s", pruned=graph_cache.pruned(graph, 0.8, 0.98)
    )
    fresh = graph_document(graph, "g", tokenizer=tokenizer, scan="s")
    assert json.dumps(shared) == json.dumps(fresh)
    assert len(fresh["links"]) > 0


def test_pruned_graph_picture_is_a_small_png(tiny_graph, tmp_path):
    from PIL import Image

    from ct_assets.lib import graph_cache
    from ct_assets.lib.plots import plot_pruned_graph

    graph, tokenizer = tiny_graph
    pruned = graph_cache.pruned(graph, 0.8, 0.98)
    weights = pruned.edge_mask.values_in(graph.adjacency_matrix)
    tokens = [tokenizer.decode([int(t)]) for t in graph.input_tokens]
    path = plot_pruned_graph(graph, pruned, tmp_path / "p.png", weights, title="t", tokens=tokens)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "P"
        assert image.size == (max(600, graph.n_pos * 90), 600)
        colors = {rgb for _, rgb in image.convert("RGB").getcolors(4096)}
    assert len(colors) > 4  # nodes and edges were drawn, not only the frame
    assert path.stat().st_size < 200_000


def _stored_partition(tmp_path, graph, tokenizer):
    """A lake holding ``graph``'s file and ``nodes`` table, as ``attribution_graph`` writes
    them; returns ``(lake, keys)``."""
    from ct_engine.graph import graph_node_influence
    from ct_lake import records
    from ct_lake.keys import prompt_key
    from ct_lake.lake import Lake
    from ct_lake.paths import GRAPH_FILE, GRAPHS

    lake = Lake(tmp_path / "lake")
    keys = {"model": "tiny", "prompt": prompt_key(PROMPTS[0])}
    graph.save(tmp_path / GRAPH_FILE)
    lake.write_file(GRAPHS, GRAPH_FILE, tmp_path / GRAPH_FILE, **keys)
    influence = graph_node_influence(graph).cpu()
    lake.write_table("nodes", records.nodes_table(graph, tokenizer, influence), **keys)
    return lake, keys


def test_the_nodes_table_gives_back_the_influence_bit_for_bit_and_only_for_its_graph(
    tiny_graph, tmp_path
):
    from ct_engine.graph import Graph, graph_node_influence
    from ct_lake import records
    from ct_lake.keys import prompt_key

    graph, tokenizer = tiny_graph
    lake, keys = _stored_partition(tmp_path, graph, tokenizer)

    stored = records.stored_node_influence(lake, keys, graph)
    assert stored.dtype == np.float64 and stored.flags.writeable
    assert np.array_equal(stored, graph_node_influence(graph).cpu().numpy())
    # a graph read back from the file is the same graph
    again = Graph.load(tmp_path / "graph.safetensors")
    assert np.array_equal(records.stored_node_influence(lake, keys, again), stored)

    # another graph's rows are not taken: other logit probabilities, other activations, other
    # features in node order; and no table at all
    other = _replaced(graph, logit_probabilities=graph.logit_probabilities.flip(0))
    assert records.stored_node_influence(lake, keys, other) is None
    other = _replaced(graph, activation_values=graph.activation_values * 2)
    assert records.stored_node_influence(lake, keys, other) is None
    other = _replaced(graph, selected_features=graph.selected_features.flip(0))
    assert records.stored_node_influence(lake, keys, other) is None
    elsewhere = {"model": "tiny", "prompt": prompt_key(PROMPTS[1])}
    assert records.stored_node_influence(lake, elsewhere, graph) is None


def _replaced(graph, **fields):
    from dataclasses import replace

    return replace(graph, **fields)


def test_a_graph_read_again_takes_its_influence_from_the_nodes_table(
    tiny_graph, tmp_path, monkeypatch
):
    from ct_assets.lib.context import read_graph
    from ct_engine.graph import cache as graph_file_cache
    from ct_engine.graph import compute_graph_scores, prune_graph
    from ct_engine.graph.pruning import INFLUENCE_COUNTS

    graph, tokenizer = tiny_graph
    lake, keys = _stored_partition(tmp_path, graph, tokenizer)
    monkeypatch.setattr(graph_file_cache, "_GRAPHS", type(graph_file_cache._GRAPHS)())
    before = dict(INFLUENCE_COUNTS)

    again = read_graph(lake, keys)
    assert again is not graph and read_graph(lake, keys) is again  # read once, then cached
    pruned, scores = prune_graph(again, 0.8, 0.98), compute_graph_scores(again)

    assert INFLUENCE_COUNTS["remembered"] - before["remembered"] == 1
    assert INFLUENCE_COUNTS["computed"] - before["computed"] == 0
    fresh = prune_graph(graph, 0.8, 0.98)
    assert torch.equal(pruned.node_mask, fresh.node_mask)
    assert torch.equal(pruned.edge_mask.rows, fresh.edge_mask.rows)
    assert torch.equal(pruned.edge_mask.cols, fresh.edge_mask.cols)
    assert torch.equal(pruned.cumulative_scores, fresh.cumulative_scores)
    assert scores == compute_graph_scores(graph)


@pytest.mark.slow  # a Dagster materialization of two prompts: ~40 s on busy cores
def test_a_run_reads_and_prunes_each_graph_once(lakehouse, monkeypatch):
    """Over a range run of two prompts, no asset reads a graph file again (attribution keeps
    the graph it saved), each graph is pruned once for ``pruned_graph`` and ``graph_files``
    and its node influence computed once for the node table, pruning and the scores; the
    stored viewer JSON is that of a fresh prune of the stored graph."""
    from ct_assets.lib import graph_cache
    from ct_assets.lib.runner import materialize
    from ct_engine.graph import Graph
    from ct_engine.graph.pruning import INFLUENCE_COUNTS
    from ct_lake.lake import Lake
    from ct_lake.paths import GRAPH_FILE, GRAPHS

    config, instance = lakehouse
    loads = []
    load = Graph.load
    monkeypatch.setattr(Graph, "load", staticmethod(lambda path: loads.append(path) or load(path)))
    before, influence_before = dict(graph_cache.COUNTS), dict(INFLUENCE_COUNTS)
    summary = materialize(config, "tiny", PROMPTS, instance, with_model_assets=False)
    assert summary.success
    assert loads == []
    assert graph_cache.COUNTS["pruned"] - before["pruned"] == len(PROMPTS)
    assert graph_cache.COUNTS["reused"] - before["reused"] == len(PROMPTS)
    assert INFLUENCE_COUNTS["computed"] - influence_before["computed"] == len(PROMPTS)
    assert INFLUENCE_COUNTS["reused"] - influence_before["reused"] == 2 * len(PROMPTS)

    monkeypatch.undo()
    lake = Lake(config.lake)
    for key in summary.partition_keys:
        model, prompt = key.keys_by_dimension["model"], key.keys_by_dimension["prompt"]
        graph = Graph.load(lake.local_file(GRAPHS, GRAPH_FILE, model=model, prompt=prompt))
        assert_viewer_json_is_fresh(config, lake, graph, model, prompt)


@pytest.mark.slow  # a Dagster materialization of two prompts: ~40 s on busy cores
def test_a_run_whose_graphs_exceed_the_cache_computes_influence_once_per_graph(
    lakehouse, monkeypatch
):
    """With a graph cache too small for one graph, every asset after attribution reads each
    graph from its file again (a new object each time); each takes its node influence from
    the ``nodes`` table, so influence is still computed once per graph (for the table), and
    the stored masks, scores and viewer JSON are those of a fresh computation."""
    from ct_assets.lib.runner import materialize
    from ct_engine.graph import Graph, compute_graph_scores, prune_graph
    from ct_engine.graph.pruning import INFLUENCE_COUNTS
    from ct_lake.lake import Lake
    from ct_lake.paths import GRAPH_FILE, GRAPHS

    config, instance = lakehouse
    monkeypatch.setenv("CT_GRAPH_CACHE_MB", "0.001")  # holds only the graph read last
    loads = []
    load = Graph.load
    monkeypatch.setattr(Graph, "load", staticmethod(lambda path: loads.append(path) or load(path)))
    before = dict(INFLUENCE_COUNTS)
    summary = materialize(config, "tiny", PROMPTS, instance, with_model_assets=False)
    assert summary.success
    # pruned_graph, graph_scores, graph_files and intervention_results read every graph again
    assert len(loads) == 4 * len(PROMPTS)
    assert INFLUENCE_COUNTS["computed"] - before["computed"] == len(PROMPTS)
    assert INFLUENCE_COUNTS["remembered"] - before["remembered"] == len(loads)

    monkeypatch.undo()
    lake = Lake(config.lake)
    for key in summary.partition_keys:
        model, prompt = key.keys_by_dimension["model"], key.keys_by_dimension["prompt"]
        graph = Graph.load(lake.local_file(GRAPHS, GRAPH_FILE, model=model, prompt=prompt))
        fresh = prune_graph(graph, config.pruning.node_threshold, config.pruning.edge_threshold)
        kept = lake.read_table("pruned_nodes", model=model, prompt=prompt).column("kept")
        assert np.array_equal(kept.to_numpy(False), fresh.node_mask.numpy())
        row = lake.read_table("scores", model=model, prompt=prompt).to_pylist()[0]
        replacement, completeness = compute_graph_scores(graph)
        assert (row["replacement_score"], row["completeness_score"]) == (
            replacement,
            completeness,
        )
        assert_viewer_json_is_fresh(config, lake, graph, model, prompt)


def assert_viewer_json_is_fresh(config, lake, graph, model: str, prompt: str) -> None:
    """The partition's stored viewer JSON equals a fresh document of the stored ``graph``."""
    from ct_engine.graph.files import graph_document
    from ct_lake.paths import GRAPH_FILES, graph_slug

    slug = graph_slug(model, prompt)
    stored = json.loads(lake.read_bytes(GRAPH_FILES, f"{slug}.json", model=model))
    fresh = graph_document(
        graph,
        slug,
        tokenizer=None,
        scan=graph.scan if graph.scan is not None else config.model(model).transcoders,
        node_threshold=config.pruning.node_threshold,
        edge_threshold=config.pruning.edge_threshold,
    )
    assert stored == json.loads(json.dumps(fresh))
