"""Phase 0 of attribution: everything computed once from a clean forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ct_engine.transcoders import AttributionComponents


@dataclass
class AttributionContext:
    """Node vectors of one prompt.

    Attributes:
        tokens: ``(T,)`` prompt tokens, special token first.
        logits: ``(T, V)`` the model's logits.
        components: active features with their encoder and scaled decoder rows.
        error_vectors: ``(L, T, D)`` MLP output minus transcoder reconstruction, zeroed at
            the model's zero positions.
        token_vectors: ``(T, D)`` embedding-hook output (what each token writes).
        mlp_outputs: ``(L, T, D)`` what each MLP module returned, which frozen runs stand in
            for the modules; ``None`` where the backend cannot.
    """

    tokens: torch.Tensor
    logits: torch.Tensor
    components: AttributionComponents
    error_vectors: torch.Tensor
    token_vectors: torch.Tensor
    mlp_outputs: torch.Tensor | None = None

    @property
    def n_layers(self) -> int:
        return self.error_vectors.shape[0]

    @property
    def n_pos(self) -> int:
        return self.error_vectors.shape[1]

    @property
    def n_features(self) -> int:
        """``N_act``: the number of active features."""
        return self.components.encoder_vecs.shape[0]

    @property
    def error_offset(self) -> int:
        return self.n_features

    @property
    def token_offset(self) -> int:
        return self.n_features + self.n_layers * self.n_pos

    @property
    def row_size(self) -> int:
        """Source columns of a row: ``N_act + (L + 1)·T`` (features, errors, tokens)."""
        return self.n_features + (self.n_layers + 1) * self.n_pos


def build_context(model, tokens: torch.Tensor) -> AttributionContext:
    """Run the clean forward pass and the transcoders on ``tokens (T,)``."""
    clean = model.impl.clean_run(tokens)
    components = model.transcoders.compute_attribution_components(
        clean.feature_inputs, model.zero_positions
    )
    errors = clean.feature_outputs - components.reconstruction.to(clean.feature_outputs.dtype)
    errors[:, model.zero_positions] = 0
    return AttributionContext(
        tokens=tokens,
        logits=clean.logits,
        components=components,
        error_vectors=errors,
        token_vectors=clean.embeddings,
        mlp_outputs=clean.mlp_outputs,
    )
