"""The sparse per-prompt quantities attribution needs from a set of transcoders."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class AttributionComponents:
    """Active features of one prompt and the vectors they read and write.

    ``N_act`` is the number of active (layer, position, feature) triples, ``N_dec`` the number
    of decoder rows (``N_act`` for per-layer transcoders, ``Σ (L − layer)`` for cross-layer
    ones, one row per output layer a feature writes to).

    Attributes:
        activation_matrix: sparse COO ``(L, T, F)``, coalesced, post-activation values; entries
            at zeroed positions and exact zeros are not stored. Its ``indices()`` are sorted
            lexicographically by (layer, position, feature); that order is the "activation
            matrix order" of the other fields.
        reconstruction: dense ``(L, T, D)`` transcoder output at every output layer, including
            ``b_dec`` and the skip term, computed from the zeroed activations.
        encoder_vecs: ``(N_act, D)`` unscaled encoder rows ``W_enc[layer][f]``, in activation
            matrix order.
        decoder_vecs: ``(N_dec, D)`` activation-scaled decoder rows ``a · W_dec[f]``. Rows are
            sorted by output layer, then position, then activation matrix order, so the rows
            written at one output layer form one contiguous block (see
            :meth:`decoder_layer_offsets`).
        encoder_to_decoder_map: LongTensor ``(N_dec,)``: for each decoder row, the index (in
            activation matrix order) of the active feature it belongs to.
        decoder_locations: LongTensor ``(2, N_dec)``: (output layer, position) each decoder row
            is written to.
    """

    activation_matrix: torch.Tensor
    reconstruction: torch.Tensor
    encoder_vecs: torch.Tensor
    decoder_vecs: torch.Tensor
    encoder_to_decoder_map: torch.Tensor
    decoder_locations: torch.Tensor

    @property
    def n_active(self) -> int:
        """``N_act``, the number of active features."""
        return int(self.encoder_vecs.shape[0])

    @property
    def n_decoder_rows(self) -> int:
        """``N_dec``, the number of decoder rows."""
        return int(self.decoder_vecs.shape[0])

    def decoder_layer_offsets(self) -> torch.Tensor:
        """LongTensor ``(L + 1,)``: decoder rows written at layer ``j`` are ``[o[j], o[j+1])``."""
        n_layers = self.reconstruction.shape[0]
        counts = torch.bincount(self.decoder_locations[0], minlength=n_layers)
        offsets = torch.zeros(n_layers + 1, dtype=torch.long, device=counts.device)
        offsets[1:] = counts.cumsum(0)
        return offsets

    def to(self, device: torch.device | str) -> AttributionComponents:
        """A copy with every tensor moved to ``device``."""
        return AttributionComponents(
            **{f.name: getattr(self, f.name).to(device) for f in fields(self)}
        )

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The fields as a dict with circuit-tracer's key names."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
