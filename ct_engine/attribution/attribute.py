"""``attribute``: build the attribution graph of a prompt.

Phases, each timed into ``Graph.timings``:

0. ``precompute``: clean forward; active features, encoder/decoder rows, error and token
   vectors.
1. ``targets``: the logit targets.
2. ``forward``: a forward of ``B`` prompt copies that records the frozen autograd graph
   (when every feature gets a row, one per prompt prefix: see :func:`prefix_lengths`).
3. ``logit_rows``: one row per target.
4. ``feature_rows``: one row per feature, chosen greedily by partial influence when
   ``max_feature_nodes`` caps them (refreshed every ``update_interval`` batches).
5. ``package`` (capped graphs): keep the chosen features' rows and columns.

The result is an ``(N, N)`` float32 adjacency in node order
``[selected features | errors | tokens | targets]``, rows = targets: dense, or sparse CSR
(``sparse=True``; by default when a dense one would exceed 1 GiB), whose uncapped rows are
written straight into their final sparse form (:mod:`ct_engine.attribution.sparse_rows`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from ct_engine.attribution.context import AttributionContext, build_context
from ct_engine.attribution.memory import check_memory, estimate_memory
from ct_engine.attribution.rows import RowComputer
from ct_engine.attribution.sparse_rows import SPARSE_FROM_BYTES, CsrRows, row_bounds
from ct_engine.attribution.targets import AttributionTargets, TargetSpec
from ct_engine.graph import Graph, compute_partial_influences
from ct_engine.graph.influence import abs_row_sums

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
    sparse: bool | None = None,
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
            accelerator to host memory once their vectors are extracted, and back at the
            end. ``"disk"`` does the same as ``"cpu"`` for now (nothing is written to disk);
            skip transcoders stay on the device; a no-op when the model is on CPU.
        verbose: show a progress bar and print phase timings.
        update_interval: backward batches between refreshes of the influence ranking.
        sparse: return the adjacency as a sparse CSR tensor (float32 values, int32 indices
            below 2³¹ entries) instead of a dense one; ``None``: sparse when the dense
            adjacency would exceed :data:`SPARSE_FROM_BYTES`. Uncapped rows then go straight
            to CSR, so no ``N × N`` buffer is ever allocated (a 256-token uncapped graph:
            5 GiB of nonzero entries instead of a 12 GiB dense matrix).

    Returns:
        A :class:`~ct_engine.Graph`.

    Raises:
        ValueError: an empty or too-long prompt, bad targets, ``batch_size < 1`` and other
            out-of-range arguments; :class:`~ct_engine.attribution.memory.InsufficientMemoryError`
            (a ValueError) when the predicted peak memory exceeds the free memory.
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
    # Stop early, with a suggestion, when the predicted peak does not fit the free memory.
    kwargs = dict(
        batch_size=batch_size, max_feature_nodes=max_feature_nodes, offload=offload, sparse=sparse
    )
    estimate = estimate_memory(
        model, ctx.tokens, **kwargs, n_targets=len(targets), n_active_features=n_act
    )
    check_memory(estimate, verbose=verbose)
    n_rows = n_act if max_feature_nodes is None else min(max_feature_nodes, n_act)
    n_nodes = n_rows + ctx.row_size - n_act + len(targets)
    if sparse is None:
        sparse = n_nodes * n_nodes * 4 > SPARSE_FROM_BYTES
    with _offloaded(model, offload):
        if n_rows == n_act:
            adjacency = _all_rows(model, ctx, targets, batch_size, verbose, timings, sparse)
            selected = torch.arange(n_act)
        else:
            adjacency, selected = _greedy_rows(
                model, ctx, targets, batch_size, n_rows, update_interval, verbose, timings
            )
            if sparse:
                adjacency = adjacency.to_sparse_csr()
    comps = ctx.components
    graph = Graph(
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
    if verbose:
        summary = ", ".join(f"{k} {v:.2f}s" for k, v in graph.timings.items())
        print(f"attribution: {n_act} active features, {graph.n_features} kept; {summary}")
    return graph


def prefix_lengths(n_pos: int) -> list[int]:
    """Prompt prefixes that feature rows are computed on, shortest first.

    A feature at position ``p`` reads only positions ``<= p`` (causal attention), so its row
    can be computed on the prefix ``tokens[:p + 1]``: the backward pass then costs about
    ``(p + 1) / T`` of a full one. Features are bucketed by position into quarters of the
    prompt; each bucket pays one extra forward pass, which is why short prompts use one.
    """
    if n_pos < _MIN_BUCKETED_POS:
        return [n_pos]
    return sorted({math.ceil(n_pos * (i + 1) / _N_BUCKETS) for i in range(_N_BUCKETS)})


_N_BUCKETS = 4
_MIN_BUCKETED_POS = 32


def _frozen_run(model, ctx: AttributionContext, n_pos: int, batch: int):
    """The frozen forward of ``batch`` copies of the prompt's first ``n_pos`` tokens, its
    MLPs standing in with their clean outputs where the backend allows."""
    tokens = ctx.tokens[None, :n_pos].expand(batch, -1)
    return model.impl.frozen_run(tokens, mlp_outputs=ctx.mlp_outputs)


def _logit_rows(rows: RowComputer, ctx: AttributionContext, targets: AttributionTargets):
    """Yield ``(start, stop, rows (n, N_act + (L+1)·T))`` for the targets in batches."""
    L, T, K, B = ctx.n_layers, ctx.n_pos, len(targets), rows.batch_size
    device = ctx.error_vectors.device
    for start in range(0, K, B):
        stop = min(start + B, K)
        n = stop - start
        yield (
            start,
            stop,
            rows.compute(
                torch.full((n,), L, device=device),
                torch.full((n,), T - 1, device=device),
                targets.logit_vectors[start:stop],
            ).cpu(),
        )


def _all_rows(model, ctx, targets, batch_size, verbose, timings, sparse) -> torch.Tensor:
    """Every active feature gets a row: they are written straight into the ``(N, N)``
    adjacency, dense or CSR (features keep their natural order, so a row's columns are
    already in node order), bucketed by position over prompt prefixes
    (:func:`prefix_lengths`)."""
    K, T, n_act = len(targets), ctx.n_pos, ctx.n_features
    n_src = ctx.row_size
    if sparse:
        csr = CsrRows(row_bounds(ctx, K), n_src)
        store = csr.write
    else:
        adjacency = torch.zeros(n_src + K, n_src + K, dtype=torch.float32)

        def store(nodes: torch.Tensor, block: torch.Tensor) -> None:
            adjacency[nodes, :n_src] = block.cpu()

    comps = ctx.components
    feat_layers, feat_pos = comps.activation_matrix.indices()[:2]
    progress = tqdm(total=n_act, desc="feature rows", disable=not verbose, unit="row")
    ends = prefix_lengths(T)
    for i, end in enumerate(reversed(ends)):  # the full prompt first: logit rows need it
        begin = ends[-i - 2] if i + 1 < len(ends) else 0
        in_bucket = ((feat_pos >= begin) & (feat_pos < end)).nonzero().squeeze(1).cpu()
        n_needed = len(in_bucket) + (K if end == T else 0)
        if n_needed == 0:
            continue
        batch = min(batch_size, n_needed)
        with _timed(timings, "forward"):
            rows = RowComputer(ctx, _frozen_run(model, ctx, end, batch))
        if end == T:
            with _timed(timings, "logit_rows"):
                for start, stop, block in _logit_rows(rows, ctx, targets):
                    store(n_src + torch.arange(start, stop), block)
        with _timed(timings, "feature_rows"):
            # torch.split of an empty bucket (no feature active there) still yields one chunk
            for chunk in torch.split(in_bucket, batch) if len(in_bucket) else ():
                idx = chunk.to(feat_pos.device)
                block = rows.compute(feat_layers[idx], feat_pos[idx], comps.encoder_vecs[idx])
                store(chunk, block)
                progress.update(len(chunk))
        del rows  # frees this prefix's autograd graph before the next forward
    progress.close()
    if sparse:
        with _timed(timings, "package"):
            return csr.finish()
    return adjacency


def _greedy_rows(model, ctx, targets, batch_size, n_rows, update_interval, verbose, timings):
    """Rows for at most ``n_rows`` features, chosen greedily by partial influence.

    Returns ``(adjacency (N, N), selected (S,))``: rows of features that were not chosen
    are absent and their columns are dropped.
    """
    K, n_act, n_src = len(targets), ctx.n_features, ctx.row_size
    comps = ctx.components
    feat_layers, feat_pos = comps.activation_matrix.indices()[:2]
    batch = min(batch_size, max(K, n_rows, 1))
    with _timed(timings, "forward"):
        rows = RowComputer(ctx, _frozen_run(model, ctx, ctx.n_pos, batch))
    # Rows keep all N_total = n_src + K columns so the ranking sees circuit-tracer's node
    # layout (the logit columns stay zero); row_nodes[r] is the node row r belongs to.
    edge_rows = torch.zeros(K + n_rows, n_src + K, dtype=torch.float32)
    row_nodes = torch.empty(K + n_rows, dtype=torch.long)
    # |row| sums, taken once per row as it arrives: every refresh of the ranking needs them.
    row_sums = torch.zeros(K + n_rows, dtype=torch.float64)
    with _timed(timings, "logit_rows"):
        for start, stop, block in _logit_rows(rows, ctx, targets):
            edge_rows[start:stop, :n_src] = block
            row_nodes[start:stop] = n_src + torch.arange(start, stop)
            row_sums[start:stop] = abs_row_sums(edge_rows[start:stop])

    visited = torch.zeros(n_act, dtype=torch.bool)
    filled = K
    with _timed(timings, "feature_rows"):
        progress = tqdm(total=n_rows, desc="feature rows", disable=not verbose, unit="row")
        while filled - K < n_rows:
            influence = compute_partial_influences(
                edge_rows[:filled],
                targets.logit_probabilities,
                row_nodes[:filled],
                row_abs_sums=row_sums[:filled],
            )
            ranked = torch.argsort(influence[:n_act], descending=True, stable=True)
            remaining = n_rows - (filled - K)
            pending = ranked[~visited[ranked]][: min(update_interval * batch, remaining)]
            for chunk in torch.split(pending, batch):
                idx = chunk.to(feat_pos.device)
                block = rows.compute(feat_layers[idx], feat_pos[idx], comps.encoder_vecs[idx])
                edge_rows[filled : filled + len(chunk), :n_src] = block.cpu()
                row_nodes[filled : filled + len(chunk)] = chunk
                row_sums[filled : filled + len(chunk)] = abs_row_sums(
                    edge_rows[filled : filled + len(chunk)]
                )
                visited[chunk] = True
                filled += len(chunk)
                progress.update(len(chunk))
        progress.close()
    del rows

    with _timed(timings, "package"):
        selected = visited.nonzero().squeeze(1)
        columns = torch.cat([selected, torch.arange(n_act, n_src)])
        S, n_cols = len(selected), len(columns)
        adjacency = torch.zeros(n_cols + K, n_cols + K, dtype=torch.float32)
        # Feature rows in ascending feature order, copied in slices to bound temporaries.
        order = K + torch.argsort(row_nodes[K:])
        for start in range(0, S, _PACKAGE_CHUNK):
            part = order[start : start + _PACKAGE_CHUNK]
            adjacency[start : start + len(part), :n_cols] = edge_rows[part][:, columns]
        adjacency[n_cols:, :n_cols] = edge_rows[:K][:, columns]
    return adjacency, selected


_PACKAGE_CHUNK = 1024


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

    Everything attribution needs from them (encoder, decoder and error vectors) has been
    extracted by then. On a CPU model there is nothing to free, so this is a no-op.
    """
    tc = model.transcoders
    device = model.device
    # Skip transcoders stay: each frozen forward (one per prompt prefix) applies their skip
    # path. (circuit-tracer's TransformerLens backend offloads them anyway and fails.)
    if mode is None or device.type == "cpu" or tc.skip_connection:
        yield
        return
    tc.to("cpu")
    try:
        yield
    finally:
        tc.to(device)
