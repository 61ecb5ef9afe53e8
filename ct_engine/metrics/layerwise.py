"""Transcoder reconstruction built one source layer at a time, inside a forward pass.

When every MLP is replaced by its transcoder, the encoder input of layer ``l`` depends on the
reconstructions of the layers before it, so the reconstruction must be computed as the forward
pass reaches each layer. :class:`LayerwiseDecoder` does that for per-layer and cross-layer
transcoders alike, through the :class:`~ct_engine.transcoders.Transcoders` interface only:

    ŷ_l = Σ_{i ≤ l} a_i · W_dec[i → l] + b_dec[l] (+ skip_l(x_l))

(a per-layer transcoder has only the ``i = l`` term). Feed source layer ``i`` with
:meth:`add_source` once its input ``x_i`` is known, then read output ``l`` with :meth:`output`.
With inputs from a clean run it equals ``transcoders.decode(transcoders.encode(x), x)``.
"""

from __future__ import annotations

import torch

from ct_engine.transcoders import Transcoders


def output_biases(transcoders: Transcoders) -> torch.Tensor:
    """``(L, D)``: each output layer's reconstruction when no feature fires (``b_dec``)."""
    L, F, D = transcoders.n_layers, transcoders.d_transcoder, transcoders.d_model
    device, dtype = transcoders.device, transcoders.dtype
    acts = torch.zeros(L, 1, F, device=device, dtype=dtype)
    x = torch.zeros(L, 1, D, device=device, dtype=dtype)  # the skip term is linear: 0 at x = 0
    with torch.no_grad():
        return transcoders.decode(acts, x)[:, 0]


class LayerwiseDecoder:
    """Accumulates decoder contributions ``(L, *batch, D)`` source layer by source layer.

    Args:
        transcoders: any transcoder set.
        biases: ``(L, D)`` from :func:`output_biases` (computed once per set).
    """

    def __init__(self, transcoders: Transcoders, biases: torch.Tensor):
        self.transcoders = transcoders
        self.biases = biases
        self.sums: list[torch.Tensor | None] = [None] * transcoders.n_layers
        self.added: set[int] = set()

    def encode_and_add(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x (*batch, D)`` at ``layer`` and add its decoder terms; return the
        activations ``(*batch, F)``."""
        acts = self.transcoders.encode_layer(x, layer)
        self.add_source(layer, acts)
        return acts

    def add_source(self, layer: int, acts: torch.Tensor) -> None:
        """Add the decoder terms of source ``layer``'s activations ``acts (*batch, F)``."""
        tc = self.transcoders
        self.added.add(layer)
        active = (acts != 0).reshape(-1, acts.shape[-1]).any(0).nonzero().squeeze(-1)
        rows = tc.decoder_vectors(layer, active)  # (n, D) or (n, L − layer, D)
        a = acts[..., active].to(rows.dtype)
        if tc.is_cross_layer:
            contributions = torch.einsum("...f,fjd->j...d", a, rows)
            for j in range(contributions.shape[0]):
                self._add(layer + j, contributions[j])
        else:
            self._add(layer, a @ rows)

    def _add(self, layer: int, term: torch.Tensor) -> None:
        current = self.sums[layer]
        self.sums[layer] = term if current is None else current + term

    def output(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``(*batch, D)`` at output ``layer``; ``x (*batch, D)`` is that layer's
        encoder input (for the skip term). Every source ``≤ layer`` must have been added."""
        sources = range(layer + 1) if self.transcoders.is_cross_layer else (layer,)
        missing = [i for i in sources if i not in self.added]
        if missing:
            raise RuntimeError(f"output {layer} needs source layers {missing} first")
        out = self.biases[layer].to(x.device)
        if self.sums[layer] is not None:
            out = out + self.sums[layer]
        skip = self.transcoders.compute_skip(layer, x)
        if skip is not None:
            out = out + skip
        return out.expand(*x.shape[:-1], out.shape[-1])
