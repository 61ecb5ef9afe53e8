"""One backward pass, ``B`` rows of the adjacency matrix.

The frozen forward holds ``B`` identical copies of the prompt. Copy ``b`` carries one target:
its readout vector is the seed gradient at the target's readout site (a feature's input hook,
or the final-norm output for a logit) and position. One ``torch.autograd.grad`` call then gives,
for every copy, the gradient at every write site; dotting those with the node vectors gives
the row: ``A[target, source] = Σ_sites ⟨∂readout/∂site, source vector⟩``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ct_engine.attribution.context import AttributionContext
from ct_engine.replacement.backend import FrozenRun


@dataclass
class _LayerDecoders:
    """Scaled decoder rows written at one layer, grouped by position for one batched matmul.

    Attributes:
        vectors: ``(T, n_max, D)`` rows, zero-padded per position.
        flat_slots: ``(n,)`` index of each real row in the flattened ``(T·n_max)`` grid.
        features: ``(n,)`` active-feature index of each real row.
    """

    vectors: torch.Tensor
    flat_slots: torch.Tensor
    features: torch.Tensor


def _group_decoders(ctx: AttributionContext, n_pos: int) -> list[_LayerDecoders | None]:
    """Decoder rows at positions ``< n_pos``, per write layer."""
    comps = ctx.components
    layers, positions = comps.decoder_locations
    T = n_pos
    grouped: list[_LayerDecoders | None] = []
    for layer in range(ctx.n_layers):
        rows = ((layers == layer) & (positions < n_pos)).nonzero().squeeze(1)
        if rows.numel() == 0:
            grouped.append(None)
            continue
        pos = positions[rows]
        order = torch.argsort(pos, stable=True)
        rows, pos = rows[order], pos[order]
        counts = torch.bincount(pos, minlength=T)
        starts = counts.cumsum(0) - counts
        slot = torch.arange(len(rows), device=pos.device) - starts[pos]
        n_max = int(counts.max())
        vectors = comps.decoder_vecs.new_zeros(T, n_max, comps.decoder_vecs.shape[1])
        vectors[pos, slot] = comps.decoder_vecs[rows]
        grouped.append(
            _LayerDecoders(
                vectors=vectors,
                flat_slots=pos * n_max + slot,
                features=comps.encoder_to_decoder_map[rows],
            )
        )
    return grouped


class RowComputer:
    """Computes adjacency rows against a frozen forward of ``B`` copies of the prompt, or of
    a prefix of it: the sources at positions past the prefix then simply get zeros, which is
    exact for targets inside the prefix (attention is causal)."""

    def __init__(self, ctx: AttributionContext, frozen: FrozenRun):
        self.ctx = ctx
        self.frozen = frozen
        self.batch_size, self.n_pos = frozen.embeddings.shape[:2]
        self.decoders = _group_decoders(ctx, self.n_pos)
        dtype = frozen.embeddings.dtype
        self.error_vectors = ctx.error_vectors[:, : self.n_pos].to(dtype)
        self.token_vectors = ctx.token_vectors[: self.n_pos].to(dtype)
        # One output buffer, zeroed per call: a fresh (B, row_size) allocation per batch
        # costs page faults that showed up as ~10% of a long-prompt run.
        self._row = torch.zeros(
            self.batch_size, ctx.row_size, dtype=torch.float32, device=frozen.embeddings.device
        )

    def readout_site(self, layer: int) -> torch.Tensor:
        """Tensor whose gradient seeds targets at ``layer`` (``L`` means logits)."""
        if layer == self.ctx.n_layers:
            return self.frozen.final_residual
        return self.frozen.feature_inputs[layer]

    def compute(
        self, layers: torch.Tensor, positions: torch.Tensor, vectors: torch.Tensor
    ) -> torch.Tensor:
        """Rows for ``n <= B`` targets.

        Args:
            layers: ``(n,)`` readout layer of each target (``L`` for logits).
            positions: ``(n,)`` readout position.
            vectors: ``(n, D)`` readout direction (encoder row or logit vector).

        Returns:
            ``(n, N_act + (L+1)·T)`` float32 rows on the context's device: a view of a
            buffer that the next call overwrites, so copy it out first.
        """
        ctx, frozen = self.ctx, self.frozen
        n, B, T, Tp = len(layers), self.batch_size, ctx.n_pos, self.n_pos
        if n > B:
            raise ValueError(f"{n} targets do not fit a batch of {B}")
        if n == 0:  # e.g. a prompt prefix where no feature is active: nothing to seed
            return self._row[:0].zero_()
        if int(positions.max()) >= Tp:
            raise ValueError(f"a target at position {int(positions.max())} is past the prefix {Tp}")
        outputs, seeds = [], []
        for layer in torch.unique(layers).tolist():
            site = self.readout_site(layer)
            chosen = (layers == layer).nonzero().squeeze(1)
            seed = torch.zeros_like(site)
            seed[chosen, positions[chosen]] = vectors[chosen].to(seed.dtype)
            outputs.append(site)
            seeds.append(seed)
        top = int(layers.max())
        sites = [frozen.embeddings] + frozen.feature_outputs[:top]
        grads = torch.autograd.grad(
            outputs, sites, seeds, retain_graph=True, allow_unused=True, materialize_grads=False
        )
        row = self._row.zero_()
        if grads[0] is not None:
            tok = torch.einsum("btd,td->bt", grads[0], self.token_vectors)
            row[:, ctx.token_offset : ctx.token_offset + Tp] = tok.float()
        for layer, grad in enumerate(grads[1:]):
            if grad is None:
                continue
            start = ctx.error_offset + layer * T
            err = torch.einsum("btd,td->bt", grad, self.error_vectors[layer])
            row[:, start : start + Tp] = err.float()
            dec = self.decoders[layer]
            if dec is None:
                continue
            # (Tp, B, D) @ (Tp, D, n_max) -> (Tp, B, n_max): every copy against every row.
            dots = torch.bmm(grad.transpose(0, 1), dec.vectors.transpose(1, 2))
            values = dots.permute(1, 0, 2).reshape(B, -1)[:, dec.flat_slots]
            row.index_add_(1, dec.features, values.float())
        return row[:n]
