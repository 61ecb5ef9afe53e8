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

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from ct_engine.metrics.layerwise import LayerwiseDecoder, output_biases
from ct_engine.replacement.hooks import block_hook


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
    """Runs a replacement model's bridge with the hooks each metric needs."""

    def __init__(self, model):
        self.model = model
        self.bridge = model.impl.bridge
        self.transcoders = model.transcoders
        L = model.n_layers
        self.n_layers = L
        self.input_hooks = [block_hook(i, self.transcoders.feature_input_hook) for i in range(L)]
        self.output_hooks = [block_hook(i, self.transcoders.feature_output_hook) for i in range(L)]
        self._biases: torch.Tensor | None = None

    def _forward(self, tokens: torch.Tensor, hooks: list) -> torch.Tensor:
        with _quiet(), torch.no_grad(), self.bridge.hooks(fwd_hooks=hooks):
            return self.bridge(tokens, return_type="logits", prepend_bos=False)

    def clean(self, tokens: torch.Tensor) -> CleanActivations:
        """The unmodified model on ``tokens (B, T)``."""
        L = self.n_layers
        inputs: list = [None] * L
        outputs: list = [None] * L
        hooks = [(self.input_hooks[i], _store(inputs, i)) for i in range(L)]
        hooks += [(self.output_hooks[i], _store(outputs, i)) for i in range(L)]
        logits = self._forward(tokens, hooks)
        return CleanActivations(logits, torch.stack(inputs), torch.stack(outputs))

    def patched(
        self, tokens: torch.Tensor, outputs: dict[int, torch.Tensor | None]
    ) -> torch.Tensor:
        """Logits ``(B, T, V)`` with the MLP output of each layer in ``outputs`` set, at
        positions ``≥ 1``, to the given ``(B, T, D)`` tensor (``None``: zero-ablated)."""

        def hook_fn(t, hook, output=None):
            t = t.clone()
            t[:, 1:] = 0 if output is None else output[:, 1:].to(t.dtype)
            return t

        hooks = [
            (self.output_hooks[layer], _bind(hook_fn, output=output))
            for layer, output in outputs.items()
        ]
        return self._forward(tokens, hooks)

    def replaced(
        self, tokens: torch.Tensor, return_inputs: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, T, V)`` with every MLP output at positions ``≥ 1`` replaced by the
        transcoders' reconstruction from this run's own encoder inputs (no error terms).

        With ``return_inputs``, also those encoder inputs, ``(L, B, T, D)``.
        """
        if self._biases is None:
            self._biases = output_biases(self.transcoders)
        decoder = LayerwiseDecoder(self.transcoders, self._biases)
        inputs: list = [None] * self.n_layers

        def read_input(t, hook, layer=None):
            inputs[layer] = t.detach()
            decoder.encode_and_add(layer, t)

        def write_output(t, hook, layer=None):
            t = t.clone()
            t[:, 1:] = decoder.output(layer, inputs[layer])[:, 1:].to(t.dtype)
            return t

        hooks = []
        for i in range(self.n_layers):
            hooks.append((self.input_hooks[i], _bind(read_input, layer=i)))
            hooks.append((self.output_hooks[i], _bind(write_output, layer=i)))
        logits = self._forward(tokens, hooks)
        return (logits, torch.stack(inputs)) if return_inputs else logits


def _bind(fn, **kwargs):
    def hook_fn(t, hook):
        return fn(t, hook, **kwargs)

    return hook_fn


def _store(buffer: list, index: int):
    def hook_fn(t, hook):
        buffer[index] = t.detach()

    return hook_fn


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*hook_scale/hook_normalized.*")
        warnings.filterwarnings("ignore", message=".*center_unembed.*")
        yield
