"""``attribute``: build the attribution graph of a prompt (spec §4).

Phases, each timed into ``Graph.timings``:

0. ``precompute``: clean forward; active features, encoder/decoder rows, error and token
   vectors.
1. ``forward``: one forward of ``B`` prompt copies that records the frozen autograd graph.
2. ``targets``: the logit targets.
3. ``logit_rows``: one row per target.
4. ``feature_rows``: one row per feature, chosen greedily by partial influence when
   ``max_feature_nodes`` caps them (refreshed every ``update_interval`` batches).
5. ``package``: the dense ``(N, N)`` adjacency in node order
   ``[selected features | errors | tokens | targets]``, rows = targets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from ct_engine.attribution.context import AttributionContext, build_context
from ct_engine.attribution.rows import RowComputer
from ct_engine.attribution.targets import AttributionTargets, TargetSpec
from ct_engine.graph import Graph, compute_partial_influences

OFFLOAD_MODES = (None, "cpu", "disk")


def attribute(
    prompt,
    model,
    *,
    attribution_targets: TargetSpec = None,
    max_n_logits: int = 10,
    desired_logit_prob: float = 0.95,
    batch_size: int = 256,
    max_feature_nodes: int | None = None,
    offload: str | None = None,
    verbose: bool = False,
    update_interval: int = 4,
) -> Graph:
    """Compute the attribution graph of ``prompt`` under ``model``'s transcoders.

    Args:
        prompt: text, or a 1-D sequence of token ids (a special token is prepended when the
            first token is not one).
        model: a :class:`~ct_engine.ReplacementModel`.
        attribution_targets: ``None`` (salient logits), token ids, single-token strings, or
            custom targets; see :mod:`ct_engine.attribution.targets`.
        max_n_logits, desired_logit_prob: the salient-logit rule.
        batch_size: targets per backward pass (prompt copies in the frozen forward).
        max_feature_nodes: keep at most this many features (greedy by influence); ``None``
            keeps every active feature.
        offload: ``None``, ``"cpu"`` or ``"disk"``: move transcoder weights off the
            accelerator once their vectors are extracted (a no-op when the model is on CPU).
        verbose: show a progress bar and print phase timings.
        update_interval: backward batches between refreshes of the influence ranking.

    Returns:
        A :class:`~ct_engine.Graph`.

    Raises:
        ValueError: an empty or too-long prompt, bad targets, ``batch_size < 1`` and other
            out-of-range arguments.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if update_interval < 1:
        raise ValueError(f"update_interval must be >= 1, got {update_interval}")
    if max_feature_nodes is not None and max_feature_nodes < 0:
        raise ValueError(f"max_feature_nodes must be >= 0 or None, got {max_feature_nodes}")
    if offload not in OFFLOAD_MODES:
        raise ValueError(f"offload must be one of {OFFLOAD_MODES}, got {offload!r}")

    timings: dict[str, float] = {}
    tokens = model.ensure_tokenized(prompt)
    with _timed(timings, "precompute"), torch.no_grad():
        ctx = build_context(model, tokens)
    with _timed(timings, "targets"):
        targets = AttributionTargets.build(
            attribution_targets,
            ctx.logits[-1],
            model.impl.unembedding,
            model.tokenizer,
            max_n_logits=max_n_logits,
            desired_logit_prob=desired_logit_prob,
        )
    n_act = ctx.n_features
    n_rows = n_act if max_feature_nodes is None else min(max_feature_nodes, n_act)
    # A smaller frozen batch when fewer rows are needed: memory and time scale with it.
    batch = min(batch_size, max(len(targets), n_rows, 1))
    with _timed(timings, "forward"):
        frozen = model.impl.frozen_run(tokens[None].expand(batch, -1))
    with _offloaded(model, offload):
        rows = RowComputer(ctx, frozen)
        graph = _run_phases(model, ctx, targets, rows, n_rows, update_interval, verbose, timings)
    if verbose:
        summary = ", ".join(f"{k} {v:.2f}s" for k, v in graph.timings.items())
        print(f"attribution: {n_act} active features, {graph.n_features} kept; {summary}")
    return graph


def _run_phases(
    model,
    ctx: AttributionContext,
    targets: AttributionTargets,
    rows: RowComputer,
    n_rows: int,
    update_interval: int,
    verbose: bool,
    timings: dict[str, float],
) -> Graph:
    L, T, K = ctx.n_layers, ctx.n_pos, len(targets)
    n_act, B = ctx.n_features, rows.batch_size
    device = ctx.error_vectors.device
    comps = ctx.components
    feat_layers, feat_pos = comps.activation_matrix.indices()[:2]
    uncapped = n_rows == n_act
    n_total = ctx.row_size + K

    # Rows are stored with all N_total columns so that the partial-influence ranking sees
    # circuit-tracer's node layout; the K logit columns stay zero.
    edge_rows = torch.zeros(K + n_rows, n_total, dtype=torch.float32)
    row_nodes = torch.empty(K + n_rows, dtype=torch.long)

    with _timed(timings, "logit_rows"):
        for start in range(0, K, B):
            stop = min(start + B, K)
            n = stop - start
            edge_rows[start:stop, : ctx.row_size] = rows.compute(
                torch.full((n,), L, device=device),
                torch.full((n,), T - 1, device=device),
                targets.logit_vectors[start:stop],
            ).cpu()
            row_nodes[start:stop] = ctx.row_size + torch.arange(start, stop)

    visited = torch.zeros(n_act, dtype=torch.bool)
    filled = K
    with _timed(timings, "feature_rows"):
        progress = tqdm(total=n_rows, desc="feature rows", disable=not verbose, unit="row")
        while filled - K < n_rows:
            remaining = n_rows - (filled - K)
            if uncapped:
                pending = torch.arange(n_act)
            else:
                influence = compute_partial_influences(
                    edge_rows[:filled], targets.logit_probabilities, row_nodes[:filled]
                )
                ranked = torch.argsort(influence[:n_act], descending=True, stable=True)
                pending = ranked[~visited[ranked]][: min(update_interval * B, remaining)]
            for chunk in torch.split(pending, B):
                idx = chunk.to(device)
                block = rows.compute(feat_layers[idx], feat_pos[idx], comps.encoder_vecs[idx])
                edge_rows[filled : filled + len(chunk), : ctx.row_size] = block.cpu()
                row_nodes[filled : filled + len(chunk)] = chunk
                visited[chunk] = True
                filled += len(chunk)
                progress.update(len(chunk))
        progress.close()

    with _timed(timings, "package"):
        selected = visited.nonzero().squeeze(1)
        feature_rows = edge_rows[K:][torch.argsort(row_nodes[K:])]
        columns = torch.cat([selected, torch.arange(n_act, ctx.row_size)])
        S, n_src = len(selected), len(columns)
        N = n_src + K
        adjacency = torch.zeros(N, N, dtype=torch.float32)
        if uncapped:  # every feature kept: columns are already in node order
            adjacency[:S, :n_src] = feature_rows[:, :n_src]
            adjacency[n_src:, :n_src] = edge_rows[:K, :n_src]
        else:
            adjacency[:S, :n_src] = feature_rows[:, columns]
            adjacency[n_src:, :n_src] = edge_rows[:K, columns]
        del edge_rows, feature_rows

    return Graph(
        input_string=model.tokenizer.decode(ctx.tokens.tolist()),
        input_tokens=ctx.tokens.cpu(),
        active_features=comps.activation_matrix.indices().T.cpu(),
        activation_values=comps.activation_matrix.values().cpu(),
        selected_features=selected,
        adjacency_matrix=adjacency,
        logit_targets=targets.logit_targets,
        logit_probabilities=targets.logit_probabilities.cpu(),
        vocab_size=model.d_vocab,
        cfg=model.cfg,
        scan=model.scan,
        timings=dict(timings),
        meta=_target_meta(targets, model.d_vocab),
    )


def _target_meta(targets: AttributionTargets, vocab: int) -> dict:
    """Custom target directions, kept so the graph can be re-checked or re-run later."""
    if all(t.vocab_idx < vocab for t in targets.logit_targets):
        return {}
    vectors = [
        vec.float().cpu().tolist() if t.vocab_idx >= vocab else None
        for t, vec in zip(targets.logit_targets, targets.logit_vectors, strict=True)
    ]
    return {"custom_target_vectors": vectors}


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start


@contextmanager
def _offloaded(model, mode: str | None) -> Iterator[None]:
    """Move the transcoders off the accelerator while rows are computed.

    Everything attribution needs from them (encoder, decoder and error vectors, and the skip
    path, already recorded in the frozen graph) has been extracted by then. On a CPU model
    there is nothing to free, so this is a no-op.
    """
    tc = model.transcoders
    device = model.device
    if mode is None or device.type == "cpu":
        yield
        return
    tc.to("cpu")
    try:
        yield
    finally:
        tc.to(device)
