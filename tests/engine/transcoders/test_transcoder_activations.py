"""Activation functions: ReLU, strict JumpReLU, TopK without ReLU (circuit-tracer semantics)."""

import torch

from ct_engine.transcoders import JumpReLU, ReLU, TopK, make_activation


def test_relu_zeroes_negatives():
    z = torch.tensor([[-1.0, 0.0, 2.0]])
    assert torch.equal(ReLU()(z), torch.tensor([[0.0, 0.0, 2.0]]))
    assert ReLU.name == "relu"


def test_jump_relu_threshold_is_strict():
    """A pre-activation exactly equal to its threshold is zeroed (σ(z) = z·1[z > θ])."""
    act = JumpReLU(torch.tensor([0.5, 0.5, 0.5, -1.0]))
    z = torch.tensor([0.5, 0.6, 0.4, -0.5])
    assert torch.equal(act(z), torch.tensor([0.0, 0.6, 0.0, -0.5]))
    assert act.name == "jump_relu"


def test_jump_relu_per_layer_thresholds():
    theta = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # (L, F), stored as (L, 1, F)
    act = JumpReLU(theta)
    assert act.threshold.shape == (2, 1, 2)
    z = torch.tensor([[2.5, 2.5]])
    assert torch.equal(act(z, layer=0), torch.tensor([[2.5, 2.5]]))
    assert torch.equal(act(z, layer=1), torch.tensor([[0.0, 0.0]]))
    holder = torch.nn.ModuleDict({"activation_function": act})
    assert list(holder.state_dict()) == ["activation_function.threshold"]
    assert act.threshold.requires_grad is False


def test_topk_keeps_k_largest_per_row():
    z = torch.tensor([[3.0, -1.0, 2.0, 0.5], [0.1, 0.4, 0.3, 0.2]])
    out = TopK(2)(z)
    assert torch.equal(out, torch.tensor([[3.0, 0.0, 2.0, 0.0], [0.0, 0.4, 0.3, 0.0]]))
    assert TopK.name == "topk"


def test_topk_keeps_negative_values_like_circuit_tracer():
    """No ReLU: with fewer than k positive entries the largest negative ones are kept."""
    z = torch.tensor([[-3.0, -1.0, 2.0, -0.5]])
    assert torch.equal(TopK(3)(z), torch.tensor([[0.0, -1.0, 2.0, -0.5]]))


def test_topk_batched_and_k_capped():
    z = torch.randn(2, 5, 7)
    out = TopK(3)(z)
    assert ((out != 0).sum(-1) == 3).all()
    assert torch.equal(TopK(10)(z), z)


def test_make_activation():
    assert make_activation("relu").name == "relu"
    assert make_activation("jump_relu", threshold=torch.zeros(3)).name == "jump_relu"
    assert make_activation("topk", k=4).k == 4
