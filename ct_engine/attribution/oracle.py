"""The finite-difference oracle: every edge equals an effect in the frozen model.

Freeze the model completely (attention patterns, norm scales and MLP outputs pinned to their
clean values; only the transcoder skip path still propagates). The model is then linear in the
node vectors, so adding a source's vector once more at its write site changes every target
readout by exactly that source's adjacency column: a feature's pre-activation (minus nothing:
the bias cancels in the difference) and a target's demeaned logit.

:func:`check_edges` measures those changes with real forward passes, independently of the
backward passes that built the graph, and returns them next to the graph's prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ct_engine.attribution.context import build_context
from ct_engine.replacement.edits import Patch, Pins


@dataclass
class ColumnCheck:
    """Observed and predicted effects of doubling one source node.

    Attributes:
        node: the source's node index in the graph.
        kind: ``"feature"``, ``"error"`` or ``"token"``.
        observed_features: ``(S,)`` change of each selected feature's pre-activation.
        predicted_features: ``(S,)`` ``adjacency[:S, node]``.
        observed_logits: ``(K,)`` change of each target's readout.
        predicted_logits: ``(K,)`` ``adjacency[-K:, node]``.
    """

    node: int
    kind: str
    observed_features: torch.Tensor
    predicted_features: torch.Tensor
    observed_logits: torch.Tensor
    predicted_logits: torch.Tensor


def _readouts(
    model, graph, patch: Patch, logits, layers, positions, feats
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-activations ``(S,)`` of the selected features and target readouts ``(K,)``."""
    tc = model.transcoders
    pre = torch.stack(
        [
            tc.encode_layer(patch.feature_inputs[layer], layer, apply_activation_function=False)
            for layer in range(model.n_layers)
        ]
    )
    features = pre[layers, positions, feats].double()
    last = logits[-1].double()
    vocab = model.d_vocab
    logits = []
    for target in graph.logit_targets:
        if target.vocab_idx < vocab:
            logits.append(last[target.vocab_idx] - last.mean())
        else:
            logits.append(torch.tensor(float("nan"), dtype=torch.float64))
    return features, torch.stack(logits)


def check_edges(
    model, graph, *, feature_nodes: list[int] | None = None, n_features: int = 50, seed: int = 0
) -> list[ColumnCheck]:
    """Check every error and token column at positions past the zeroed ones, and features.

    Args:
        model: the :class:`~ct_engine.ReplacementModel` that built ``graph``.
        graph: a graph from :func:`~ct_engine.attribute`.
        feature_nodes: feature node indices to check; by default ``n_features`` random ones.
        seed: for the random choice of features.

    Custom targets (virtual ids) are checked through their direction at the final-norm
    output; real tokens through the demeaned logits with any final softcap disabled.
    """
    impl = model.impl
    tokens = graph.input_tokens.to(model.device)
    ctx = build_context(model, tokens)
    state = impl.capture_freeze_state(tokens)
    L, T, S = model.n_layers, len(tokens), graph.n_features
    frozen = range(L)
    active = graph.active_features[graph.selected_features].to(model.device)
    layers, positions, feats = active.unbind(1)
    custom = [(k, t) for k, t in enumerate(graph.logit_targets) if t.vocab_idx >= model.d_vocab]
    custom_vecs = graph.meta.get("custom_target_vectors") if custom else None

    def measure(output_deltas=None, embed_delta=None):
        patch = Patch(
            model.transcoders,
            state,
            frozen_layers=frozen,
            output_deltas=output_deltas,
            embed_delta=embed_delta,
        )
        run_logits = impl.edited_run(tokens[None], patch, Pins(state, attention=True, norms=True))
        features, logits = _readouts(model, graph, patch, run_logits[0], layers, positions, feats)
        if custom:
            final = patch.final[-1].double()
            for k, _ in custom:
                logits[k] = final @ torch.as_tensor(custom_vecs[k], dtype=torch.float64)
        return features, logits

    with model.zero_softcap(), torch.no_grad():
        base_f, base_l = measure()
        adjacency = graph.dense_adjacency()
        checks = []

        def record(node, kind, observed):
            obs_f, obs_l = observed
            checks.append(
                ColumnCheck(
                    node=node,
                    kind=kind,
                    observed_features=(obs_f - base_f).float().cpu(),
                    predicted_features=adjacency[:S, node],
                    observed_logits=(obs_l - base_l).float().cpu(),
                    predicted_logits=adjacency[-len(graph.logit_targets) :, node],
                )
            )

        zero_upto = model.zero_positions.stop or 1
        for layer in range(L):
            for pos in range(zero_upto, T):
                deltas = torch.zeros_like(state.feature_outputs)
                deltas[layer, pos] = ctx.error_vectors[layer, pos]
                record(graph.error_node(layer, pos), "error", measure(output_deltas=deltas))
        for pos in range(zero_upto, T):
            delta = torch.zeros_like(ctx.token_vectors)
            delta[pos] = ctx.token_vectors[pos]
            record(graph.token_node(pos), "token", measure(embed_delta=delta))
        if feature_nodes is None:
            g = torch.Generator().manual_seed(seed)
            order = torch.randperm(S, generator=g)[: min(n_features, S)]
            feature_nodes = sorted(order.tolist())
        tc = model.transcoders
        for node in feature_nodes:
            idx = int(graph.selected_features[node])
            layer, pos, feat = (int(v) for v in graph.active_features[idx])
            act = graph.activation_values[idx].to(state.feature_outputs)
            vec = tc.decoder_vectors(layer, torch.tensor([feat], device=model.device))[0]
            deltas = torch.zeros_like(state.feature_outputs)
            if vec.ndim == 1:
                deltas[layer, pos] = act * vec
            else:  # a cross-layer feature writes to every layer from its own on
                deltas[layer:, pos] = act * vec
            record(node, "feature", measure(output_deltas=deltas))
    return checks
