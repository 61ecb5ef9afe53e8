"""A lake graph the viewer reads from its file takes the node influence its ``nodes`` table
stored, instead of computing it again; a JSON file's graph has no table and is untouched."""

from __future__ import annotations

import torch


def test_lake_graph_is_given_its_stored_influence(viewer_lake, monkeypatch):
    from ct_engine.graph import cache, graph_node_influence
    from ct_engine.graph._edges import RowBlocks
    from ct_engine.graph.influence import node_influence
    from ct_engine.graph.pruning import INFLUENCE_COUNTS, target_weights
    from ct_viewer.graphs import GraphStore

    monkeypatch.setattr(cache, "_GRAPHS", type(cache._GRAPHS)())  # read from the file
    store = GraphStore(viewer_lake.config.lake, viewer_lake.config)
    before = dict(INFLUENCE_COUNTS)
    graph = store.graph(store.resolve(viewer_lake.ids[0]))
    assert INFLUENCE_COUNTS["remembered"] - before["remembered"] == 1
    stored = graph_node_influence(graph)  # the seeded value, not a computation
    assert INFLUENCE_COUNTS["computed"] == before["computed"]
    # bit for bit what computing it gives
    computed, _ = node_influence(RowBlocks(graph.adjacency_matrix), target_weights(graph))
    assert torch.equal(stored, computed)
    # the document's ranks come from it too
    store.document(store.resolve(viewer_lake.ids[0]), 0.8, 0.98)
    assert INFLUENCE_COUNTS["computed"] == before["computed"]
