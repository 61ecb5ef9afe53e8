"""Edits to a no-grad forward pass: the one mechanism behind interventions and the oracle.

A backend runs the model and calls a :class:`ForwardEdits` object at fixed sites, in forward
order: the embedding output, then for each layer the transcoder input hook and the MLP output
hook, then the final-norm output. It can also pin attention patterns and norm scales to the
values of a clean run (:class:`Pins`).

:class:`Patch` is the edit that both the finite-difference oracle and feature interventions
use: it records the transcoder inputs, pins the MLP outputs of some layers to their clean values
(keeping the linear skip path live), and adds deltas to MLP outputs and the embedding.

Shapes: ``B`` batch (always 1 for patches), ``T`` positions, ``L`` layers, ``D`` d_model.
Clean values may cover fewer positions than the forward (``Tc ≤ T``): during generation the
prompt's positions are pinned and new positions run free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from ct_engine.replacement.backend import FreezeState


class ForwardEdits:
    """Callbacks a backend calls during one forward pass. The defaults change nothing."""

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """``t (B, T, D)``: what the embedding writes into the residual stream."""
        return t

    def feature_input(self, layer: int, x: torch.Tensor) -> None:
        """``x (B, T, D)``: the transcoder input of ``layer`` (read only)."""

    def feature_output(self, layer: int, y: torch.Tensor) -> torch.Tensor:
        """``y (B, T, D)``: the MLP output of ``layer`` at the transcoder's output hook."""
        return y

    def final_residual(self, t: torch.Tensor) -> None:
        """``t (B, T, D)``: the final-norm output, just before the unembedding (read only)."""


class Recorder(ForwardEdits):
    """Records every layer's transcoder input and MLP output, ``(B, T, D)`` each (detached)."""

    def __init__(self, n_layers: int):
        self.inputs: list[torch.Tensor | None] = [None] * n_layers
        self.outputs: list[torch.Tensor | None] = [None] * n_layers

    def feature_input(self, layer: int, x: torch.Tensor) -> None:
        self.inputs[layer] = x.detach()

    def feature_output(self, layer: int, y: torch.Tensor) -> torch.Tensor:
        self.outputs[layer] = y.detach()
        return y


@dataclass
class Pins:
    """Which clean values a forward pins: attention patterns and/or every norm scale.

    Only the leading positions that the clean run covered are pinned (see module doc).
    """

    state: FreezeState
    attention: bool = True
    norms: bool = False

    def values(self) -> dict[str, torch.Tensor]:
        """Site name -> clean value for every site these pins fix."""
        pinned = dict(self.state.attention) if self.attention else {}
        if self.norms:
            pinned.update(self.state.norm_scales)
        return pinned


def pin_prefix(current: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``current`` with its leading block replaced by ``clean``.

    ``clean`` has the same number of dimensions and is no larger along any of them (an
    attention pattern ``(1, H, Tc, Tc)`` inside ``(1, H, T, T)``, a norm scale ``(1, Tc, 1)``
    inside ``(1, T, 1)``). Causality makes this exact: positions ``< Tc`` never see later ones.
    """
    if current.shape == clean.shape:
        return clean
    out = current.clone()
    out[tuple(slice(0, n) for n in clean.shape)] = clean
    return out


class Patch(ForwardEdits):
    """Pin MLP outputs of ``frozen_layers`` and add deltas; record transcoder inputs.

    Args:
        transcoders: the model's transcoders (for the skip path).
        state: clean values from ``capture_freeze_state``; needed when ``frozen_layers``.
        frozen_layers: layers whose MLP outputs are pinned to the clean value plus the change
            of the skip term, ``skip(x) − skip(x_clean)`` (on the clean run's positions).
        output_deltas: ``(L, T, D)`` added to each layer's MLP output.
        embed_delta: ``(T, D)`` added to the embedding output.

    After the run: ``feature_inputs`` holds ``L`` tensors ``(T, D)`` and ``final`` the
    final-norm output ``(T, D)``.
    """

    def __init__(
        self,
        transcoders,
        state: FreezeState | None = None,
        *,
        frozen_layers: Iterable[int] = (),
        output_deltas: torch.Tensor | None = None,
        embed_delta: torch.Tensor | None = None,
    ):
        if frozen_layers and state is None:
            raise ValueError("freezing MLP outputs needs the clean FreezeState")
        self.transcoders = transcoders
        self.state = state
        self.frozen_layers = set(frozen_layers)
        self.output_deltas = output_deltas
        self.embed_delta = embed_delta
        self.feature_inputs: list[torch.Tensor | None] = [None] * transcoders.n_layers
        self.final: torch.Tensor | None = None

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        if self.embed_delta is None:
            return t
        return t + self.embed_delta.to(t.dtype)

    def feature_input(self, layer: int, x: torch.Tensor) -> None:
        self.feature_inputs[layer] = x[0]

    def feature_output(self, layer: int, y: torch.Tensor) -> torch.Tensor:
        if layer in self.frozen_layers:
            y = self._frozen_output(layer, y)
        if self.output_deltas is not None:
            y = y + self.output_deltas[layer].to(y.dtype)
        return y

    def final_residual(self, t: torch.Tensor) -> None:
        self.final = t[0]

    def _frozen_output(self, layer: int, y: torch.Tensor) -> torch.Tensor:
        """Clean MLP output on the clean positions, plus the live skip path's change."""
        clean = self.state.feature_outputs[layer]
        n = clean.shape[0]
        frozen = clean.to(y.dtype)
        skip_now = self.transcoders.compute_skip(layer, self.feature_inputs[layer][:n])
        if skip_now is not None:
            skip_clean = self.transcoders.compute_skip(layer, self.state.feature_inputs[layer])
            frozen = frozen + (skip_now - skip_clean).to(y.dtype)
        return pin_prefix(y, frozen[None])
