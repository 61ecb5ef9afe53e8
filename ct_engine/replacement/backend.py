"""What an attribution backend provides, independent of the library that runs the model.

A backend wraps a Hugging Face causal LM and exposes three kinds of forward pass:

* a **clean run** (no gradients) that records, per layer, the transcoder input ``x_l`` and the
  MLP output ``y_l`` at the transcoder's hooks, plus the embeddings and the logits;
* a **frozen run** on a batch of identical prompts that builds the autograd graph of the
  *local replacement model*: attention patterns and every norm scale detached,
  MLP outputs detached except for the transcoder's linear skip path. In that graph every
  target readout is a linear function of the node vectors;
* an **edited run** (no gradients) that calls a
  :class:`~ct_engine.replacement.edits.ForwardEdits` at the embedding, at each layer's
  transcoder input and MLP output, and at the final norm, optionally pinning attention patterns
  and norm scales to a clean run's values. Interventions, generation and the oracle use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


def text_config(config):
    """The decoder's Hugging Face config: ``config.text_config`` for a multimodal model
    (Gemma-3 4B and larger), else ``config`` itself."""
    text = getattr(config, "text_config", None)
    return config if text is None else text


@dataclass
class CleanRun:
    """Activations of one unbatched forward pass.

    Attributes:
        logits: ``(T, V)`` the model's logits (softcap applied where the model has one).
        feature_inputs: ``(L, T, D)`` activations at each layer's feature input hook.
        feature_outputs: ``(L, T, D)`` MLP outputs at each layer's feature output hook.
        embeddings: ``(T, D)`` what the embedding writes into the residual stream (token
            vectors, including any in-module scaling such as Gemma's √D).
        mlp_outputs: ``(L, T, D)`` what each layer's MLP module returned, or ``None`` where
            the backend cannot stand these values in for the modules (see
            :meth:`Backend.frozen_run`).
    """

    logits: torch.Tensor
    feature_inputs: torch.Tensor
    feature_outputs: torch.Tensor
    embeddings: torch.Tensor
    mlp_outputs: torch.Tensor | None = None


@dataclass
class FrozenRun:
    """Autograd graph of the local replacement model for a batch of ``B`` prompt copies.

    Attributes:
        feature_inputs: ``L`` tensors ``(B, T, D)``: readout sites of feature targets.
        feature_outputs: ``L`` tensors ``(B, T, D)``: write sites of features and errors.
        embeddings: ``(B, T, D)``: write site of token nodes (a leaf that requires grad).
        final_residual: ``(B, T, D)``: final-norm output, readout site of logit targets.
    """

    feature_inputs: list[torch.Tensor]
    feature_outputs: list[torch.Tensor]
    embeddings: torch.Tensor
    final_residual: torch.Tensor


@dataclass
class FreezeState:
    """Clean values that a frozen (patched) forward pins.

    Attributes:
        tokens: ``(T,)``.
        attention: site name -> clean attention probabilities ``(1, H, T, T)``.
        norm_scales: site name -> clean norm scale ``(1, T, 1)`` (every norm, final included).
        feature_inputs: ``(L, T, D)`` clean transcoder inputs.
        feature_outputs: ``(L, T, D)`` clean MLP outputs.
        logits: ``(T, V)`` clean logits.
    """

    tokens: torch.Tensor
    attention: dict[str, torch.Tensor]
    norm_scales: dict[str, torch.Tensor]
    feature_inputs: torch.Tensor
    feature_outputs: torch.Tensor
    logits: torch.Tensor


def broadcast_mlp_output(mlp_outputs: torch.Tensor, layer: int, tokens: torch.Tensor):
    """``(B, T, D)`` view of a clean MLP output ``mlp_outputs[layer] (>= T, D)`` for a
    forward of ``tokens (B, T)`` (a prompt prefix reads the leading positions). A copy per
    batch row, as the module's own output was: with a stride-0 view the backward passes got
    slower (about 5% of an uncapped 64-token run)."""
    B, T = tokens.shape
    return mlp_outputs[layer, :T].expand(B, T, -1).contiguous()


class CleanRunMixin:
    """``clean_run`` and ``capture_freeze_state`` from a backend's ``_clean_forward``.

    A backend implements ``_clean_forward(tokens (T,)) -> (CleanRun, pinned)``, where
    ``pinned`` maps each of its ``attention_hooks`` and ``norm_scale_hooks`` to the clean
    value that freezing pins; the forward passes through the same (detaching) sites as the
    frozen run, so both see identical forward values.
    """

    attention_hooks: list[str]
    norm_scale_hooks: list[str]

    def clean_run(self, tokens: torch.Tensor) -> CleanRun:
        """One no-grad forward of ``tokens (T,)``."""
        return self._clean_forward(tokens)[0]

    def capture_freeze_state(self, tokens: torch.Tensor) -> FreezeState:
        """Clean no-grad run of ``tokens (T,)`` recording every value that freezing pins."""
        clean, pinned = self._clean_forward(tokens)
        return FreezeState(
            tokens=tokens,
            attention={name: pinned[name] for name in self.attention_hooks},
            norm_scales={name: pinned[name] for name in self.norm_scale_hooks},
            feature_inputs=clean.feature_inputs,
            feature_outputs=clean.feature_outputs,
            logits=clean.logits,
        )


class Backend(Protocol):
    """The surface of a model backend that attribution and interventions use."""

    name: str
    model: object  # the library's model: a TransformerBridge or an nnsight.NNsight
    n_layers: int
    d_model: int
    d_vocab: int
    n_ctx: int

    def clean_run(self, tokens: torch.Tensor) -> CleanRun: ...

    def frozen_run(
        self, tokens: torch.Tensor, mlp_outputs: torch.Tensor | None = None
    ) -> FrozenRun:
        """Forward ``tokens (B, T)`` building the linearized autograd graph.

        ``mlp_outputs``: a clean run's :attr:`CleanRun.mlp_outputs` of the same prompt (or of
        a longer one it is a prefix of). The MLP modules then do not run: each returns its
        clean output, broadcast over the batch. In the replacement model an MLP's output is a
        constant (gradients pass the MLP only through the transcoder's skip path, which reads
        the feature input hook), and an MLP acts on each position alone, so the graph is the
        same, and the forward skips most of its multiply-adds.
        """
        ...

    def capture_freeze_state(self, tokens: torch.Tensor) -> FreezeState: ...

    def edited_run(self, tokens: torch.Tensor, edits, pins=None) -> torch.Tensor:
        """No-grad forward of ``tokens (B, T)`` calling ``edits`` (a
        :class:`~ct_engine.replacement.edits.ForwardEdits`) at each site and pinning what
        ``pins`` (:class:`~ct_engine.replacement.edits.Pins`) says; returns logits ``(B, T, V)``."""
        ...

    @property
    def unembedding(self) -> torch.Tensor:
        """``(D, V)`` unembedding matrix (logits = final residual @ unembedding)."""
        ...
