"""Cross-layer transcoder (CLT): features read one layer and write to it and every later one.

Source layer ``i``: ``z_i = x_i·W_enc[i]ᵀ + b_enc[i]``, ``a_i = σ_i(z_i)``.
Output layer ``j``: ``ŷ_j = Σ_{i≤j} a_i·W_dec[i][:, j−i, :] + b_dec[j] (+ x_j·W_skip[j])``;
note the skip has no transpose here, unlike the per-layer transcoder's ``x·W_skipᵀ``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .activations import JumpReLU, ReLU
from .base import Transcoders
from .components import AttributionComponents
from .errors import TranscoderFormatError
from .lazy import LazyTensor


def _frozen(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach(), requires_grad=False)


class CrossLayerTranscoder(Transcoders):
    """A cross-layer transcoder with ``L`` source layers of ``F`` features each.

    Weights are non-trainable parameters; encoders and decoders may instead be given as one
    :class:`LazyTensor` per source layer (read on every use / row by row on demand).

    Args:
        W_enc: ``(L, F, D)`` or ``L`` lazy ``(F, D)`` tensors.
        b_enc: ``(L, F)``.
        W_dec: ``L`` tensors (or lazy tensors) ``W_dec[i]: (F, L − i, D)``; slot ``j − i`` is
            the vector feature ``(i, f)`` writes into output layer ``j``.
        b_dec: ``(L, D)``, per output layer.
        activation: ``"relu"`` or ``"jump_relu"`` (TranscoderFormatError otherwise).
        threshold: JumpReLU thresholds ``(L, F)`` or ``(L, 1, F)``.
        W_skip: optional ``(L, D, D)``, applied as ``x_j @ W_skip[j]``.
        feature_input_hook, feature_output_hook, scan, config: see :class:`Transcoders`.
    """

    is_cross_layer = True

    def __init__(
        self,
        *,
        W_enc: torch.Tensor | Sequence[LazyTensor],
        b_enc: torch.Tensor,
        W_dec: Sequence[torch.Tensor] | Sequence[LazyTensor],
        b_dec: torch.Tensor,
        activation: str = "relu",
        threshold: torch.Tensor | None = None,
        W_skip: torch.Tensor | None = None,
        feature_input_hook: str,
        feature_output_hook: str,
        scan: str | list[str] | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        n_layers, n_features = b_enc.shape
        d_model = b_dec.shape[-1]
        self._check_shapes(W_enc, W_dec, b_dec, threshold, W_skip, n_layers, n_features, d_model)
        super().__init__(
            n_layers=n_layers,
            d_model=d_model,
            d_transcoder=n_features,
            feature_input_hook=feature_input_hook,
            feature_output_hook=feature_output_hook,
            scan=scan,
            config=config,
        )
        self.b_enc = _frozen(b_enc)
        self.b_dec = _frozen(b_dec)
        lazy_enc = not isinstance(W_enc, torch.Tensor)
        self._lazy_enc: list[LazyTensor] | None = list(W_enc) if lazy_enc else None
        if not lazy_enc:
            self.W_enc = _frozen(W_enc)
        lazy_dec = isinstance(W_dec[0], LazyTensor)
        if any(isinstance(w, LazyTensor) != lazy_dec for w in W_dec):
            raise ValueError("W_dec must be all lazy or all in memory")
        self._lazy_dec: list[LazyTensor] | None = list(W_dec) if lazy_dec else None
        if not lazy_dec:
            self.W_dec = nn.ParameterList([_frozen(w) for w in W_dec])
        self.W_skip = None if W_skip is None else _frozen(W_skip)
        if activation == "relu":
            self.activation_function: nn.Module = ReLU()
        elif activation == "jump_relu":
            if threshold is None:
                raise TranscoderFormatError("jump_relu needs thresholds", key="threshold")
            self.activation_function = JumpReLU(threshold.reshape(n_layers, 1, n_features))
        else:
            raise TranscoderFormatError(
                f"cross-layer transcoders support 'relu' and 'jump_relu', not {activation!r}",
                key="activation",
            )

    @staticmethod
    def _check_shapes(W_enc, W_dec, b_dec, threshold, W_skip, n_layers, n_features, d_model):
        expected: list[tuple[str, Any, tuple[int, ...]]] = [
            ("b_dec", b_dec, (n_layers, d_model)),
            ("W_skip", W_skip, (n_layers, d_model, d_model)),
        ]
        if isinstance(W_enc, torch.Tensor):
            expected.append(("W_enc", W_enc, (n_layers, n_features, d_model)))
        elif len(W_enc) != n_layers:
            raise ValueError(f"expected {n_layers} lazy encoders, got {len(W_enc)}")
        else:
            expected += [(f"W_enc[{i}]", w, (n_features, d_model)) for i, w in enumerate(W_enc)]
        if len(W_dec) != n_layers:
            raise ValueError(f"expected {n_layers} decoders, got {len(W_dec)}")
        expected += [
            (f"W_dec[{i}]", w, (n_features, n_layers - i, d_model)) for i, w in enumerate(W_dec)
        ]
        if threshold is not None and threshold.numel() != n_layers * n_features:
            raise ValueError(f"threshold has shape {tuple(threshold.shape)}")
        for name, t, shape in expected:
            if t is not None and tuple(t.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")

    # ----------------------------------------------------------------------------- properties

    @property
    def skip_connection(self) -> bool:
        return self.W_skip is not None

    @property
    def activation_name(self) -> str:
        return self.activation_function.name

    @property
    def lazy_encoder(self) -> bool:
        return self._lazy_enc is not None

    @property
    def lazy_decoder(self) -> bool:
        return self._lazy_dec is not None

    @property
    def lazy_sources(self) -> list[LazyTensor]:
        """The files this transcoder reads on demand."""
        return [*(self._lazy_enc or []), *(self._lazy_dec or [])]

    # ------------------------------------------------------------------------------- weights

    def encoder_weight(self, layer: int) -> torch.Tensor:
        """Encoder of source layer ``layer``, ``(F, D)``."""
        if self._lazy_enc is not None:
            return self._lazy_enc[layer].read(device=self.b_enc.device, dtype=self.b_enc.dtype)
        return self.W_enc[layer]

    def decoder_weight(self, layer: int) -> torch.Tensor:
        """Decoder of source layer ``layer``, ``(F, L − layer, D)``."""
        if self._lazy_dec is not None:
            return self._lazy_dec[layer].read(device=self.b_dec.device, dtype=self.b_dec.dtype)
        return self.W_dec[layer]

    def decoder_vectors(self, layer: int, feat_ids: torch.Tensor) -> torch.Tensor:
        """Unscaled decoder rows ``(n, L − layer, D)`` of features ``feat_ids (n,)``."""
        if self._lazy_dec is not None:
            return self._lazy_dec[layer].read_rows(
                feat_ids, device=self.b_dec.device, dtype=self.b_dec.dtype
            )
        return self.W_dec[layer][feat_ids.to(self.b_dec.device)]

    # ----------------------------------------------------------------------------- the maths

    def apply_activation_function(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        return self.activation_function(z, layer)

    def encode_layer(
        self, x: torch.Tensor, layer: int, apply_activation_function: bool = True
    ) -> torch.Tensor:
        z = F.linear(x.to(self.b_enc.dtype), self.encoder_weight(layer), self.b_enc[layer])
        return self.apply_activation_function(layer, z) if apply_activation_function else z

    def compute_skip(self, layer: int, x: torch.Tensor) -> torch.Tensor | None:
        """``x @ W_skip[layer]`` (no transpose), ``(..., D)``, or None."""
        if self.W_skip is None:
            return None
        return x.to(self.W_skip.dtype) @ self.W_skip[layer]

    def decode(self, acts: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """``acts (L, ..., F)`` → ``(L, ..., D)``; output ``j`` sums sources ``i ≤ j``."""
        self._check_skip_input(x)
        acts = acts.to(self.b_dec.dtype)
        batch_shape = acts.shape[1:-1]
        out = self.b_dec.reshape(self.n_layers, *([1] * len(batch_shape)), self.d_model)
        out = out.expand(self.n_layers, *batch_shape, self.d_model).clone()
        for i in range(self.n_layers):
            a_i = acts[i]
            if self._lazy_dec is None:
                rows = self.W_dec[i]
            else:
                active = (a_i != 0).reshape(-1, a_i.shape[-1]).any(0).nonzero().squeeze(-1)
                rows, a_i = self.decoder_vectors(i, active), a_i[..., active]
            out[i:] += torch.einsum("...f,fjd->j...d", a_i, rows)
        if x is not None and self.W_skip is not None:
            for j in range(self.n_layers):
                out[j] += self.compute_skip(j, x[j])
        return out

    @torch.no_grad()
    def compute_attribution_components(
        self, x: torch.Tensor, zero_positions: slice = slice(0, 1)
    ) -> AttributionComponents:
        """Sparse attribution inputs for encoder inputs ``x (L, T, D)``.

        Each active feature ``(i, p, f)`` yields ``L − i`` decoder rows, one per output layer
        ``j ≥ i``. Decoder rows are ordered by (output layer, position, activation matrix
        index), so each output layer's rows are contiguous. Encoding and decoding run source
        layer by source layer; decoder rows of each distinct active feature are read once.
        """
        n_layers, n_pos, _ = x.shape
        if n_layers != self.n_layers:
            raise ValueError(f"expected {self.n_layers} layers on axis 0, got {n_layers}")
        device, dtype = self.b_enc.device, self.b_enc.dtype

        # Pass 1: sparse activations and encoder rows, source layer by source layer.
        positions, features, values, encoders = [], [], [], []
        for i in range(n_layers):
            W_enc = self.encoder_weight(i)
            acts = self.apply_activation_function(i, F.linear(x[i].to(dtype), W_enc, self.b_enc[i]))
            acts[zero_positions] = 0
            pos, feat = acts.nonzero(as_tuple=True)
            positions.append(pos)
            features.append(feat)
            values.append(acts[pos, feat])
            encoders.append(W_enc[feat])
        counts = [len(p) for p in positions]
        act_layer = torch.cat(
            [torch.full((n,), i, device=device, dtype=torch.long) for i, n in enumerate(counts)]
        )
        act_pos, act_feat = torch.cat(positions), torch.cat(features)
        activation_matrix = torch.sparse_coo_tensor(
            torch.stack([act_layer, act_pos, act_feat]),
            torch.cat(values),
            (n_layers, n_pos, self.d_transcoder),
            check_invariants=False,
        ).coalesce()

        # Decoder row bookkeeping: generated source-major as (i, feature, j); a stable sort on
        # (j, pos) then orders rows by (j, pos, activation index).
        out_layers, row_pos, row_act = [], [], []
        offset = 0
        for i, n in enumerate(counts):
            width = n_layers - i
            act_idx = torch.arange(offset, offset + n, device=device)
            offset += n
            out_layers.append(torch.arange(i, n_layers, device=device).repeat(n))
            row_pos.append(positions[i].repeat_interleave(width))
            row_act.append(act_idx.repeat_interleave(width))
        out_layer, row_pos_t, row_act_t = (torch.cat(t) for t in (out_layers, row_pos, row_act))
        order = torch.argsort(out_layer * n_pos + row_pos_t, stable=True)
        destination = torch.empty_like(order)
        destination[order] = torch.arange(len(order), device=device)

        # Pass 2: scaled decoder rows written straight into their sorted slots.
        decoder_vecs = torch.empty(len(order), self.d_model, device=device, dtype=dtype)
        recon = torch.zeros(n_layers * n_pos, self.d_model, device=device, dtype=dtype)
        start = 0
        for i, n in enumerate(counts):
            block = slice(start, start + n * (n_layers - i))
            start = block.stop
            if n == 0:
                continue
            scaled = self.decoder_vectors(i, features[i]) * values[i][:, None, None]
            scaled = scaled.reshape(-1, self.d_model)
            decoder_vecs[destination[block]] = scaled
            recon.index_add_(0, out_layer[block] * n_pos + row_pos_t[block], scaled)
        recon = recon.reshape(n_layers, n_pos, self.d_model) + self.b_dec[:, None, :]
        if self.W_skip is not None:
            for j in range(n_layers):
                recon[j] += self.compute_skip(j, x[j])

        return AttributionComponents(
            activation_matrix=activation_matrix,
            reconstruction=recon,
            encoder_vecs=torch.cat(encoders),
            decoder_vecs=decoder_vecs,
            encoder_to_decoder_map=row_act_t[order],
            decoder_locations=torch.stack([out_layer[order], row_pos_t[order]]),
        )
