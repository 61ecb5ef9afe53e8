"""The metric formulas on small hand-computed tensors (no model)."""

from __future__ import annotations

import math

import pytest
import torch

from ct_engine.metrics.fidelity import (
    MeanStat,
    ce_loss_recovered,
    ce_per_token,
    kl_per_token,
    top1_matches,
)
from ct_engine.metrics.reconstruction import (
    ReconstructionStats,
    fvu_centered,
    mse,
    nmse_uncentered,
)
from ct_engine.metrics.sparsity import SparsityStats, dead_fraction, dense_fraction

# Targets with mean (10, 10): Σ‖y‖² = 404, Σ‖y − ȳ‖² = 4. One unit error on one token.
Y = torch.tensor([[11.0, 9.0], [9.0, 11.0]])
Y_HAT = torch.tensor([[12.0, 9.0], [9.0, 11.0]])


def test_reconstruction_by_hand():
    assert mse(Y, Y_HAT) == pytest.approx(0.5)  # Σ_t ‖e_t‖² / N = 1 / 2
    assert nmse_uncentered(Y, Y_HAT) == pytest.approx(1 / 404)
    assert fvu_centered(Y, Y_HAT) == pytest.approx(1 / 4)


def test_nmse_is_much_smaller_than_fvu_when_the_target_has_a_large_mean():
    torch.manual_seed(0)
    noise = torch.randn(500, 16)
    err = 0.3 * torch.randn(500, 16)
    fvu_expected = float((err**2).sum() / ((noise - noise.mean(0)) ** 2).sum())
    # Zero-mean target: both normalisers are about Σ‖y‖², so the two agree closely.
    assert nmse_uncentered(noise, noise + err) == pytest.approx(fvu_expected, rel=0.01)
    # Mean 100 on every coordinate: FVU is unchanged, NMSE shrinks by ~(1 + 100²).
    y = noise + 100.0
    assert fvu_centered(y, y + err) == pytest.approx(fvu_expected, rel=1e-6)
    assert nmse_uncentered(y, y + err) == pytest.approx(fvu_expected / (1 + 100.0**2), rel=0.01)


@pytest.mark.parametrize("splits", [[2], [1, 1]])
def test_streaming_sums_match_the_one_shot_formulas(splits):
    stats = ReconstructionStats()
    for y, y_hat in zip(Y.split(splits), Y_HAT.split(splits), strict=True):
        stats.update(y, y_hat)
    assert stats.n == 2
    assert stats.mse == pytest.approx(0.5)
    assert stats.nmse_uncentered == pytest.approx(1 / 404)
    assert stats.fvu_centered == pytest.approx(0.25)
    assert stats.fve_centered == pytest.approx(0.75)


def test_streaming_centered_total_is_exact_for_a_huge_mean():
    torch.manual_seed(1)
    y = torch.randn(1000, 8, dtype=torch.float64) + 1e6
    y_hat = y + 0.1
    stats = ReconstructionStats()
    for yb, hb in zip(y.split(37), y_hat.split(37), strict=True):
        stats.update(yb, hb)
    assert stats.centered_total == pytest.approx(float(((y - y.mean(0)) ** 2).sum()), rel=1e-9)
    assert stats.fvu_centered == pytest.approx(fvu_centered(y, y_hat), rel=1e-9)


def test_empty_stats_are_nan():
    assert math.isnan(ReconstructionStats().fvu_centered)
    assert math.isnan(SparsityStats(4).l0)


def _activation_pattern() -> torch.Tensor:
    """200 tokens × 4 features: never, 1 token (0.5%), 3 tokens (1.5%), 100 tokens (50%)."""
    acts = torch.zeros(200, 4)
    acts[7, 1] = 0.5
    acts[[3, 50, 120], 2] = torch.tensor([1.0, -0.2, 2.0])  # a negative TopK value fires too
    acts[::2, 3] = 3.0
    return acts


def test_dead_and_dense_fractions_on_a_constructed_pattern():
    acts = _activation_pattern()
    stats = SparsityStats(4)
    for chunk in acts.split(64):
        stats.update(chunk)
    assert stats.n == 200
    assert stats.counts.tolist() == [0, 1, 3, 100]
    assert stats.l0 == pytest.approx((0 + 1 + 3 + 100) / 200)
    assert stats.dead_fraction == 0.25
    assert stats.dense_fraction(0.01) == 0.5  # features 2 and 3
    assert stats.dense_fraction(0.1) == 0.25  # feature 3 only
    assert dead_fraction(stats.counts) == 0.25
    assert dense_fraction(stats.counts, 200, 0.5) == 0.0  # strictly above τ


def test_kl_top1_and_ce_by_hand():
    clean = torch.log(torch.tensor([[0.5, 0.5, 1e-30], [0.7, 0.2, 0.1]]))
    other = torch.log(torch.tensor([[0.9, 0.1, 1e-30], [0.1, 0.2, 0.7]]))
    kl = kl_per_token(clean, other)
    assert kl[0] == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1), rel=1e-5)
    expected = 0.7 * math.log(7) + 0.1 * math.log(1 / 7)
    assert kl[1] == pytest.approx(expected, rel=1e-5)
    assert kl_per_token(clean, clean).abs().max() < 1e-6
    assert top1_matches(clean, other).tolist() == [True, False]
    ce = ce_per_token(other, torch.tensor([1, 2]))
    assert ce.tolist() == pytest.approx([-math.log(0.1), -math.log(0.7)], rel=1e-5)


def test_ce_loss_recovered():
    assert ce_loss_recovered(ce_clean=2.0, ce_splice=2.0, ce_zero=4.0) == 1.0
    assert ce_loss_recovered(ce_clean=2.0, ce_splice=3.0, ce_zero=4.0) == 0.5
    assert ce_loss_recovered(ce_clean=2.0, ce_splice=4.0, ce_zero=4.0) == 0.0
    assert math.isnan(ce_loss_recovered(2.0, 3.0, 2.0))


def test_mean_stat_accumulates_in_float64():
    stat = MeanStat()
    stat.update(torch.tensor([1.0, 2.0]))
    stat.update(torch.tensor([True, False]))
    assert stat.n == 4 and stat.value == pytest.approx(1.0)
