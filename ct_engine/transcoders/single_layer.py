"""One per-layer transcoder (PLT): reads ``x_l``, reconstructs the output of layer ``l``.

``z = x·W_encᵀ + b_enc``, ``a = σ(z)``, ``ŷ = a·W_dec + b_dec (+ x·W_skipᵀ)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .activations import ReLU
from .lazy import LazyTensor


def _frozen(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach(), requires_grad=False)


class PerLayerTranscoder(nn.Module):
    """A single-layer transcoder.

    Weights are non-trainable parameters (``state_dict`` keys ``W_enc``, ``b_enc``, ``W_dec``,
    ``b_dec``, ``W_skip``, ``activation_function.threshold``, as in circuit-tracer's
    ``layer_{i}.safetensors``). ``W_enc`` / ``W_dec`` may instead be :class:`LazyTensor`\\ s:
    the encoder is then re-read on every use and only the needed decoder rows are read;
    attribute access ``tc.W_enc`` / ``tc.W_dec`` still works (it reads the whole tensor).

    Args:
        W_enc: ``(F, D)`` encoder (row ``f`` = input direction of feature ``f``) or lazy.
        b_enc: ``(F,)``.
        W_dec: ``(F, D)`` decoder (row ``f`` = output direction of feature ``f``) or lazy.
        b_dec: ``(D,)``.
        activation_function: activation module (default ReLU).
        layer_idx: the layer this transcoder belongs to.
        W_skip: optional ``(D, D)`` skip weight, applied as ``x @ W_skip.T``.
    """

    def __init__(
        self,
        *,
        W_enc: torch.Tensor | LazyTensor,
        b_enc: torch.Tensor,
        W_dec: torch.Tensor | LazyTensor,
        b_dec: torch.Tensor,
        activation_function: nn.Module | None = None,
        layer_idx: int = 0,
        W_skip: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        (n_features,), (d_model,) = b_enc.shape, b_dec.shape
        for name, t, shape in (
            ("W_enc", W_enc, (n_features, d_model)),
            ("W_dec", W_dec, (n_features, d_model)),
            ("W_skip", W_skip, (d_model, d_model)),
        ):
            if t is not None and tuple(t.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
        self.d_model = d_model
        self.d_transcoder = n_features
        self.layer_idx = layer_idx
        self.b_enc = _frozen(b_enc)
        self.b_dec = _frozen(b_dec)
        self._lazy_enc = W_enc if isinstance(W_enc, LazyTensor) else None
        self._lazy_dec = W_dec if isinstance(W_dec, LazyTensor) else None
        if self._lazy_enc is None:
            self.W_enc = _frozen(W_enc)
        if self._lazy_dec is None:
            self.W_dec = _frozen(W_dec)
        self.W_skip = None if W_skip is None else _frozen(W_skip)
        self.activation_function = activation_function or ReLU()

    def __getattr__(self, name: str) -> Any:
        lazy = self.__dict__.get(f"_lazy_{name[2:]}") if name in ("W_enc", "W_dec") else None
        if lazy is not None:
            return lazy.read(device=self.b_enc.device, dtype=self.b_enc.dtype)
        return super().__getattr__(name)

    # ------------------------------------------------------------------------------- weights

    @property
    def lazy_encoder(self) -> bool:
        return self._lazy_enc is not None

    @property
    def lazy_decoder(self) -> bool:
        return self._lazy_dec is not None

    @property
    def lazy_sources(self) -> list[LazyTensor]:
        """The files this transcoder reads on demand."""
        return [t for t in (self._lazy_enc, self._lazy_dec) if t is not None]

    def encoder_weight(self) -> torch.Tensor:
        """``W_enc``, ``(F, D)``."""
        return self.W_enc

    def decoder_weight(self) -> torch.Tensor:
        """``W_dec``, ``(F, D)``."""
        return self.W_dec

    def decoder_rows(self, feat_ids: torch.Tensor) -> torch.Tensor:
        """Unscaled decoder rows ``W_dec[feat_ids]``: ``(n,)`` → ``(n, D)``."""
        if self._lazy_dec is not None:
            return self._lazy_dec.read_rows(
                feat_ids, device=self.b_dec.device, dtype=self.b_dec.dtype
            )
        return self.W_dec[feat_ids.to(self.W_dec.device)]

    # ----------------------------------------------------------------------------- the maths

    def encode(self, x: torch.Tensor, apply_activation_function: bool = True) -> torch.Tensor:
        """``x (..., D)`` → activations (or pre-activations) ``(..., F)``."""
        z = F.linear(x.to(self.b_enc.dtype), self.encoder_weight(), self.b_enc)
        return self.activation_function(z) if apply_activation_function else z

    def compute_skip(self, x: torch.Tensor) -> torch.Tensor | None:
        """``x @ W_skip.T``, ``(..., D)``, or None without a skip connection."""
        if self.W_skip is None:
            return None
        return x.to(self.W_skip.dtype) @ self.W_skip.T

    def decode(self, acts: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """``acts (..., F)`` (and ``x (..., D)`` for the skip) → reconstruction ``(..., D)``."""
        if self.W_skip is not None and x is None:
            raise ValueError("this transcoder has a skip connection: decode needs x")
        acts = acts.to(self.b_dec.dtype)
        if self._lazy_dec is None:
            out = acts @ self.W_dec + self.b_dec
        else:
            # Only the decoder rows of features active somewhere are read from disk.
            active = (acts != 0).reshape(-1, acts.shape[-1]).any(0).nonzero().squeeze(-1)
            out = acts[..., active] @ self.decoder_rows(active) + self.b_dec
        skip = self.compute_skip(x) if x is not None else None
        return out if skip is None else out + skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (..., D)`` → reconstruction ``(..., D)``."""
        return self.decode(self.encode(x), x)

    # ----------------------------------------------------------------------- sparse helpers

    def encode_sparse(
        self, x: torch.Tensor, zero_positions: slice = slice(0, 1)
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Active features of ``x (T, D)`` with positions ``zero_positions`` zeroed.

        Returns ``(pos (n,), feat (n,), values (n,), encoder_rows (n, D))`` in row-major
        (position, feature) order; the encoder is read once.
        """
        W_enc = self.encoder_weight()
        acts = self.activation_function(F.linear(x.to(W_enc.dtype), W_enc, self.b_enc))
        acts[zero_positions] = 0
        pos, feat = acts.nonzero(as_tuple=True)
        return pos, feat, acts[pos, feat], W_enc[feat]

    def decode_sparse(
        self,
        pos: torch.Tensor,
        feat: torch.Tensor,
        values: torch.Tensor,
        x: torch.Tensor | None,
        n_positions: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction from sparse activations.

        Returns ``(reconstruction (T, D), scaled_decoders (n, D))`` where row ``i`` of the
        latter is ``values[i] · W_dec[feat[i]]`` and ``T = n_positions``.
        """
        scaled = self.decoder_rows(feat) * values[:, None]
        out = torch.zeros(n_positions, self.d_model, device=scaled.device, dtype=scaled.dtype)
        out.index_add_(0, pos, scaled)
        out += self.b_dec
        if self.W_skip is not None:
            if x is None:
                raise ValueError("this transcoder has a skip connection: decode needs x")
            out += self.compute_skip(x)
        return out, scaled


# circuit-tracer's name for the same class.
SingleLayerTranscoder = PerLayerTranscoder
