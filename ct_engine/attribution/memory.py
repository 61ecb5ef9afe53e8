"""Memory estimate of an ``attribute`` run, before it runs.

What an attribution run holds, by phase (``B`` = effective batch, ``T`` = tokens, ``L`` layers,
``D = d_model``, ``s`` = bytes per element of the model dtype):

* resident: model weights and the eagerly loaded transcoder weights (lazy ones stay on disk;
  the largest lazily read tensor is counted as a transient);
* context (phase 0): clean logits ``T·V``, encoder and scaled decoder rows ``(N_act + N_dec)·D``,
  reconstruction, error and token vectors, the sparse activations; the decoder rows regrouped
  per layer and position for the batched row kernel (:mod:`.rows`);
* the frozen forward of ``B`` prompt copies: its retained autograd graph. Per layer this is
  ``B·T·(a·D + b·H·d_head + m·d_mlp)·s + p·B·H·T²·s`` with coefficients measured per
  architecture (:data:`FROZEN_COEFFICIENTS`, from the saved tensors alive after
  ``frozen_run`` on tiny models);
* one backward batch: the gradients at every write site ``(L+1)·B·T·D·s``, the seeds
  (one ``B·T·D`` tensor per readout layer in the batch), autograd workspace, the float32
  row buffer ``B·(N_act + (L+1)·T)``;
* host (CPU, float32): the ``N × N`` adjacency, dense (4 bytes an entry) or, uncapped and
  sparse, the CSR entries reserved for it (8 bytes each: value and column, see
  :mod:`.sparse_rows`) plus each batch's nonzero scan; with a feature cap the edge-row buffer
  ``(K + M) × N_total`` and the ranking's ``(K + M)²`` triangular system.

On a CPU model every term lands in the same RAM. The estimate is an upper-bound style model
(every batch is taken at full length ``T``; see ``benchmarks/results/memory_estimate.md`` for
how it compares with measured peaks).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch

from ct_engine.attribution.sparse_rows import SPARSE_FROM_BYTES, bound_entries

# Retained frozen-forward tensors per layer, in units of B·T·D, B·T·H·d_head, B·T·d_mlp,
# B·H·T² (model dtype) and B·T (float32), plus whole-model B·T·D tensors (embedding leaf,
# final residual). Measured with ``torch.autograd.graph.saved_tensors_hooks`` on tiny models
# (saved tensors still alive after ``frozen_run``, parameters excluded, plus the tensors
# ``FrozenRun`` holds). Gemma-2 keeps its MLP internals (3·B·T·d_mlp per layer) alive.
FROZEN_COEFFICIENTS: dict[str, dict[str, float]] = {
    "llama": {"d_model": 3.0, "heads": 2.05, "d_mlp": 0.0, "attn": 2.0, "scalar": 3.0},
    "qwen3": {"d_model": 4.0, "heads": 3.55, "d_mlp": 0.0, "attn": 2.0, "scalar": 6.0},
    "gemma2": {"d_model": 6.0, "heads": 2.05, "d_mlp": 3.0, "attn": 3.0, "scalar": 7.5},
}
# On CUDA, Gemma-2's MLP internals are not retained: on an H200 (real Gemma-2-2B sizes,
# random weights, bf16 and fp32, 32 and 128 tokens, batch 256) the CPU coefficients above
# overestimated the peak 3.2-4.5x; without the d_mlp term the estimate is 1.5-2.3x the measured
# peak, like Llama's 1.5-1.6x (benchmarks/results/gpu_real_size.md).
CUDA_OVERRIDES: dict[str, dict[str, float]] = {"gemma2": {"d_mlp": 0.0}}
_FROZEN_GLOBAL_D_MODEL = 2.0  # embedding leaf + final residual
# Autograd workspace during one backward, in B·T·D tensors of the model dtype.
_BACKWARD_WORKSPACE = 4.0
_INFLUENCE_BLOCK = 512  # rows per block in compute_partial_influences
_PACKAGE_CHUNK = 1024  # rows per copy in attribute's package phase
DEFAULT_ASSUMED_L0 = 100  # active features per token and layer when not measured

SKIP_CHECK_ENV = "CT_SKIP_MEMORY_CHECK"


class InsufficientMemoryError(ValueError, MemoryError):
    """The predicted peak of an attribution run exceeds the available memory."""


@dataclass(frozen=True)
class _Inputs:
    """Everything the prediction needs; kept so the estimate can be redone at another B."""

    family: str
    device: str
    dtype_bytes: int
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    d_head: int
    d_vocab: int
    n_tokens: int
    n_active: int
    n_decoder_rows: int
    grouped_decoder_rows: int  # Σ_layers T · max_p(rows written at (layer, p))
    n_targets: int
    max_feature_nodes: int | None
    model_bytes: int
    transcoder_bytes: int
    lazy_transient_bytes: int
    offload: str | None
    skip: bool
    resident_bytes: int
    sparse: bool | None = None
    sparse_entries: int = 0  # CSR entries an uncapped sparse adjacency reserves


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted memory of one ``attribute`` call (bytes unless named ``n_*``).

    Attributes:
        n_tokens: ``T`` (with the leading special token).
        n_active_features: ``N_act``; how it was obtained is in ``n_active_source``
            (``"measured"``: one clean forward plus encoders; ``"given"``; ``"assumed"``:
            ``DEFAULT_ASSUMED_L0`` per token and layer).
        n_targets: ``K`` (``max_n_logits`` unless the targets are known).
        n_nodes: ``N`` of the returned ``N × N`` adjacency.
        n_rows: rows computed (features + targets).
        batch_size: the requested batch size; ``effective_batch_size`` the largest batch the
            run builds (``min(batch_size, rows needed)``).
        model_bytes, transcoder_bytes: resident weights (transcoders: eager parts only).
        lazy_transient_bytes: the largest lazily read transcoder tensor (read per use).
        context_bytes: phase-0 context plus the regrouped decoder rows.
        frozen_forward_bytes: the retained autograd graph of the ``B``-copy forward.
        backward_bytes: transient memory of one backward batch (gradients, seeds, workspace,
            row buffer).
        adjacency_bytes: the ``N × N`` adjacency: dense float32, or its reserved CSR entries
            (uncapped, ``sparse``; by default when dense would exceed 1 GiB).
        host_rows_bytes: capped runs: edge-row buffer and ranking temporaries (float32, host).
        device_peak_bytes: predicted peak on the model's device (on CPU, all memory).
        host_peak_bytes: predicted peak of host-side buffers (on CPU included in the above).
        peak_bytes: the predicted peak to compare with free memory: ``device_peak_bytes``.
        resident_bytes: the part of the peak already allocated when the estimate was taken
            (the loaded weights); ``additional_bytes = peak_bytes - resident_bytes``.
    """

    n_tokens: int
    n_active_features: int
    n_active_source: str
    n_targets: int
    n_nodes: int
    n_rows: int
    batch_size: int
    effective_batch_size: int
    dtype: str
    device: str
    model_bytes: int
    transcoder_bytes: int
    lazy_transient_bytes: int
    context_bytes: int
    frozen_forward_bytes: int
    backward_bytes: int
    adjacency_bytes: int
    host_rows_bytes: int
    device_peak_bytes: int
    host_peak_bytes: int
    peak_bytes: int
    resident_bytes: int
    _inputs: _Inputs = dataclasses.field(repr=False, compare=False)

    @property
    def additional_bytes(self) -> int:
        """Memory the run still needs beyond what is allocated now."""
        return max(self.peak_bytes - self.resident_bytes, 0)

    @property
    def host_additional_bytes(self) -> int:
        """Host memory still needed (accelerator runs; 0 on CPU, counted in the peak)."""
        return 0 if self.device == "cpu" else self.host_peak_bytes

    def at_batch_size(self, batch_size: int) -> MemoryEstimate:
        """The same run with another ``batch_size``."""
        return _predict(self._inputs, batch_size, self.n_active_source)

    def summary(self) -> str:
        """A few lines for a log."""
        g = _gib
        lines = [
            f"memory estimate ({self.device}, {self.dtype}): T={self.n_tokens}, "
            f"N_act={self.n_active_features} ({self.n_active_source}), N={self.n_nodes} nodes, "
            f"{self.n_rows} rows, batch {self.batch_size} (effective {self.effective_batch_size})",
            f"  weights: model {g(self.model_bytes)}, transcoders {g(self.transcoder_bytes)}"
            f" (+{g(self.lazy_transient_bytes)} lazy reads); context {g(self.context_bytes)}",
            f"  frozen forward {g(self.frozen_forward_bytes)}, backward batch "
            f"{g(self.backward_bytes)}; adjacency {g(self.adjacency_bytes)}, "
            f"edge rows {g(self.host_rows_bytes)}",
            f"  predicted peak {g(self.peak_bytes)} on {self.device}"
            + ("" if self.device == "cpu" else f", host {g(self.host_peak_bytes)}")
            + f"; still to allocate {g(self.additional_bytes)}",
        ]
        return "\n".join(lines)


# --------------------------------------------------------------------------------- estimate


def estimate_memory(
    model,
    prompt_or_tokens,
    *,
    batch_size: int,
    max_feature_nodes: int | None = None,
    dtype: torch.dtype | None = None,
    n_targets: int = 10,
    offload: str | None = None,
    n_active_features: int | None = None,
    measure: bool = True,
    sparse: bool | None = None,
) -> MemoryEstimate:
    """Predict the memory of ``attribute(prompt_or_tokens, model, batch_size=..., ...)``.

    Args:
        model: a loaded :class:`~ct_engine.ReplacementModel`.
        prompt_or_tokens: what ``attribute`` would get.
        batch_size, max_feature_nodes, offload, sparse: as for ``attribute``.
        dtype: estimate for the model loaded in this dtype instead (weights are rescaled;
            ``resident_bytes`` is then 0: the run is taken to be a fresh load).
        n_targets: ``K``, the number of logit targets (``max_n_logits`` is an upper bound).
        n_active_features: skip the measurement and use this ``N_act``.
        measure: count active features with one no-grad clean forward plus the encoders
            (cheap: no decoder, no autograd); if False and ``n_active_features`` is None,
            assume :data:`DEFAULT_ASSUMED_L0` features per token and layer.
    """
    tokens = model.ensure_tokenized(prompt_or_tokens)
    T, L = len(tokens), model.n_layers
    tc = model.transcoders
    counts = None
    if n_active_features is not None:
        source = "given"
    elif measure:
        counts = _active_counts(model, tokens)  # (L, T) per source layer and position
        n_active_features = int(counts.sum())
        source = "measured"
    else:
        n_zero = len(range(T)[model.zero_positions])
        n_active_features = DEFAULT_ASSUMED_L0 * L * (T - n_zero)
        source = f"assumed ({DEFAULT_ASSUMED_L0}/token/layer)"
    n_dec, grouped = _decoder_rows(counts, n_active_features, L, T, tc.is_cross_layer)
    spread = torch.full((L, T), n_active_features / max(L * T, 1), dtype=torch.float64)
    sparse_entries = bound_entries(spread if counts is None else counts, n_targets)

    loaded_bytes = torch.empty(0, dtype=model.dtype).element_size()
    dtype_bytes = torch.empty(0, dtype=dtype).element_size() if dtype else loaded_bytes
    scale = dtype_bytes / loaded_bytes
    model_bytes = _module_bytes(model.impl.hf_model)
    tc_bytes = _module_bytes(tc)
    lazy_bytes = max((math.prod(t.shape) * loaded_bytes for t in tc.lazy_sources), default=0)
    same_dtype = dtype is None or dtype == model.dtype
    cfg = model.cfg
    inputs = _Inputs(
        family=_family(model),
        device=model.device.type,
        dtype_bytes=dtype_bytes,
        n_layers=L,
        d_model=cfg.d_model,
        d_mlp=cfg.d_mlp,
        n_heads=cfg.n_heads,
        d_head=cfg.d_head,
        d_vocab=model.d_vocab,
        n_tokens=T,
        n_active=n_active_features,
        n_decoder_rows=n_dec,
        grouped_decoder_rows=grouped,
        n_targets=n_targets,
        max_feature_nodes=max_feature_nodes,
        model_bytes=int(model_bytes * scale),
        transcoder_bytes=int(tc_bytes * scale),
        lazy_transient_bytes=int(lazy_bytes * scale),
        offload=offload,
        skip=bool(tc.skip_connection),
        resident_bytes=int(model_bytes + tc_bytes) if same_dtype else 0,
        sparse=sparse,
        sparse_entries=sparse_entries,
    )
    return _predict(inputs, batch_size, source)


def _predict(x: _Inputs, batch_size: int, source: str) -> MemoryEstimate:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    T, L, D, s, K = x.n_tokens, x.n_layers, x.d_model, x.dtype_bytes, x.n_targets
    n_act = x.n_active
    capped = x.max_feature_nodes is not None and x.max_feature_nodes < n_act
    n_feat_rows = min(x.max_feature_nodes, n_act) if capped else n_act
    n_src = n_act + (L + 1) * T  # row size: features, errors, tokens
    n_total = n_src + K
    if capped:
        n_nodes = n_feat_rows + (L + 1) * T + K
        batch = min(batch_size, max(K, n_feat_rows, 1))
    else:
        n_nodes = n_total
        batch = min(batch_size, max(n_act + K, 1))
    B = batch

    context = (
        T * x.d_vocab * s  # clean logits
        + (n_act + x.n_decoder_rows) * D * s  # encoder rows, scaled decoder rows
        + (2 * L + 1) * T * D * s  # reconstruction, errors, token vectors
        + n_act * (3 * 8 + s)  # sparse activations (indices + values)
        + x.n_decoder_rows * 3 * 8  # decoder map and locations
        + x.grouped_decoder_rows * D * s  # RowComputer's per-layer padded decoder rows
    )
    c = FROZEN_COEFFICIENTS.get(x.family, FROZEN_COEFFICIENTS["gemma2"])
    if x.device == "cuda":
        c = {**c, **CUDA_OVERRIDES.get(x.family, {})}
    per_layer = (
        B * T * (c["d_model"] * D + c["heads"] * x.n_heads * x.d_head + c["d_mlp"] * x.d_mlp) * s
        + c["attn"] * B * x.n_heads * T * T * s
        + c["scalar"] * B * T * 4
    )
    frozen = int(L * per_layer + _FROZEN_GLOBAL_D_MODEL * B * T * D * s)
    seed_layers = L + 1 if capped else min(L + 1, 2 + math.ceil(B * L / max(n_act, 1)))
    max_group = x.grouped_decoder_rows / max(L, 1)  # T · n_max of an average layer
    backward = int(
        (L + 1 + seed_layers + _BACKWARD_WORKSPACE) * B * T * D * s  # grads, seeds, workspace
        + B * n_src * 4  # float32 row buffer
        + 2 * B * max_group * s  # bmm output and its gather, one layer at a time
    )
    adjacency = n_nodes * n_nodes * 4
    sparse = adjacency > SPARSE_FROM_BYTES if x.sparse is None else x.sparse
    if sparse and not capped:
        index_bytes = 4 if max(x.sparse_entries, n_nodes) < 2**31 else 8
        adjacency = x.sparse_entries * (4 + index_bytes) + 4 * (n_nodes + 1) * 8
        # each batch's scan: a bool mask, then (row, column, slot) longs and a value per entry
        backward += B * n_src * (1 + 3 * 8 + 4)
    if capped:
        st = K + n_feat_rows
        edge_rows = st * n_total * 4
        ranking = 2 * st * st * 4 + 2 * _INFLUENCE_BLOCK * n_total * 4
        host_rows = edge_rows + ranking
        host_peak = max(edge_rows + ranking, edge_rows + adjacency + _PACKAGE_CHUNK * n_total * 8)
    else:
        host_rows = 0
        host_peak = adjacency
    weights = x.model_bytes + x.transcoder_bytes
    phase0 = weights + context + x.lazy_transient_bytes + T * 1 * s * max(D, 1)
    offloaded = x.offload is not None and x.device != "cpu" and not x.skip
    rows_weights = x.model_bytes + (0 if offloaded else x.transcoder_bytes)
    rows_phase = rows_weights + context + frozen + backward
    if x.device == "cpu":
        device_peak = max(phase0, rows_phase + (host_rows or adjacency), weights + host_peak)
        host_peak_out = host_peak
    else:
        device_peak = max(phase0, rows_phase)
        host_peak_out = host_peak + (x.transcoder_bytes if offloaded else 0)
    return MemoryEstimate(
        n_tokens=T,
        n_active_features=n_act,
        n_active_source=source,
        n_targets=K,
        n_nodes=n_nodes,
        n_rows=n_feat_rows + K,
        batch_size=batch_size,
        effective_batch_size=B,
        dtype={1: "int8", 2: "16-bit", 4: "float32", 8: "float64"}.get(s, f"{s}-byte"),
        device=x.device,
        model_bytes=x.model_bytes,
        transcoder_bytes=x.transcoder_bytes,
        lazy_transient_bytes=x.lazy_transient_bytes,
        context_bytes=int(context),
        frozen_forward_bytes=frozen,
        backward_bytes=backward,
        adjacency_bytes=adjacency,
        host_rows_bytes=int(host_rows),
        device_peak_bytes=int(device_peak),
        host_peak_bytes=int(host_peak_out),
        peak_bytes=int(device_peak),
        resident_bytes=x.resident_bytes,
        _inputs=x,
    )


# ------------------------------------------------------------------------- memory available


def available_memory(device: torch.device | str | None = None) -> int:
    """Free bytes: CUDA free memory for a CUDA device, else free host RAM (``psutil``'s
    ``available`` when installed, else ``MemAvailable`` of ``/proc/meminfo``)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return host_available_memory()


def host_available_memory() -> int:
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown: do not block


def suggest_batch_size(estimate: MemoryEstimate, available_bytes: int) -> int:
    """Largest power-of-two batch size whose run fits ``available_bytes`` of free memory (the
    resident weights are already allocated, so ``additional_bytes`` is compared); 0 if even
    a batch of 1 does not fit. Never above the first power of two that covers every row."""
    cap = 1 << max(math.ceil(math.log2(max(estimate.n_rows, 1))), 0)
    b = cap
    while b >= 1:
        if estimate.at_batch_size(b).additional_bytes <= available_bytes:
            return b
        b //= 2
    return 0


def check_memory(estimate: MemoryEstimate, *, verbose: bool = False) -> None:
    """Print the estimate when ``verbose``; raise :class:`InsufficientMemoryError` (a
    ValueError) if it does not fit the free memory. Set ``CT_SKIP_MEMORY_CHECK=1`` to skip."""
    if verbose:
        print(estimate.summary())
    if os.environ.get(SKIP_CHECK_ENV, "") not in ("", "0"):
        return
    device_free = available_memory(estimate.device if estimate.device != "cpu" else None)
    problems = []
    if estimate.additional_bytes > device_free:
        problems.append(
            f"it needs about {_gib(estimate.additional_bytes)} more on {estimate.device} "
            f"but {_gib(device_free)} is free"
        )
    host_free = host_available_memory() if estimate.device != "cpu" else None
    if host_free is not None and estimate.host_additional_bytes > host_free:
        problems.append(
            f"it needs about {_gib(estimate.host_additional_bytes)} of host RAM for the "
            f"adjacency and edge rows but {_gib(host_free)} is free"
        )
    if not problems:
        return
    suggestion = suggest_batch_size(estimate, device_free)
    hints = []
    if suggestion and suggestion < estimate.batch_size:
        hints.append(f"batch_size={suggestion}")
    if estimate.n_rows - estimate.n_targets > 8192 or not suggestion:
        hints.append("max_feature_nodes=8192 (or lower)")
    if estimate.device != "cpu":
        hints.append('offload="cpu"')
    raise InsufficientMemoryError(
        "attribution would likely run out of memory: "
        + "; ".join(problems)
        + ".\n"
        + estimate.summary()
        + ("\nTry " + ", ".join(hints) + "." if hints else "")
        + f"\n(Set {SKIP_CHECK_ENV}=1 to run anyway.)"
    )


def memory_report(model, prompt, **kwargs) -> str:
    """``estimate_memory(model, prompt, **kwargs)`` as text, with the free memory and a
    suggested batch size: what ``ct attribute --estimate-memory`` prints."""
    est = estimate_memory(model, prompt, **kwargs)
    free = available_memory(model.device)
    return (
        f"{est.summary()}\n  free memory {_gib(free)}; largest batch size that fits: "
        f"{suggest_batch_size(est, free) or 'none (lower max_feature_nodes)'}"
    )


# ---------------------------------------------------------------------------------- helpers


def _family(model) -> str:
    hf_type = getattr(model.impl.hf_model.config, "model_type", "")
    if hf_type.startswith("gemma"):
        return "gemma2"
    return "qwen3" if hf_type.startswith("qwen3") else "llama"


def _module_bytes(module: torch.nn.Module) -> int:
    seen, total = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.device)
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total


@torch.no_grad()
def _active_counts(model, tokens: torch.Tensor) -> torch.Tensor:
    """``(L, T)`` active features per source layer and position (zeroed positions excluded):
    one clean forward and the encoders, nothing else."""
    clean = model.impl.clean_run(tokens)
    tc = model.transcoders
    counts = []
    for layer in range(model.n_layers):
        acts = tc.encode_layer(clean.feature_inputs[layer], layer)
        acts[model.zero_positions] = 0
        counts.append((acts != 0).sum(-1).cpu())
    return torch.stack(counts)


def _decoder_rows(counts, n_act: int, L: int, T: int, cross_layer: bool) -> tuple[int, int]:
    """``(N_dec, Σ_layers T·max_p rows)``: decoder rows and their padded per-layer grouping."""
    if counts is None:  # spread evenly
        per = n_act / max(L * T, 1)
        if not cross_layer:
            return n_act, math.ceil(L * T * per)
        n_dec = int(sum(per * T * (L - layer) for layer in range(L)))
        return n_dec, int(sum(T * math.ceil(per * (j + 1)) for j in range(L)))
    if cross_layer:  # a feature of layer l writes to every layer j >= l at its position
        written = counts.cumsum(0)
        n_dec = int(sum(int(counts[layer].sum()) * (L - layer) for layer in range(L)))
    else:
        written = counts
        n_dec = int(counts.sum())
    grouped = int(sum(T * int(written[j].max()) for j in range(L) if int(written[j].max())))
    return n_dec, grouped


def _gib(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    return f"{n / (1 << 20):.1f} MiB"
