"""Batched forward passes of a :class:`~ct_engine.replacement.ReplacementModel` for the metrics.

Prompts of different lengths are right-padded into one ``(B, T)`` batch. Attention is causal,
so padding after a prompt never changes its positions; padded positions are masked out of
every statistic. Position 0 (the leading special token, BOS) is also excluded everywhere, as
the attribution engine zeroes it; every intervention below leaves position 0's real MLP output
in place and replaces positions ``≥ 1`` only.

Runs (all under ``torch.no_grad``), with ``L`` layers and ``D = d_model``:

* :meth:`ForwardRunner.clean`: logits ``(B, T, V)``, encoder inputs and MLP outputs at the
  transcoders' hooks, ``(L, B, T, D)`` each;
* :meth:`ForwardRunner.patched`: chosen layers' MLP outputs replaced by given tensors or
  zero-ablated (single-layer splices, zero-ablations);
* :meth:`ForwardRunner.replaced`: every MLP replaced by its transcoder reconstruction at once,
  without error terms, computed layer by layer from the encoder inputs *of this run* (see
  :mod:`ct_engine.metrics.layerwise`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ct_engine.metrics.layerwise import LayerwiseDecoder, output_biases
from ct_engine.replacement.edits import ForwardEdits, Recorder


@dataclass
class Batch:
    """Right-padded prompts.

    Attributes:
        tokens: ``(B, T)`` token ids.
        lengths: ``(B,)`` real lengths.
        eval_mask: ``(B, T)`` bool, positions ``1 ≤ t < length``: the tokens of every statistic.
        next_mask: ``(B, T)`` bool, positions ``1 ≤ t < length − 1``: positions that predict a
            next token (cross-entropy).
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    eval_mask: torch.Tensor
    next_mask: torch.Tensor

    @property
    def next_targets(self) -> torch.Tensor:
        """``(n,)`` the next-token ids of the ``next_mask`` positions (row-major order)."""
        shifted = torch.roll(self.tokens, -1, dims=1)
        return shifted[self.next_mask]


def make_batch(sequences: Sequence[torch.Tensor], pad_id: int = 0) -> Batch:
    """Right-pad 1-D token tensors (each starting with BOS) into a :class:`Batch`."""
    lengths = torch.tensor([len(s) for s in sequences])
    T = int(lengths.max())
    device = sequences[0].device
    tokens = torch.full((len(sequences), T), pad_id, dtype=torch.long, device=device)
    for i, s in enumerate(sequences):
        tokens[i, : len(s)] = s
    pos = torch.arange(T)[None]
    eval_mask = (pos >= 1) & (pos < lengths[:, None])
    next_mask = (pos >= 1) & (pos < lengths[:, None] - 1)
    return Batch(tokens, lengths, eval_mask.to(device), next_mask.to(device))


@dataclass
class CleanActivations:
    """``logits (B, T, V)``, ``inputs (L, B, T, D)`` and MLP ``outputs (L, B, T, D)``."""

    logits: torch.Tensor
    inputs: torch.Tensor
    outputs: torch.Tensor


class ForwardRunner:
    """Runs a replacement model with the edits each metric needs (through the backend's
    :meth:`edited_run`, so every backend supports the metrics)."""

    def __init__(self, model):
        self.model = model
        self.transcoders = model.transcoders
        self.n_layers = model.n_layers
        self._biases: torch.Tensor | None = None

    def _forward(self, tokens: torch.Tensor, edits: ForwardEdits) -> torch.Tensor:
        return self.model.impl.edited_run(tokens, edits)

    def clean(self, tokens: torch.Tensor) -> CleanActivations:
        """The unmodified model on ``tokens (B, T)``."""
        record = Recorder(self.n_layers)
        logits = self._forward(tokens, record)
        return CleanActivations(logits, torch.stack(record.inputs), torch.stack(record.outputs))

    def patched(
        self, tokens: torch.Tensor, outputs: dict[int, torch.Tensor | None]
    ) -> torch.Tensor:
        """Logits ``(B, T, V)`` with the MLP output of each layer in ``outputs`` set, at
        positions ``≥ 1``, to the given ``(B, T, D)`` tensor (``None``: zero-ablated)."""
        return self._forward(tokens, _SetOutputs(outputs))

    def replaced(
        self, tokens: torch.Tensor, return_inputs: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, T, V)`` with every MLP output at positions ``≥ 1`` replaced by the
        transcoders' reconstruction from this run's own encoder inputs (no error terms).

        With ``return_inputs``, also those encoder inputs, ``(L, B, T, D)``.
        """
        if self._biases is None:
            self._biases = output_biases(self.transcoders)
        edits = _Replace(LayerwiseDecoder(self.transcoders, self._biases), self.n_layers)
        logits = self._forward(tokens, edits)
        return (logits, torch.stack(edits.inputs)) if return_inputs else logits


class _SetOutputs(ForwardEdits):
    def __init__(self, outputs: dict[int, torch.Tensor | None]):
        self.outputs = outputs

    def feature_output(self, layer: int, y: torch.Tensor) -> torch.Tensor:
        if layer not in self.outputs:
            return y
        output = self.outputs[layer]
        y = y.clone()
        y[:, 1:] = 0 if output is None else output[:, 1:].to(y.dtype)
        return y


class _Replace(ForwardEdits):
    def __init__(self, decoder: LayerwiseDecoder, n_layers: int):
        self.decoder = decoder
        self.inputs: list = [None] * n_layers

    def feature_input(self, layer: int, x: torch.Tensor) -> None:
        self.inputs[layer] = x.detach()
        self.decoder.encode_and_add(layer, x)

    def feature_output(self, layer: int, y: torch.Tensor) -> torch.Tensor:
        y = y.clone()
        y[:, 1:] = self.decoder.output(layer, self.inputs[layer])[:, 1:].to(y.dtype)
        return y
