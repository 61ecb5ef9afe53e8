"""``evaluate_transcoders``: reconstruction, sparsity and fidelity of a transcoder set.

Per batch of prompts (``L`` layers, ``n`` evaluated tokens, ``D = d_model``, ``F`` features):

1. a clean forward records encoder inputs ``x`` and MLP outputs ``y`` at the transcoders' hooks;
   at positions ``≥ 1`` (BOS excluded, padding excluded) the transcoders encode ``x (L, n, D)``
   into ``a (L, n, F)`` and decode ``ŷ (L, n, D)``, which feed the streaming reconstruction and
   sparsity statistics (float64 sums);
2. a forward with every MLP replaced at once (positions ``≥ 1``, no error terms, reconstructions
   computed layer by layer from that run's own encoder inputs) gives KL, top-1 and CE;
3. for each layer, a forward with only that layer spliced (its output replaced by the clean-run
   reconstruction ``ŷ_l``; for a cross-layer transcoder the sum of the decoders of all source
   layers ``≤ l`` applied to their clean inputs) and one with it zero-ablated give CE recovered.

That is ``2 + 2L`` forward passes per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ct_engine.metrics.fidelity import (
    MeanStat,
    ce_loss_recovered,
    ce_per_token,
    kl_per_token,
    top1_matches,
)
from ct_engine.metrics.reconstruction import ReconstructionStats
from ct_engine.metrics.result import TranscoderMetrics
from ct_engine.metrics.runs import Batch, ForwardRunner, make_batch
from ct_engine.metrics.sparsity import DENSE_THRESHOLDS, SparsityStats


def normalize_sample(model, token_sample) -> list[torch.Tensor]:
    """Prompts (strings, token lists, 1-D tensors, or a 2-D ``(B, T)`` tensor) → 1-D token
    tensors that start with the model's leading special token (``model.ensure_tokenized``)."""
    if isinstance(token_sample, str | torch.Tensor) and not (
        isinstance(token_sample, torch.Tensor) and token_sample.ndim == 2
    ):
        token_sample = [token_sample]
    seqs = [model.ensure_tokenized(p) for p in token_sample]
    return [s for s in seqs if len(s) >= 2]


def evaluate_transcoders(
    model,
    token_sample: Sequence,
    batch_size: int = 8,
    progress: bool = True,
) -> TranscoderMetrics:
    """Evaluate ``model.transcoders`` on ``token_sample``; see :class:`TranscoderMetrics`.

    Args:
        model: a :class:`~ct_engine.replacement.ReplacementModel`.
        token_sample: prompts: strings or token ids, each tokenized with
            ``model.ensure_tokenized`` (a leading BOS is added when missing). Position 0 of
            every prompt is excluded from all statistics, and interventions leave it alone.
        batch_size: prompts per forward pass (right-padded to the longest).
        progress: show a tqdm progress bar over batches.

    Raises:
        ValueError: when no prompt has a token after its BOS.
    """
    seqs = normalize_sample(model, token_sample)
    if not seqs:
        raise ValueError("the token sample has no tokens after the leading BOS: nothing to score")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    tc = model.transcoders
    L = model.n_layers
    runner = ForwardRunner(model)
    recon = [ReconstructionStats() for _ in range(L)]
    sparsity = [SparsityStats(tc.d_transcoder) for _ in range(L)]
    kl, top1 = MeanStat(), MeanStat()
    ce_clean, ce_replaced = MeanStat(), MeanStat()
    ce_splice = [MeanStat() for _ in range(L)]
    ce_zero = [MeanStat() for _ in range(L)]
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0

    starts = range(0, len(seqs), batch_size)
    for start in tqdm(starts, desc="eval-transcoders", unit="batch", disable=not progress):
        batch = make_batch(seqs[start : start + batch_size], pad_id)
        _evaluate_batch(
            runner, batch, recon, sparsity, kl, top1, ce_clean, ce_replaced, ce_splice, ce_zero
        )

    result = TranscoderMetrics(
        n_layers=L,
        d_transcoder=tc.d_transcoder,
        is_cross_layer=bool(tc.is_cross_layer),
        skip_connection=bool(tc.skip_connection),
        n_sequences=len(seqs),
        n_tokens=recon[0].n,
        n_predicted_tokens=ce_clean.n,
        mse=[r.mse for r in recon],
        nmse_uncentered=[r.nmse_uncentered for r in recon],
        fvu_centered=[r.fvu_centered for r in recon],
        fve_centered=[r.fve_centered for r in recon],
        l0=[s.l0 for s in sparsity],
        dead_fraction=[s.dead_fraction for s in sparsity],
        dense_fraction_1pct=[
            s.dense_fraction(DENSE_THRESHOLDS["dense_fraction_1pct"]) for s in sparsity
        ],
        dense_fraction_10pct=[
            s.dense_fraction(DENSE_THRESHOLDS["dense_fraction_10pct"]) for s in sparsity
        ],
        ce_splice=[c.value for c in ce_splice],
        ce_zero_ablation=[c.value for c in ce_zero],
        ce_loss_recovered=[
            ce_loss_recovered(ce_clean.value, s.value, z.value)
            for s, z in zip(ce_splice, ce_zero, strict=True)
        ],
        l0_total=sum(s.l0 for s in sparsity),
        kl_replaced=kl.value,
        top1_agreement=top1.value,
        ce_clean=ce_clean.value,
        ce_replaced=ce_replaced.value,
        delta_ce=ce_replaced.value - ce_clean.value,
    )
    return result


def _evaluate_batch(
    runner: ForwardRunner,
    batch: Batch,
    recon: list[ReconstructionStats],
    sparsity: list[SparsityStats],
    kl: MeanStat,
    top1: MeanStat,
    ce_clean: MeanStat,
    ce_replaced: MeanStat,
    ce_splice: list[MeanStat],
    ce_zero: list[MeanStat],
) -> None:
    tc = runner.transcoders
    tokens, mask, next_mask = batch.tokens, batch.eval_mask, batch.next_mask
    targets = batch.next_targets
    clean = runner.clean(tokens)
    with torch.no_grad():
        x = clean.inputs[:, mask]  # (L, n, D)
        y = clean.outputs[:, mask]  # (L, n, D)
        acts = tc.encode(x)  # (L, n, F)
        y_hat = tc.decode(acts, x)  # (L, n, D)
    for layer in range(runner.n_layers):
        recon[layer].update(y[layer], y_hat[layer])
        sparsity[layer].update(acts[layer])
    clean_eval = clean.logits[mask]
    ce_clean.update(ce_per_token(clean.logits[next_mask], targets))

    replaced = runner.replaced(tokens)
    kl.update(kl_per_token(clean_eval, replaced[mask]))
    top1.update(top1_matches(clean_eval, replaced[mask]))
    ce_replaced.update(ce_per_token(replaced[next_mask], targets))
    del replaced

    for layer in range(runner.n_layers):
        spliced = clean.outputs[layer].clone()
        spliced[mask] = y_hat[layer].to(spliced.dtype)
        logits = runner.patched(tokens, {layer: spliced})
        ce_splice[layer].update(ce_per_token(logits[next_mask], targets))
        logits = runner.patched(tokens, {layer: None})
        ce_zero[layer].update(ce_per_token(logits[next_mask], targets))
