"""The influence rank and share of each node, computed from the lake's ``nodes`` table: what
the viewer's documents and node panel must show (the tests' oracle)."""

from __future__ import annotations

from ct_engine.graph.files import node_ids
from ct_engine.graph.graph import NodeInfo
from ct_lake import catalog


def lake_influence_ranks(lake_root, model: str, prompt: str) -> tuple[dict, dict, int]:
    """``(rank, share, n)`` by node id from the lake's ``nodes`` table: rank 1 is the largest
    influence (ties by node index), share is the influence over the total, logits left out."""
    con = catalog.connect(lake_root)
    try:
        rows = con.execute(
            "SELECT node, kind, layer, pos, feature, token_id, influence FROM nodes "
            "WHERE model = ? AND prompt = ? AND kind <> 'logit' ORDER BY node",
            [model, prompt],
        ).fetchall()
    finally:
        con.close()

    def node_id(row) -> str:
        _, kind, layer, pos, feature, token_id, _ = row
        info = NodeInfo(kind, layer, pos, feature, -1 if token_id is None else token_id)
        return node_ids(info, n_layers=0)[0]  # n_layers only names logits, left out here

    total = sum(r[6] for r in rows)
    ordered = sorted(rows, key=lambda r: (-r[6], r[0]))
    rank = {node_id(r): k for k, r in enumerate(ordered, start=1)}
    share = {node_id(r): r[6] / total for r in rows}
    return rank, share, len(rows)
