"""Activation collection: ``(x_l, y_l)`` pairs at the transcoders' hooks for every layer.

``x_l`` is the activation at the feature input hook of layer ``l`` and ``y_l`` the MLP output
at its feature output hook, exactly what :meth:`clean_run` of the replacement model's backend
records. Position 0 (the leading special token, whose features the engine zeroes) is left out.

Shapes: ``N`` token positions, ``L`` layers, ``D = d_model``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ct_engine.replacement.edits import Recorder


@dataclass
class ActivationData:
    """Training and holdout activations, float32 on CPU, rows shuffled with a seeded generator.

    Attributes:
        x: ``(N, L, D)`` encoder inputs of the training positions.
        y: ``(N, L, D)`` MLP outputs to reconstruct.
        x_holdout, y_holdout: ``(N_h, L, D)`` the same for held-out documents.
        n_documents: documents (text lines) used, training and holdout together.
        n_holdout_documents: how many of them were held out.
    """

    x: torch.Tensor
    y: torch.Tensor
    x_holdout: torch.Tensor
    y_holdout: torch.Tensor
    n_documents: int
    n_holdout_documents: int

    @property
    def n_layers(self) -> int:
        return self.x.shape[1]

    @property
    def d_model(self) -> int:
        return self.x.shape[2]


def tokenize_texts(model, texts: Sequence[str], max_seq_len: int | None = None) -> list:
    """Token tensors ``(T,)`` of the non-empty lines, each starting with the special token.

    Uses :meth:`ReplacementModel.ensure_tokenized` (which prepends BOS); sequences are cut to
    ``max_seq_len`` (default: the model's context). Lines with no token after BOS are dropped.
    """
    limit = min(max_seq_len or model.n_ctx, model.n_ctx)
    sequences = []
    for text in texts:
        if not text.strip():
            continue
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][: limit - 1]
        if not ids:
            continue
        tokens = model.ensure_tokenized(torch.tensor(ids, dtype=torch.long)).cpu()
        if len(tokens) >= 2:
            sequences.append(tokens[:limit])
    return sequences


def _batches(sequences: list, batch_tokens: int) -> Iterator[list[int]]:
    """Indices of sequences grouped (by length, deterministically) into padded batches."""
    order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i]), i))
    batch: list[int] = []
    for index in order:
        width = len(sequences[index])
        if batch and (len(batch) + 1) * width > batch_tokens:
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def _batch_activations(model, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations ``(B, L, T, D)`` at the input and output hooks for right-padded ``(B, T)``
    (one forward through the backend's ``edited_run``)."""
    recorder = Recorder(model.n_layers)
    model.impl.edited_run(tokens, recorder)
    return torch.stack(recorder.inputs, dim=1), torch.stack(recorder.outputs, dim=1)


def _sequence_activations(
    model, sequences: list, batch_tokens: int, desc: str
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x (n, L, D), y (n, L, D))`` for positions ``1..T−1`` of each batch of sequences.

    Sequences are right-padded into batches of about ``batch_tokens`` tokens (attention is
    causal, so padding after a sequence never changes it).
    """
    pad_id = model.tokenizer.pad_token_id
    pad_id = 0 if pad_id is None else pad_id
    groups = list(_batches(sequences, batch_tokens))
    for group in tqdm(groups, desc=desc, unit="batch", leave=False):
        width = max(len(sequences[i]) for i in group)
        tokens = torch.full((len(group), width), pad_id, dtype=torch.long)
        for row, index in enumerate(group):
            tokens[row, : len(sequences[index])] = sequences[index]
        x, y = _batch_activations(model, tokens.to(model.device))
        lengths = torch.tensor([len(sequences[i]) for i in group])
        valid = torch.arange(width)[None, :] < lengths[:, None]
        valid[:, 0] = False
        # (B, L, T, D) -> (B, T, L, D), keep the valid positions.
        yield (
            x.transpose(1, 2)[valid.to(x.device)].float().cpu(),
            y.transpose(1, 2)[valid.to(y.device)].float().cpu(),
        )


def collect_activations(
    model,
    texts: Sequence[str],
    *,
    max_tokens: int | None = None,
    holdout_fraction: float = 0.05,
    max_seq_len: int | None = None,
    batch_tokens: int = 4096,
    seed: int = 0,
) -> ActivationData:
    """Collect ``(x_l, y_l)`` at every layer and every position ≥ 1 of ``texts``.

    Documents (lines) are shuffled with ``seed``; the first ``holdout_fraction`` of them
    (at least one when there are two or more) are held out. Training documents are added until
    ``max_tokens`` positions are collected (holdout positions are capped at a tenth of that).
    The training rows are then shuffled with the same seed.

    Args:
        model: a :class:`~ct_engine.replacement.ReplacementModel`; only its transcoders' hook
            names matter (random transcoders with the wanted hooks will do).
        texts: one document per entry.
        max_tokens: cap on training positions (None: all).
        holdout_fraction: share of documents held out for evaluation.
        max_seq_len: cut longer documents (default: the model's context).
        batch_tokens: padded tokens per forward pass.
        seed: seed of the document and row shuffles.

    Returns:
        :class:`ActivationData` with float32 CPU tensors ``(N, L, D)``.
    """
    generator = torch.Generator().manual_seed(seed)
    sequences = tokenize_texts(model, texts, max_seq_len)
    if not sequences:
        raise ValueError("no text with at least one token after the special token")
    order = torch.randperm(len(sequences), generator=generator).tolist()
    sequences = [sequences[i] for i in order]
    n_holdout = int(round(holdout_fraction * len(sequences)))
    if holdout_fraction > 0 and len(sequences) >= 2:
        n_holdout = min(max(n_holdout, 1), len(sequences) - 1)
    holdout, train = sequences[:n_holdout], sequences[n_holdout:]
    train = _take_tokens(train, max_tokens)
    holdout = _take_tokens(holdout, None if max_tokens is None else max(max_tokens // 10, 1))

    def gather(seqs: list, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
        n_layers, d_model = model.n_layers, model.d_model
        if not seqs:
            empty = torch.empty(0, n_layers, d_model)
            return empty, empty.clone()
        total = sum(len(s) - 1 for s in seqs)
        x = torch.empty(total, n_layers, d_model)
        y = torch.empty(total, n_layers, d_model)
        start = 0
        for xb, yb in _sequence_activations(model, seqs, batch_tokens, desc):
            x[start : start + len(xb)] = xb
            y[start : start + len(yb)] = yb
            start += len(xb)
        return x, y

    x, y = gather(train, "collect train")
    x_h, y_h = gather(holdout, "collect holdout")
    perm = torch.randperm(len(x), generator=generator)
    return ActivationData(
        x=x[perm],
        y=y[perm],
        x_holdout=x_h,
        y_holdout=y_h,
        n_documents=len(train) + len(holdout),
        n_holdout_documents=len(holdout),
    )


def _take_tokens(sequences: list, max_tokens: int | None) -> list:
    """Leading sequences with at most ``max_tokens`` positions ≥ 1 in all (the last one cut)."""
    if max_tokens is None:
        return sequences
    taken, count = [], 0
    for seq in sequences:
        if count >= max_tokens:
            break
        keep = min(len(seq) - 1, max_tokens - count)
        taken.append(seq[: keep + 1])
        count += keep
    return taken
