"""A set of per-layer transcoders (PLTs), one for each layer ``0..L−1``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .base import Transcoders
from .components import AttributionComponents
from .lazy import LazyTensor
from .single_layer import PerLayerTranscoder


class TranscoderSet(Transcoders):
    """Per-layer transcoders for layers ``0..L−1`` (equal ``F`` and ``D`` everywhere).

    Args:
        transcoders: the PLTs, as a sequence in layer order or a ``{layer: PLT}`` mapping whose
            keys must be exactly ``0..L−1``. Each PLT's ``layer_idx`` must match its position.
        feature_input_hook, feature_output_hook, scan, config: see :class:`Transcoders`.
    """

    is_cross_layer = False

    def __init__(
        self,
        transcoders: Sequence[PerLayerTranscoder] | Mapping[int, PerLayerTranscoder],
        *,
        feature_input_hook: str,
        feature_output_hook: str,
        scan: str | list[str] | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(transcoders, Mapping):
            if sorted(transcoders) != list(range(len(transcoders))):
                raise ValueError(
                    f"transcoder layers must be 0..{len(transcoders) - 1}, "
                    f"got {sorted(transcoders)}"
                )
            transcoders = [transcoders[i] for i in range(len(transcoders))]
        transcoders = list(transcoders)
        if not transcoders:
            raise ValueError("a TranscoderSet needs at least one layer")
        first = transcoders[0]
        for layer, tc in enumerate(transcoders):
            if tc.layer_idx != layer:
                raise ValueError(f"transcoder at position {layer} has layer_idx {tc.layer_idx}")
            if (tc.d_transcoder, tc.d_model) != (first.d_transcoder, first.d_model):
                raise ValueError(
                    f"layer {layer} has (F, D) = {(tc.d_transcoder, tc.d_model)}, "
                    f"layer 0 has {(first.d_transcoder, first.d_model)}"
                )
            if (tc.W_skip is None) != (first.W_skip is None):
                raise ValueError("either every layer has a skip connection or none has")
            if tc.activation_function.name != first.activation_function.name:
                raise ValueError("every layer must use the same activation function")
        super().__init__(
            n_layers=len(transcoders),
            d_model=first.d_model,
            d_transcoder=first.d_transcoder,
            feature_input_hook=feature_input_hook,
            feature_output_hook=feature_output_hook,
            scan=scan,
            config=config,
        )
        self.transcoders = nn.ModuleList(transcoders)

    def __getitem__(self, layer: int) -> PerLayerTranscoder:
        return self.transcoders[layer]

    def __len__(self) -> int:
        return self.n_layers

    def __iter__(self) -> Iterator[PerLayerTranscoder]:
        return iter(self.transcoders)

    # ----------------------------------------------------------------------------- properties

    @property
    def skip_connection(self) -> bool:
        return self.transcoders[0].W_skip is not None

    @property
    def activation_name(self) -> str:
        return self.transcoders[0].activation_function.name

    @property
    def topk_k(self) -> int | None:
        return getattr(self.transcoders[0].activation_function, "k", None)

    @property
    def lazy_encoder(self) -> bool:
        return self.transcoders[0].lazy_encoder

    @property
    def lazy_decoder(self) -> bool:
        return self.transcoders[0].lazy_decoder

    @property
    def lazy_sources(self) -> list[LazyTensor]:
        return [source for tc in self.transcoders for source in tc.lazy_sources]

    # ------------------------------------------------------------------------------- weights

    def encoder_weight(self, layer: int) -> torch.Tensor:
        return self.transcoders[layer].encoder_weight()

    def decoder_weight(self, layer: int) -> torch.Tensor:
        return self.transcoders[layer].decoder_weight()

    def decoder_vectors(self, layer: int, feat_ids: torch.Tensor) -> torch.Tensor:
        """Unscaled decoder rows ``(n, D)`` of features ``feat_ids (n,)`` of ``layer``."""
        return self.transcoders[layer].decoder_rows(feat_ids)

    # ----------------------------------------------------------------------------- the maths

    def apply_activation_function(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        return self.transcoders[layer].activation_function(z)

    def encode_layer(
        self, x: torch.Tensor, layer: int, apply_activation_function: bool = True
    ) -> torch.Tensor:
        return self.transcoders[layer].encode(x, apply_activation_function)

    def compute_skip(self, layer: int, x: torch.Tensor) -> torch.Tensor | None:
        """``x @ W_skip[layer].T``, ``(..., D)``, or None."""
        return self.transcoders[layer].compute_skip(x)

    def decode(self, acts: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        self._check_skip_input(x)
        return torch.stack(
            [
                tc.decode(acts[layer], None if x is None else x[layer])
                for layer, tc in enumerate(self.transcoders)
            ]
        )

    @torch.no_grad()
    def compute_attribution_components(
        self, x: torch.Tensor, zero_positions: slice = slice(0, 1)
    ) -> AttributionComponents:
        """Sparse attribution inputs for encoder inputs ``x (L, T, D)``, layer by layer.

        Decoder rows are one per active feature, in activation matrix order (which is sorted
        by layer, then position), so ``encoder_to_decoder_map`` is ``arange(N_act)``.
        """
        n_layers, n_pos, _ = x.shape
        if n_layers != self.n_layers:
            raise ValueError(f"expected {self.n_layers} layers on axis 0, got {n_layers}")
        indices, values, encoders, decoders = [], [], [], []
        reconstruction = torch.empty(
            n_layers, n_pos, self.d_model, device=self.device, dtype=self.dtype
        )
        for layer, tc in enumerate(self.transcoders):
            pos, feat, vals, enc_rows = tc.encode_sparse(x[layer], zero_positions)
            reconstruction[layer], scaled = tc.decode_sparse(pos, feat, vals, x[layer], n_pos)
            indices.append(torch.stack([torch.full_like(pos, layer), pos, feat]))
            values.append(vals)
            encoders.append(enc_rows)
            decoders.append(scaled)
        index = torch.cat(indices, dim=1)
        activation_matrix = torch.sparse_coo_tensor(
            index,
            torch.cat(values),
            (n_layers, n_pos, self.d_transcoder),
            check_invariants=False,
        ).coalesce()
        n_active = index.shape[1]
        return AttributionComponents(
            activation_matrix=activation_matrix,
            reconstruction=reconstruction,
            encoder_vecs=torch.cat(encoders),
            decoder_vecs=torch.cat(decoders),
            encoder_to_decoder_map=torch.arange(n_active, device=index.device),
            decoder_locations=index[:2].clone(),
        )
