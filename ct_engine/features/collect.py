"""One streaming pass over a corpus that fills :class:`FeatureDashboards`.

The corpus is cut into context windows of at most ``window`` tokens, each preceded by the
model's special token (as attribution prompts are); windows are batched (sorted by length
inside a small buffer, right-padded: attention is causal, so padding never changes a real
token) and run through the frozen model once. At every layer's feature input hook the
transcoder encodes the activations and running statistics are updated on the spot, so no
layer's activations outlive its hook:

* counts, sums, minima and maxima of the firing activations (activation > 0);
* a fine log-spaced histogram per feature (quantiles are read from it);
* the ``top_k`` windows with the largest activation of each feature;
* a uniform sample of ``sample_k`` windows among those where each feature fired (each
  candidate gets a random key and the largest keys are kept: sampling without replacement
  in one pass), from which the quantile examples are drawn;
* how often each feature fired on each token (exact until ``max_token_pairs`` distinct
  (feature, token) pairs are held; then each feature keeps its most frequent tokens and the
  counts are marked approximate).

Memory is bounded by the number of features times ``top_k + sample_k`` windows and the
histogram bins, never by the corpus length. Positions whose features the engine zeroes (the
special token) are left out of every statistic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from ct_engine.features.cards import FeatureCard
from ct_engine.features.dashboards import ExampleStore, FeatureDashboards
from ct_engine.features.logits import output_effects
from ct_engine.replacement.edits import ForwardEdits

HIST_LOW, HIST_HIGH, HIST_BINS = 1e-3, 1e4, 384
Explainer = Callable[[FeatureCard], "str | None"]


def histogram_edges(low: float = HIST_LOW, high: float = HIST_HIGH, bins: int = HIST_BINS):
    """``(bins + 1,)`` edges: ``0``, then log-spaced ``low … high``, then ``inf``."""
    inner = np.geomspace(low, high, bins - 1)
    return np.concatenate([[0.0], inner, [np.inf]])


def windows(model, texts: Iterable[str], window: int) -> Iterator[torch.Tensor]:
    """Token windows ``(n ≤ window + 1,)``: each document's tokens cut into pieces of at most
    ``window`` tokens, each preceded by the special token (:meth:`ensure_tokenized`)."""
    for text in texts:
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), window):
            piece = ids[start : start + window]
            if piece:
                yield model.ensure_tokenized(torch.tensor(piece, dtype=torch.long))


def _batches(
    pieces: Iterator[torch.Tensor], batch_tokens: int, max_tokens: int, skip: int
) -> Iterator[list[torch.Tensor]]:
    """Groups of windows of about ``batch_tokens`` padded tokens, until ``max_tokens``
    counted positions (``len − skip`` per window; the last window is cut to fit)."""
    buffer: list[torch.Tensor] = []
    buffered = counted = 0

    def flush(items: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
        items.sort(key=len)
        group: list[torch.Tensor] = []
        for item in items:
            if group and (len(group) + 1) * len(item) > batch_tokens:
                yield group
                group = []
            group.append(item)
        if group:
            yield group

    for piece in pieces:
        room = max_tokens - counted
        if room <= 0:
            break
        if len(piece) - skip > room:
            piece = piece[: skip + room]
        if len(piece) <= skip:
            continue
        counted += len(piece) - skip
        buffer.append(piece)
        buffered += len(piece)
        if buffered >= 16 * batch_tokens:
            yield from flush(buffer)
            buffer, buffered = [], 0
    yield from flush(buffer)


class _Stores:
    """Top and sampled windows of every feature, on the model's device (torch tensors)."""

    def __init__(self, L: int, F: int, k: int, W: int, device):
        self.keys = torch.full((L, F, k), -math.inf, device=device)
        self.max_act = torch.zeros(L, F, k, device=device)
        self.tokens = torch.full((L, F, k, W), -1, dtype=torch.int32, device=device)
        self.acts = torch.zeros(L, F, k, W, dtype=torch.float16, device=device)

    def merge(
        self,
        layer: int,
        keys: torch.Tensor,
        max_act: torch.Tensor,
        acts: torch.Tensor,
        tokens: torch.Tensor,
    ) -> None:
        """Keep the ``k`` largest keys per feature among the stored and the new windows.

        ``keys``, ``max_act``: ``(B, F)`` (``-inf`` keys never enter); ``acts``: ``(B, W, F)``;
        ``tokens``: ``(B, W)`` int32 (``-1`` pads)."""
        k = self.keys.shape[-1]
        kth = self.keys[layer].amin(dim=-1)  # (F,)
        feats = (keys > kth[None]).any(dim=0).nonzero().squeeze(1)
        if feats.numel() == 0:
            return
        # Only the batch's own k best windows of a feature can enter its k slots.
        candidates = keys[:, feats].T.topk(min(k, keys.shape[0]), dim=1)  # (f, c)
        rows = candidates.indices
        column = feats[:, None]
        new_acts = acts.permute(2, 0, 1)[column, rows].to(torch.float16)  # (f, c, W)
        new_tokens = tokens[rows]  # (f, c, W)
        new_max = max_act.T[column, rows]
        best = torch.cat([self.keys[layer, feats], candidates.values], dim=1).topk(k, dim=1)
        slot = best.indices
        wide = slot[..., None].expand(-1, -1, self.tokens.shape[-1])
        all_max = torch.cat([self.max_act[layer, feats], new_max], dim=1)
        all_acts = torch.cat([self.acts[layer, feats], new_acts], dim=1)
        all_tokens = torch.cat([self.tokens[layer, feats], new_tokens], dim=1)
        self.keys[layer, feats] = best.values
        self.max_act[layer, feats] = all_max.gather(1, slot)
        self.acts[layer, feats] = all_acts.gather(1, wide)
        self.tokens[layer, feats] = all_tokens.gather(1, wide)

    def to_numpy(self) -> ExampleStore:
        return ExampleStore(
            keys=self.keys.cpu().numpy(),
            max_act=self.max_act.cpu().numpy(),
            tokens=self.tokens.cpu().numpy(),
            acts=self.acts.cpu().numpy(),
        )


class _TokenCounts:
    """How often each feature fired on each token: sparse counts keyed ``feature·V + token``
    (``feature`` global: ``layer·F + f``), merged in bulk every few batches."""

    def __init__(self, n_features: int, vocab: int, max_pairs: int, keep: int, device):
        self.n_features, self.vocab, self.max_pairs, self.keep = n_features, vocab, max_pairs, keep
        self.keys = torch.empty(0, dtype=torch.long, device=device)
        self.counts = torch.empty(0, dtype=torch.long, device=device)
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.pending_size = 0
        self.exact = True

    def add(self, feature: torch.Tensor, token: torch.Tensor) -> None:
        keys, counts = torch.unique(feature * self.vocab + token, return_counts=True)
        self.pending.append((keys, counts))
        self.pending_size += len(keys)
        if self.pending_size > max(len(self.keys), 1 << 20):
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        keys = torch.cat([self.keys] + [k for k, _ in self.pending])
        counts = torch.cat([self.counts] + [c for _, c in self.pending])
        self.pending, self.pending_size = [], 0
        self.keys, inverse = torch.unique(keys, return_inverse=True)
        self.counts = torch.zeros_like(self.keys).scatter_add_(0, inverse, counts)
        if len(self.keys) > self.max_pairs:
            self._prune(self.keep)
            self.exact = False

    def _prune(self, keep: int) -> None:
        """Keep each feature's ``keep`` most frequent tokens."""
        feature = self.keys // self.vocab
        order = torch.argsort(self.counts, descending=True, stable=True)
        order = order[torch.argsort(feature[order], stable=True)]  # by feature, then count
        feature = feature[order]
        first = torch.searchsorted(feature, feature, side="left")
        rank = torch.arange(len(order), device=feature.device) - first
        chosen = order[rank < keep]
        self.keys, self.counts = self.keys[chosen], self.counts[chosen]

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, counts)`` ``(n_features, n)``: most frequent tokens first, ``-1`` pads."""
        self.flush()
        ids = np.full((self.n_features, n), -1, dtype=np.int64)
        out = np.zeros((self.n_features, n), dtype=np.int64)
        if len(self.keys) == 0:
            return ids, out
        self._prune(n)
        feature = (self.keys // self.vocab).cpu().numpy()
        token = (self.keys % self.vocab).cpu().numpy()
        counts = self.counts.cpu().numpy()
        order = np.lexsort((-counts, feature))
        feature, token, counts = feature[order], token[order], counts[order]
        rank = np.arange(len(order)) - np.searchsorted(feature, feature, side="left")
        ids[feature, rank] = token
        out[feature, rank] = counts
        return ids, out


class _Accumulator(ForwardEdits):
    """Encodes each layer's feature input during the forward and updates the statistics."""

    def __init__(
        self,
        model,
        *,
        window: int,
        top_k: int,
        sample_k: int,
        max_token_pairs: int,
        keep_tokens: int,
        seed: int,
    ):
        transcoders = model.transcoders
        L, F = transcoders.n_layers, transcoders.d_transcoder
        device = transcoders.device
        self.transcoders, self.L, self.F, self.W = transcoders, L, F, window
        self.edges = torch.tensor(histogram_edges(), dtype=torch.float32, device=device)
        self.log_low = math.log(HIST_LOW)
        self.log_step = (math.log(HIST_HIGH) - math.log(HIST_LOW)) / (HIST_BINS - 2)
        self.n_active = torch.zeros(L, F, dtype=torch.long, device=device)
        self.act_sum = torch.zeros(L, F, dtype=torch.float64, device=device)
        self.act_min = torch.full((L, F), math.inf, device=device)
        self.act_max = torch.zeros(L, F, device=device)
        self.hist = torch.zeros(L, F * HIST_BINS, dtype=torch.int32, device=device)
        self.top = _Stores(L, F, top_k, window, device)
        self.sample = _Stores(L, F, sample_k, window, device)
        self.tokens_seen = _TokenCounts(L * F, model.d_vocab, max_token_pairs, keep_tokens, device)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.device = device
        self.tokens: torch.Tensor | None = None  # (B, T) long, the batch
        self.real: torch.Tensor | None = None  # (B, T) bool: not padding
        self.valid: torch.Tensor | None = None  # (B, T) bool: counted positions

    def start(self, tokens: torch.Tensor, lengths: torch.Tensor, skip: int) -> None:
        """Before each forward: the batch ``tokens (B, T)``, its rows' ``lengths (B,)``, and
        ``skip`` leading positions left out of the statistics."""
        width = tokens.shape[1]
        self.tokens = tokens.to(self.device)
        self.real = torch.arange(width, device=self.device)[None] < lengths.to(self.device)[:, None]
        self.valid = self.real.clone()
        self.valid[:, :skip] = False

    @torch.no_grad()
    def feature_input(self, layer: int, x: torch.Tensor) -> None:
        acts = self.transcoders.encode_layer(x.to(self.device), layer).float()  # (B, T, F)
        acts = acts * self.valid[..., None]
        fired = acts > 0
        self.n_active[layer] += fired.sum(dim=(0, 1))
        self.act_sum[layer] += acts.sum(dim=(0, 1), dtype=torch.float64)
        self.act_max[layer] = torch.maximum(self.act_max[layer], acts.amax(dim=(0, 1)))
        masked = torch.where(fired, acts, torch.full_like(acts, math.inf))
        self.act_min[layer] = torch.minimum(self.act_min[layer], masked.amin(dim=(0, 1)))

        row, col = fired.view(-1, self.F).nonzero(as_tuple=True)
        values = acts.view(-1, self.F)[row, col]
        bins = ((values.log() - self.log_low) / self.log_step).floor().long() + 1
        bins = bins.clamp_(0, HIST_BINS - 1)
        self.hist[layer] += torch.bincount(col * HIST_BINS + bins, minlength=self.F * HIST_BINS).to(
            torch.int32
        )
        self.tokens_seen.add(layer * self.F + col, self.tokens.view(-1)[row])

        # Windows: positions 1.. of each row (after the special token), padded to W.
        window_acts = acts[:, 1:, :]
        window_tokens = torch.where(self.real[:, 1:], self.tokens[:, 1:], -1).to(torch.int32)
        B, T = window_tokens.shape
        if T < self.W:
            window_acts = torch.nn.functional.pad(window_acts, (0, 0, 0, self.W - T))
            window_tokens = torch.nn.functional.pad(window_tokens, (0, self.W - T), value=-1)
        peak = window_acts.amax(dim=1)  # (B, F)
        fired_window = peak > 0
        top_keys = torch.where(fired_window, peak, -math.inf)
        self.top.merge(layer, top_keys, peak, window_acts, window_tokens)
        draw = torch.rand(peak.shape, generator=self.generator, device=self.device)
        sample_keys = torch.where(fired_window, draw, -math.inf)
        self.sample.merge(layer, sample_keys, peak, window_acts, window_tokens)


@torch.no_grad()
def build_dashboards(
    model,
    texts: Iterable[str],
    *,
    max_tokens: int = 200_000,
    window: int = 64,
    top_k: int = 16,
    sample_k: int = 32,
    n_logits: int = 10,
    n_input_tokens: int = 10,
    batch_tokens: int = 4096,
    max_token_pairs: int | None = None,
    corpus: str = "",
    transcoder_id: str | None = None,
    explainer: Explainer | None = None,
    seed: int = 0,
    progress: bool = True,
) -> FeatureDashboards:
    """Measure every feature of ``model``'s transcoders on ``texts`` (see the module doc).

    Args:
        model: a :class:`~ct_engine.ReplacementModel` (either backend).
        texts: documents, streamed (a generator is read only as far as ``max_tokens``).
        max_tokens: token budget (positions after the special token).
        window: tokens per context window (an example's length).
        top_k: top-activation windows kept per feature.
        sample_k: windows sampled per feature for the quantile examples.
        n_logits: top and bottom logits kept per feature.
        n_input_tokens: most frequent firing tokens kept per feature.
        batch_tokens: padded tokens per forward pass.
        max_token_pairs: distinct (feature, token) pairs counted exactly (default
            ``64 × L × F``).
        corpus: a description stored with the result.
        transcoder_id: the set's name in the result (default: its registered name, hub
            scan or folder name).
        explainer: optional callable ``FeatureCard -> label | None`` (an external labeller,
            e.g. a language model); off by default, never needed.
        seed: seed of the example sampling.
        progress: show a progress bar over tokens.

    Raises:
        ValueError: the corpus has no token, or fewer tokens than one window.
    """
    from ct_engine.features.labels import apply_labels

    if max_tokens <= 0:
        raise ValueError(f"the token budget must be positive, got {max_tokens}")
    if window <= 0 or top_k <= 0 or sample_k <= 0:
        raise ValueError("window, top_k and sample_k must be positive")
    began = time.perf_counter()
    transcoders = model.transcoders
    L, F = transcoders.n_layers, transcoders.d_transcoder
    window = min(window, model.n_ctx - 1)
    acc = _Accumulator(
        model,
        window=window,
        top_k=top_k,
        sample_k=sample_k,
        max_token_pairs=max_token_pairs or 64 * L * F,
        keep_tokens=max(4 * n_input_tokens, 32),
        seed=seed,
    )
    skip = max(1, model.zero_positions.stop or 1)
    pad_id = model.tokenizer.pad_token_id
    pad_id = 0 if pad_id is None else pad_id
    n_tokens = n_windows = 0
    bar = tqdm(total=max_tokens, desc="feature dashboards", unit="tok", disable=not progress)
    for group in _batches(windows(model, texts, window), batch_tokens, max_tokens, skip):
        width = max(len(p) for p in group)
        tokens = torch.full((len(group), width), pad_id, dtype=torch.long)
        lengths = torch.tensor([len(p) for p in group])
        for row, piece in enumerate(group):
            tokens[row, : len(piece)] = piece
        acc.start(tokens, lengths, skip)
        model.impl.edited_run(tokens.to(model.device), acc)
        counted = int(acc.valid.sum())
        n_tokens += counted
        n_windows += len(group)
        bar.update(counted)
    bar.close()
    if n_tokens == 0:
        raise ValueError("the corpus is empty: it has no token to measure features on")
    if n_tokens < window:
        raise ValueError(
            f"the corpus is shorter than one context window: {n_tokens} tokens, window {window}"
        )

    timings = {"pass": time.perf_counter() - began}
    mark = time.perf_counter()
    top_ids, top_vals, bottom_ids, bottom_vals = output_effects(model, n_logits)
    timings["output_effects"] = time.perf_counter() - mark
    mark = time.perf_counter()
    input_ids, input_counts = acc.tokens_seen.top(n_input_tokens)
    vocab = model.tokenizer.batch_decode([[i] for i in range(model.d_vocab)])
    timings["tokens"] = time.perf_counter() - mark
    n_active = acc.n_active.cpu().numpy()
    act_min = acc.act_min.cpu().numpy().astype(np.float64)
    act_min[n_active == 0] = 0.0
    dashboards = FeatureDashboards(
        model_name=model.model_name,
        transcoder_id=transcoder_id or _transcoder_id(model),
        corpus=corpus,
        n_tokens=n_tokens,
        n_windows=n_windows,
        window=window,
        vocab=list(vocab),
        n_active=n_active,
        act_sum=acc.act_sum.cpu().numpy(),
        act_min=act_min,
        act_max=acc.act_max.cpu().numpy().astype(np.float64),
        hist_edges=histogram_edges(),
        hist=acc.hist.view(L, F, HIST_BINS).cpu().numpy(),
        top=acc.top.to_numpy(),
        sample=acc.sample.to_numpy(),
        top_logit_ids=top_ids.numpy(),
        top_logit_values=top_vals.numpy(),
        bottom_logit_ids=bottom_ids.numpy(),
        bottom_logit_values=bottom_vals.numpy(),
        input_token_ids=input_ids.reshape(L, F, -1),
        input_token_counts=input_counts.reshape(L, F, -1),
        input_counts_exact=acc.tokens_seen.exact,
    )
    mark = time.perf_counter()
    apply_labels(dashboards, model, explainer=explainer)
    timings["labels"] = time.perf_counter() - mark
    dashboards.timings = timings
    dashboards.seconds = time.perf_counter() - began
    return dashboards


def _transcoder_id(model) -> str:
    """The set's registered name (``toy-world-plt``), its hub scan, or its folder's name:
    never an absolute local path."""
    from ct_engine.transcoders.refs import scan_name

    scan = model.transcoders.scan
    if isinstance(scan, list):
        scan = scan[0] if scan else None
    return scan_name(scan) or "transcoders"
