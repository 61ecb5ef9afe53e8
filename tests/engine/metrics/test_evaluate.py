"""``evaluate_transcoders`` end to end on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ct_engine.metrics import (
    LAYER_METRICS,
    MODEL_METRICS,
    default_token_sample,
    evaluate_transcoders,
    token_sample_from_texts,
)
from ct_engine.metrics.runs import ForwardRunner, make_batch
from ct_engine.replacement import ReplacementModel
from ct_engine.transcoders import Transcoders

PROMPTS = [
    "the capital of Texas is Austin and the",
    "Mira lives in Paris where people speak",
    "one two three four five six",
    "north south",
]


class ExactMLPTranscoders(Transcoders):
    """Reads ``mlp.hook_in`` and "encodes" it into the true Qwen-3 MLP output (``F = D``),
    decoded by the identity plus ``offset[l]``: a perfect transcoder when ``offset`` is 0."""

    def __init__(self, mlp_weights: list[tuple[torch.Tensor, ...]], offset: torch.Tensor):
        L, D = offset.shape
        super().__init__(
            n_layers=L,
            d_model=D,
            d_transcoder=D,
            feature_input_hook="mlp.hook_in",
            feature_output_hook="mlp.hook_out",
        )
        self.mlp = mlp_weights
        self.b_dec = torch.nn.Parameter(offset.clone(), requires_grad=False)

    skip_connection = False
    activation_name = "relu"
    lazy_encoder = False
    lazy_decoder = False
    lazy_sources: list = []

    def encoder_weight(self, layer):
        raise NotImplementedError

    def decoder_weight(self, layer):
        return torch.eye(self.d_model)

    def decoder_vectors(self, layer, feat_ids):
        return torch.eye(self.d_model)[feat_ids]

    def apply_activation_function(self, layer, z):
        return z

    def encode_layer(self, x, layer, apply_activation_function=True):
        gate, up, down = self.mlp[layer]
        return (F.silu(x @ gate.T) * (x @ up.T)) @ down.T

    def compute_skip(self, layer, x):
        return None

    def decode(self, acts, x=None):
        return acts + self.b_dec.reshape(self.n_layers, *[1] * (acts.ndim - 2), self.d_model)

    def compute_attribution_components(self, x, zero_positions=slice(0, 1)):
        raise NotImplementedError


@pytest.fixture(scope="module")
def qwen(replacement_model):
    return replacement_model("qwen3", "plt_jumprelu")


def _exact_model(qwen, tiny_model_dir, offset: torch.Tensor) -> ReplacementModel:
    weights = load_file(str(tiny_model_dir("qwen3") / "model.safetensors"))
    mlp = [
        tuple(
            weights[f"model.layers.{layer}.mlp.{name}_proj.weight"]
            for name in ("gate", "up", "down")
        )
        for layer in range(qwen.n_layers)
    ]
    return ReplacementModel(qwen.impl, ExactMLPTranscoders(mlp, offset), model_name="exact")


def test_a_perfect_transcoder_scores_perfectly(qwen, tiny_model_dir):
    model = _exact_model(qwen, tiny_model_dir, torch.zeros(qwen.n_layers, qwen.d_model))
    m = evaluate_transcoders(model, PROMPTS, batch_size=3, progress=False)
    assert m.n_sequences == 4
    assert max(m.mse) < 1e-10
    assert max(m.fvu_centered) < 1e-10 and max(m.nmse_uncentered) < 1e-10
    assert min(m.fve_centered) > 1 - 1e-10
    assert abs(m.kl_replaced) < 1e-7
    assert m.top1_agreement == 1.0
    assert abs(m.delta_ce) < 1e-5
    assert m.ce_splice == pytest.approx([m.ce_clean] * qwen.n_layers, abs=1e-5)
    assert m.ce_loss_recovered == pytest.approx([1.0] * qwen.n_layers, abs=1e-4)
    assert all(abs(z - m.ce_clean) > 1e-3 for z in m.ce_zero_ablation)  # ablation matters


def test_a_constant_error_gives_the_hand_computed_numbers(qwen, tiny_model_dir):
    """Reconstruction = MLP output + δ_l: MSE = ‖δ_l‖², FVU = N‖δ_l‖² / Σ_t ‖y_t − ȳ‖² over the
    positions ≥ 1 of the clean run, NMSE = N‖δ_l‖² / Σ_t ‖y_t‖²."""
    torch.manual_seed(0)
    offset = 0.3 * torch.randn(qwen.n_layers, qwen.d_model)
    model = _exact_model(qwen, tiny_model_dir, offset)
    m = evaluate_transcoders(model, PROMPTS, batch_size=2, progress=False)
    ys = [qwen.impl.clean_run(model.ensure_tokenized(p)).feature_outputs[:, 1:] for p in PROMPTS]
    y = torch.cat(ys, dim=1).double()  # (L, N, D), BOS excluded
    N = y.shape[1]
    assert m.n_tokens == N == sum(len(model.ensure_tokenized(p)) - 1 for p in PROMPTS)
    assert m.n_predicted_tokens == N - len(PROMPTS)
    for layer in range(qwen.n_layers):
        err = float(offset[layer].double().pow(2).sum())
        centered = float((y[layer] - y[layer].mean(0)).pow(2).sum())
        assert m.mse[layer] == pytest.approx(err, rel=1e-5)
        assert m.fvu_centered[layer] == pytest.approx(N * err / centered, rel=1e-5)
        assert m.nmse_uncentered[layer] == pytest.approx(
            N * err / float(y[layer].pow(2).sum()), rel=1e-5
        )
    assert m.kl_replaced > 0 and m.delta_ce != 0


@pytest.mark.parametrize(
    ("family", "kind"),
    [
        ("llama", "plt_jumprelu"),
        ("llama", "plt_skip"),
        ("llama", "clt"),
        ("gemma2", "clt_skip"),
        ("qwen3", "plt_topk"),
    ],
)
def test_random_transcoders_give_finite_numbers(replacement_model, family, kind):
    model = replacement_model(family, kind)
    sample = default_token_sample(model, n_tokens=60)
    m = evaluate_transcoders(model, sample, batch_size=4, progress=False)
    L = model.n_layers
    assert m.n_tokens == 60 == sum(len(s) - 1 for s in sample)
    rows = m.to_rows()
    assert len(rows) == L + 1 and rows[-1]["layer"] == "mean"
    assert [r["layer"] for r in rows[:-1]] == list(range(L))
    for name in LAYER_METRICS:
        values = getattr(m, name)
        assert len(values) == L and all(math.isfinite(v) for v in values), name
        assert rows[-1][name] == pytest.approx(sum(values) / L)
    assert all(math.isfinite(getattr(m, name)) for name in MODEL_METRICS)
    assert m.is_cross_layer == kind.startswith("clt")
    assert m.skip_connection == ("skip" in kind or kind == "plt_topk")
    assert m.l0_total == pytest.approx(sum(m.l0))
    assert all(0 <= f <= 1 for f in m.dead_fraction + m.dense_fraction_1pct)
    assert 0 <= m.top1_agreement <= 1 and m.kl_replaced >= 0
    assert m.delta_ce == pytest.approx(m.ce_replaced - m.ce_clean)
    if kind == "plt_topk":
        assert m.l0 == pytest.approx([12.0] * L)  # k = 12 features fire on every token
    d = m.to_dict()
    assert d["n_tokens"] == 60 and len(d["fvu_centered"]) == L and "mean" in d


def test_batching_and_padding_do_not_change_the_numbers(replacement_model):
    model = replacement_model("llama", "clt")
    one = evaluate_transcoders(model, PROMPTS, batch_size=1, progress=False)
    many = evaluate_transcoders(model, PROMPTS, batch_size=4, progress=False)
    for name in (*LAYER_METRICS, *MODEL_METRICS):
        assert getattr(many, name) == pytest.approx(getattr(one, name), rel=1e-4, abs=1e-6), name


@pytest.mark.parametrize("kind", ["plt_skip", "clt"])
def test_replaced_run_encodes_its_own_inputs(replacement_model, kind):
    """Every MLP output of the all-replaced run is decode(encode(x)) of the inputs x *of that
    run*: pinning the outputs to that reconstruction reproduces the same logits, while using the
    clean run's inputs gives different ones."""
    model = replacement_model("llama", kind)
    tc = model.transcoders
    batch = make_batch([model.ensure_tokenized(p) for p in PROMPTS[:2]], pad_id=0)
    runner = ForwardRunner(model)
    logits, x = runner.replaced(batch.tokens, return_inputs=True)
    with torch.no_grad():
        y_self = tc.decode(tc.encode(x), x)
        clean_x = runner.clean(batch.tokens).inputs
        y_clean_inputs = tc.decode(tc.encode(clean_x), clean_x)
    pinned = runner.patched(batch.tokens, dict(enumerate(y_self)))
    torch.testing.assert_close(pinned, logits, rtol=1e-4, atol=1e-4)
    not_propagated = runner.patched(batch.tokens, dict(enumerate(y_clean_inputs)))
    assert (not_propagated - logits)[batch.eval_mask].abs().max() > 1e-2
    # layer 0 sees the clean input; position 0 keeps the clean run everywhere
    torch.testing.assert_close(x[0], clean_x[0])
    clean_logits = runner.clean(batch.tokens).logits
    torch.testing.assert_close(logits[:, 0], clean_logits[:, 0])


def test_batched_clean_logits_match_the_backend(replacement_model):
    model = replacement_model("gemma2", "clt_skip")
    seqs = [model.ensure_tokenized(p) for p in PROMPTS]
    batch = make_batch(seqs, pad_id=0)
    clean = ForwardRunner(model).clean(batch.tokens)
    for i, s in enumerate(seqs):
        ref = model.impl.clean_run(s)
        torch.testing.assert_close(clean.logits[i, : len(s)], ref.logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(clean.outputs[:, i, : len(s)], ref.feature_outputs)


def test_token_sample_from_texts(replacement_model):
    model = replacement_model("llama", "plt_jumprelu")
    bos = model.tokenizer.bos_token_id
    sample = token_sample_from_texts(model, ["", *PROMPTS], max_seq_len=4)
    assert all(len(s) <= 4 and int(s[0]) == bos for s in sample)
    n_words = sum(len(p.split()) for p in PROMPTS)
    assert sum(len(s) - 1 for s in sample) == n_words  # long lines are split, nothing dropped
    capped = token_sample_from_texts(model, PROMPTS, n_tokens=10)
    assert sum(len(s) - 1 for s in capped) == 10
    with pytest.raises(ValueError, match="no tokens after the leading BOS"):
        evaluate_transcoders(model, [torch.tensor([bos])], progress=False)
