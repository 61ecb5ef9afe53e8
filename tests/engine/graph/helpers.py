"""Small graphs for the graph-package tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ct_engine.graph import Graph, LogitTarget, ModelConfig

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "graph"


def model_config(n_layers: int = 2, d_vocab: int = 1000) -> ModelConfig:
    return ModelConfig(
        n_layers=n_layers,
        d_model=8,
        d_head=4,
        n_heads=2,
        d_mlp=16,
        d_vocab=d_vocab,
        tokenizer_name="tiny/tokenizer",
        model_name="tiny/model",
        original_architecture="LlamaForCausalLM",
        n_key_value_heads=1,
        dtype="float32",
    )


def graph_from_adjacency(
    adjacency: torch.Tensor,
    n_features: int,
    n_layers: int,
    n_pos: int,
    probabilities: torch.Tensor,
    active_features: torch.Tensor | None = None,
) -> Graph:
    """A graph around a given adjacency; feature (layer, pos, id) default to (0, 0, i)."""
    if active_features is None:
        active_features = torch.zeros(n_features, 3, dtype=torch.long)
        active_features[:, 2] = torch.arange(n_features)
    n_logits = len(probabilities)
    return Graph(
        input_string="<bos>x",
        input_tokens=torch.arange(n_pos) + 2,
        active_features=active_features,
        activation_values=torch.ones(len(active_features)),
        selected_features=torch.arange(n_features),
        adjacency_matrix=adjacency,
        logit_targets=[LogitTarget(f"t{k}", 100 + k) for k in range(n_logits)],
        logit_probabilities=probabilities.float(),
        vocab_size=1000,
        cfg=model_config(n_layers),
    )


def twelve_node_adjacency(value: float = 10.0) -> torch.Tensor:
    """circuit-tracer's ``test_small_graph`` fixture.

    Nodes: features 0-4, errors 5-8 (L = 2, T = 2), tokens 9-10, logit 11. Edges (all of
    weight ``value``): 11 ← {1, 3, 6, 8}; 3 ← {0, 1, 6}; 1 ← {9, 10}; 0 ← 9.
    """
    A = torch.zeros(12, 12)
    for target, sources in {11: [1, 3, 6, 8], 3: [0, 1, 6], 1: [9, 10], 0: [9]}.items():
        A[target, sources] = value
    return A


def twelve_node_graph(layout: str = "dense") -> Graph:
    A = to_layout(twelve_node_adjacency(), layout)
    return graph_from_adjacency(A, 5, 2, 2, torch.tensor([1.0]))


def to_layout(A: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "dense":
        return A
    if layout == "coo":
        return A.to_sparse_coo().coalesce()
    if layout == "csr":
        return A.to_sparse_csr()
    raise ValueError(layout)


def random_graph(
    seed: int = 0,
    n_layers: int = 4,
    n_pos: int = 6,
    feats_per_cell: float = 3.0,
    n_logits: int = 3,
    density: float = 0.3,
    layout: str = "dense",
) -> Graph:
    """A random attribution-like DAG.

    Features sit at (layer, pos) cells (none at position 0) and read from features and errors
    of earlier layers and from tokens, all at positions ``<= pos``; every feature reads from
    its own position's token. Logit rows read from about half of all feature, error and token
    nodes.
    """
    rng = np.random.default_rng(seed)
    counts = rng.poisson(feats_per_cell, size=(n_layers, n_pos))
    counts[:, 0] = 0
    cells = [(layer, pos) for layer in range(n_layers) for pos in range(n_pos)]
    feat_cells = np.array(
        [cell for cell, c in zip(cells, counts.flatten(), strict=True) for _ in range(c)]
    ).reshape(-1, 2)
    n_feat = len(feat_cells)
    n = n_feat + (n_layers + 1) * n_pos + n_logits
    src_layer = np.concatenate(
        [feat_cells[:, 0], np.repeat(np.arange(n_layers), n_pos), [-1] * n_pos]
    )
    src_pos = np.concatenate(
        [feat_cells[:, 1], np.tile(np.arange(n_pos), n_layers), np.arange(n_pos)]
    )
    n_src = len(src_layer)
    A = np.zeros((n, n), dtype=np.float32)
    for i, (layer, pos) in enumerate(feat_cells):
        keep = (src_layer < layer) & (src_pos <= pos) & (rng.random(n_src) < density)
        keep[n_src - n_pos + pos] = True
        A[i, :n_src][keep] = rng.standard_normal(keep.sum()) * rng.lognormal()
    for k in range(n_logits):
        keep = rng.random(n_src) < 0.5
        A[n - n_logits + k, :n_src][keep] = rng.standard_normal(keep.sum()) * 2
    probs = torch.from_numpy(rng.dirichlet(np.ones(n_logits)) * 0.9)
    active = torch.zeros(n_feat, 3, dtype=torch.long)
    if n_feat:
        active[:, :2] = torch.from_numpy(feat_cells)
        active[:, 2] = torch.from_numpy(rng.integers(0, 500, n_feat))
    adjacency = to_layout(torch.from_numpy(A), layout)
    return graph_from_adjacency(adjacency, n_feat, n_layers, n_pos, probs, active)


def load_reference() -> dict[str, np.ndarray]:
    """circuit-tracer's outputs recorded by ``tests/fixtures/graph/make_fixtures.py``."""
    with np.load(FIXTURES / "prune_reference.npz") as data:
        return {key: data[key] for key in data.files}


def reference_graph(ref: dict[str, np.ndarray], name: str, layout: str = "dense") -> Graph:
    n, n_feat, n_layers, n_pos, _ = (int(v) for v in ref[f"{name}/meta"])
    rows, cols = reference_edges(ref, name)
    A = torch.zeros(n, n)
    A[rows, cols] = torch.from_numpy(ref[f"{name}/values"])
    probs = torch.from_numpy(ref[f"{name}/probs"])
    return graph_from_adjacency(to_layout(A, layout), n_feat, n_layers, n_pos, probs)


def reference_edges(ref: dict[str, np.ndarray], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.from_numpy(ref[f"{name}/rows"].astype(np.int64))
    cols = torch.from_numpy(ref[f"{name}/cols"].astype(np.int64))
    return rows, cols
