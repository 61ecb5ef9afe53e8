"""The Graph object: node layout, lookup helpers, layouts and validation."""

from __future__ import annotations

import pytest
import torch

from ct_engine.graph import Graph, LogitTarget, ModelConfig, NodeInfo
from tests.engine.graph.helpers import model_config, random_graph, to_layout


def _layout_graph(layout: str = "dense") -> Graph:
    """S = 3 features, L = 2, T = 3, K = 2 ⇒ N = 3 + 6 + 3 + 2 = 14."""
    active = torch.tensor([[0, 1, 7], [0, 2, 4], [1, 1, 9], [1, 2, 3]])
    n = 14
    A = torch.zeros(n, n)
    A[0, 9 + 1] = 1.5  # token 1 -> feature (0, 1, 7)
    A[12, 0] = -2.0  # feature 0 -> logit 0
    return Graph(
        input_string="<bos>a b",
        input_tokens=torch.tensor([2, 17, 18]),
        active_features=active,
        activation_values=torch.tensor([1.0, 2.0, 3.0, 4.0]),
        selected_features=torch.tensor([0, 2, 3]),
        adjacency_matrix=to_layout(A, layout),
        logit_targets=[LogitTarget(" x", 5), LogitTarget("custom", 1003)],
        logit_probabilities=torch.tensor([0.5, 0.25]),
        vocab_size=1000,
        cfg=model_config(n_layers=2),
        scan="tiny-scan",
    )


def test_sizes_and_slices():
    g = _layout_graph()
    assert (g.n_pos, g.n_layers, g.n_features, g.n_logits, g.n_nodes) == (3, 2, 3, 2, 14)
    assert g.feature_slice == slice(0, 3)
    assert g.error_slice == slice(3, 9)
    assert g.token_slice == slice(9, 12)
    assert g.logit_slice == slice(12, 14)


def test_node_index_helpers_follow_the_layout():
    g = _layout_graph()
    assert g.error_node(0, 0) == 3
    assert g.error_node(1, 2) == 3 + 1 * 3 + 2  # layer-major
    assert g.token_node(2) == 11
    assert g.logit_node(1) == 13
    for bad in [lambda: g.error_node(2, 0), lambda: g.token_node(3), lambda: g.logit_node(-1)]:
        with pytest.raises(IndexError):
            bad()


def test_node_kind_and_info():
    g = _layout_graph()
    kinds = [g.node_kind(i) for i in range(g.n_nodes)]
    assert kinds == ["feature"] * 3 + ["error"] * 6 + ["token"] * 3 + ["logit"] * 2
    assert g.node_info(1) == NodeInfo("feature", 1, 1, 9)  # selected_features[1] = 2
    assert g.node_info(g.error_node(1, 2)) == NodeInfo("error", 1, 2, -1)
    assert g.node_info(g.token_node(1)) == NodeInfo("token", -1, 1, -1, vocab_idx=17)
    assert g.node_info(13) == NodeInfo(
        "logit", 2, 2, -1, vocab_idx=1003, target=LogitTarget("custom", 1003)
    )
    assert g.node_info(-1) == g.node_info(13)
    with pytest.raises(IndexError):
        g.node_info(14)


def test_feature_nodes_of():
    g = _layout_graph()
    assert g.feature_nodes_of(1, 2).tolist() == [2]
    assert g.feature_nodes_of(0, 1).tolist() == [0]
    assert g.feature_nodes_of(0, 2).tolist() == []  # active but not selected


def test_logit_token_ids_and_to():
    g = _layout_graph()
    assert g.logit_token_ids.tolist() == [5, 1003]
    assert g.logit_token_ids.dtype == torch.long
    with pytest.warns(DeprecationWarning):
        assert g.logit_tokens.tolist() == [5, 1003]
    assert g.to("cpu") is g


@pytest.mark.parametrize("layout", ["dense", "coo", "csr"])
def test_dense_adjacency_and_nonzero_edges_on_every_layout(layout):
    g = _layout_graph(layout)
    assert g.is_sparse == (layout != "dense")
    dense = g.dense_adjacency()
    assert dense.layout == torch.strided and dense[0, 10] == 1.5 and dense[12, 0] == -2.0
    rows, cols, values = g.nonzero_edges()
    assert rows.tolist() == [0, 12] and cols.tolist() == [10, 0]
    assert values.tolist() == [1.5, -2.0]


def test_sparse_and_dense_random_graphs_agree_on_helpers():
    dense = random_graph(seed=3)
    sparse = random_graph(seed=3, layout="csr")
    assert torch.equal(dense.dense_adjacency(), sparse.dense_adjacency())
    for a, b in zip(dense.nonzero_edges(), sparse.nonzero_edges(), strict=True):
        assert torch.equal(a, b)


def test_validation_rejects_a_wrong_node_count():
    g = _layout_graph()
    with pytest.raises(ValueError, match="expected 14"):
        Graph(
            input_string=g.input_string,
            input_tokens=g.input_tokens,
            active_features=g.active_features,
            activation_values=g.activation_values,
            selected_features=g.selected_features,
            adjacency_matrix=torch.zeros(13, 13),
            logit_targets=g.logit_targets,
            logit_probabilities=g.logit_probabilities,
            vocab_size=1000,
            cfg=g.cfg,
        )


def test_cfg_dict_and_target_tuples_are_converted():
    g = _layout_graph()
    g2 = Graph(
        input_string=g.input_string,
        input_tokens=g.input_tokens,
        active_features=g.active_features,
        activation_values=g.activation_values,
        selected_features=g.selected_features,
        adjacency_matrix=g.adjacency_matrix,
        logit_targets=[(" x", 5), ("custom", 1003)],
        logit_probabilities=g.logit_probabilities,
        vocab_size=1000,
        cfg=g.cfg.to_dict(),
    )
    assert g2.cfg == g.cfg
    assert g2.logit_targets == g.logit_targets
    assert g2.timings == {} and g2.meta == {} and g2.scan is None


def test_model_config_dict_round_trip_and_hf_names():
    cfg = model_config()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert "n_key_value_heads" not in ModelConfig(1, 2, 3, 4, 5, 6, "t", "m", "a").to_dict()
    hf = {
        "num_hidden_layers": 3,
        "hidden_size": 64,
        "head_dim": 16,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "vocab_size": 50,
        "num_key_value_heads": 2,
        "torch_dtype": torch.bfloat16,
        "architectures": ["LlamaForCausalLM"],
        "name_or_path": "tiny/llama",
    }
    converted = ModelConfig.from_dict(hf)
    assert (converted.n_layers, converted.d_model, converted.d_vocab) == (3, 64, 50)
    assert converted.dtype == "bfloat16"
    assert converted.original_architecture == "LlamaForCausalLM"
    assert converted.model_name == converted.tokenizer_name == "tiny/llama"
    with pytest.raises(ValueError, match="missing"):
        ModelConfig.from_dict({"n_layers": 2})
