"""Feature activations and feature interventions.

Shapes: ``L`` layers, ``T`` positions, ``F`` features per layer, ``D`` d_model, ``V`` vocabulary.

An intervention sets features to absolute activations. At each intervened layer's MLP output
the difference ``Δ = value − current activation`` is turned into ``Σ Δ·W_dec[f]`` and added to
that layer's output (per-layer transcoders) or to the output of every layer from it on
(cross-layer transcoders, one decoder slot per output layer). The intervened feature's own
recorded activation is not overwritten: the returned activations are what each layer's
transcoder computes from its (possibly changed) input.

Which "current activation":

* ``constrained_layers`` given: the clean run's. MLP outputs of those layers are pinned to their
  clean values (the linear skip path stays live), attention patterns are pinned, and when the
  range covers every layer all norm scales are pinned too. The model is then the linearized
  replacement model, and changes are exactly the attribution graph's edges.
* otherwise: the activation computed in the same, already-intervened forward pass, so effects
  of earlier-layer interventions propagate. ``freeze_attention`` pins attention patterns.

Freezing happens only when the intervention list is non-empty (as in circuit-tracer).

Unlike circuit-tracer, intervention inputs are tokenized exactly as for attribution
(:meth:`~ct_engine.ReplacementModel.ensure_tokenized`), so positions always match a graph's
positions, also for tokenizers without a BOS token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from ct_engine.interventions.spec import Intervention, LayerInterventions, resolve_interventions
from ct_engine.replacement.backend import FreezeState
from ct_engine.replacement.edits import Patch, Pins, Recorder


class InterventionPatch(Patch):
    """A :class:`Patch` whose output deltas come from feature interventions.

    Args:
        transcoders: the model's transcoders.
        plan: resolved interventions, layer -> :class:`LayerInterventions`.
        n_pos: ``T`` of this forward.
        state: clean values; required with ``constrained_layers``.
        constrained_layers: layers whose MLP outputs are pinned; interventions at positions the
            clean run covered measure ``Δ`` against the clean activations.
        clean_acts: layer -> clean post-activation activations ``(Tc, F)`` for the intervened
            layers (with ``constrained_layers``).
    """

    def __init__(
        self,
        transcoders,
        plan: dict[int, LayerInterventions],
        *,
        n_pos: int,
        state: FreezeState | None = None,
        constrained_layers: Iterable[int] = (),
        clean_acts: dict[int, torch.Tensor] | None = None,
    ):
        L, D = transcoders.n_layers, transcoders.d_model
        deltas = torch.zeros(L, n_pos, D, device=transcoders.device, dtype=transcoders.dtype)
        super().__init__(transcoders, state, frozen_layers=constrained_layers, output_deltas=deltas)
        self.plan = plan
        self.clean_acts = clean_acts

    def feature_output(self, layer: int, y: torch.Tensor) -> torch.Tensor:
        # Order at each output hook: freeze, compute this layer's deltas, apply.
        if layer in self.plan:
            self._add_decoder_deltas(layer, self.plan[layer])
        return super().feature_output(layer, y)

    def _add_decoder_deltas(self, layer: int, entries: LayerInterventions) -> None:
        tc = self.transcoders
        device, dtype = tc.device, tc.dtype
        pos = entries.positions.to(device)
        feat = entries.features.to(device)
        delta = entries.values.to(device=device, dtype=dtype) - self._current(layer, pos, feat)
        vecs = tc.decoder_vectors(layer, feat)  # (n, D) or (n, L − layer, D)
        if vecs.ndim == 2:
            self.output_deltas[layer].index_add_(0, pos, delta[:, None] * vecs)
        else:  # a cross-layer feature writes to its own layer and every later one
            for offset in range(vecs.shape[1]):
                self.output_deltas[layer + offset].index_add_(
                    0, pos, delta[:, None] * vecs[:, offset]
                )

    def _current(self, layer: int, pos: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """``(n,)`` activations that ``Δ`` is measured against."""
        clean = self.clean_acts.get(layer) if self.clean_acts is not None else None
        if clean is not None and bool((pos < clean.shape[0]).all()):
            return clean[pos, feat]
        acts = self.transcoders.encode_layer(self.feature_inputs[layer], layer)
        current = acts[pos, feat]
        if clean is not None:  # generation: the prompt's positions keep the clean reference
            in_clean = pos < clean.shape[0]
            current = torch.where(in_clean, clean[pos.clamp(max=clean.shape[0] - 1), feat], current)
        return current


def encode_activations(
    model,
    feature_inputs: Sequence[torch.Tensor],
    *,
    apply_activation_function: bool = True,
    sparse: bool = False,
) -> torch.Tensor:
    """Activations ``(L, T, F)`` (or ``(B, L, T, F)``) from transcoder inputs per layer.

    Args:
        feature_inputs: ``L`` tensors ``(T, D)`` or ``(B, T, D)``.

    The zeroed positions (``model.zero_positions``) of every sequence are set to zero.
    """
    tc = model.transcoders
    acts = torch.stack(
        [
            tc.encode_layer(x, layer, apply_activation_function=apply_activation_function)
            for layer, x in enumerate(feature_inputs)
        ],
        dim=-3,
    )
    acts[..., model.zero_positions, :] = 0
    return acts.to_sparse().coalesce() if sparse else acts


def tokens_of(model, inputs, *, allow_batch: bool) -> torch.Tensor:
    """``(B, T)`` tokens: one sequence, or same-length sequences when ``allow_batch``."""
    if not _is_batch(inputs):
        return model.ensure_tokenized(inputs)[None]
    rows = list(inputs)
    if not allow_batch:
        raise ValueError(
            f"got {len(rows)} sequences: interventions run on one sequence at a time; loop over "
            "the prompts (batched interventions are not supported)"
        )
    tokens = [model.ensure_tokenized(row) for row in rows]
    lengths = sorted({len(t) for t in tokens})
    if len(lengths) > 1:
        raise ValueError(
            f"batched inputs must all have the same number of tokens, got lengths {lengths}; "
            "run them one at a time instead"
        )
    return torch.stack(tokens)


def get_activations(
    model, inputs, sparse: bool = False, apply_activation_function: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and transcoder activations of a plain forward pass.

    Args:
        inputs: a prompt (string, 1-D tokens) or a batch of same-length prompts (list of
            strings or token lists, or a ``(B, T)`` tensor).
        sparse: return the activations as a coalesced sparse tensor.
        apply_activation_function: False returns pre-activations (what edges predict).

    Returns:
        logits ``(1, T, V)`` and activations ``(L, T, F)`` for one prompt; ``(B, T, V)`` and
        ``(B, L, T, F)`` for a batch. Position 0 of every sequence is zeroed (unlike
        circuit-tracer issue #67).
    """
    tokens = tokens_of(model, inputs, allow_batch=True)
    recorder = Recorder(model.n_layers)
    logits = model.impl.edited_run(tokens, recorder)
    batched = _is_batch(inputs)
    inputs_per_layer = recorder.inputs if batched else [x[0] for x in recorder.inputs]
    acts = encode_activations(
        model,
        inputs_per_layer,
        apply_activation_function=apply_activation_function,
        sparse=sparse,
    )
    return logits, acts


def _is_batch(inputs) -> bool:
    """A list of sequences (even of one), or a tensor of several rows."""
    if isinstance(inputs, torch.Tensor):
        return inputs.ndim == 2 and inputs.shape[0] > 1
    return isinstance(inputs, (list, tuple)) and bool(inputs) and not isinstance(inputs[0], int)


def check_constrained_layers(
    constrained_layers: Iterable[int] | None, plan: dict[int, LayerInterventions], n_layers: int
) -> list[int] | None:
    """Validate ``constrained_layers``; every intervened layer must lie inside it."""
    if constrained_layers is None:
        return None
    layers = sorted({int(layer) for layer in constrained_layers})
    outside = [layer for layer in layers if not 0 <= layer < n_layers]
    if outside:
        raise ValueError(f"constrained_layers {outside} are out of range [0, {n_layers})")
    loose = [layer for layer in plan if layer not in layers]
    if loose:
        raise ValueError(
            f"interventions at layers {loose} lie outside constrained_layers; widen the range "
            "or drop constrained_layers"
        )
    return layers


def prepare_freezing(
    model,
    tokens: torch.Tensor,
    plan: dict[int, LayerInterventions],
    constrained: list[int] | None,
    freeze_attention: bool,
) -> tuple[FreezeState | None, Pins | None, dict[int, torch.Tensor] | None]:
    """Clean reference values, what to pin, and clean activations of intervened layers."""
    if not plan or not (freeze_attention or constrained):
        return None, None, None
    state = model.impl.capture_freeze_state(tokens)
    covers_all = constrained is not None and set(range(model.n_layers)) <= set(constrained)
    pins = Pins(state, attention=True, norms=covers_all)
    clean_acts = None
    if constrained:
        tc = model.transcoders
        clean_acts = {layer: tc.encode_layer(state.feature_inputs[layer], layer) for layer in plan}
    return state, pins, clean_acts


def feature_intervention(
    model,
    inputs,
    interventions: Sequence[Intervention],
    constrained_layers: Iterable[int] | None = None,
    freeze_attention: bool = True,
    apply_activation_function: bool = True,
    sparse: bool = False,
    return_activations: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the model with features set to given activations (see the module doc).

    Args:
        inputs: one prompt (string or 1-D tokens). Batches raise a ValueError.
        interventions: ``(layer, pos, feature, value)`` tuples (see
            :mod:`ct_engine.interventions.spec`); ``value`` is the absolute activation.
        constrained_layers: e.g. ``range(model.n_layers)`` for direct effects only.
        freeze_attention: pin attention patterns to their clean values.
        apply_activation_function: False returns pre-activations.
        sparse: return activations as a coalesced sparse tensor.
        return_activations: False returns ``None`` for the activations and skips encoding the
            layers that are not intervened on (faster).

    Returns:
        logits ``(1, T, V)`` and activations ``(L, T, F)`` (or None).

    Raises:
        ValueError: a batch, an intervention out of range, or one outside
            ``constrained_layers``.
    """
    tokens = tokens_of(model, inputs, allow_batch=False)[0]
    tc = model.transcoders
    plan = resolve_interventions(
        interventions, n_layers=model.n_layers, n_pos=len(tokens), d_transcoder=tc.d_transcoder
    )
    constrained = check_constrained_layers(constrained_layers, plan, model.n_layers)
    state, pins, clean_acts = prepare_freezing(model, tokens, plan, constrained, freeze_attention)
    patch = InterventionPatch(
        tc,
        plan,
        n_pos=len(tokens),
        state=state,
        constrained_layers=(constrained or []) if plan else [],
        clean_acts=clean_acts,
    )
    logits = model.impl.edited_run(tokens[None], patch, pins)
    if not return_activations:
        return logits, None
    acts = encode_activations(
        model,
        patch.feature_inputs,
        apply_activation_function=apply_activation_function,
        sparse=sparse,
    )
    return logits, acts
