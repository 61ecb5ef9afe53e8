"""The training loop: AdamW on next-token loss, seeded and deterministic on CPU.

Determinism: :func:`deterministic` fixes the thread count (results of CPU matmuls can depend
on how work is split over threads) and turns on ``torch.use_deterministic_algorithms``;
batches come from a ``torch.Generator`` seeded from the run's seed. Two runs with the same
seed, thread count and torch build on the same kind of CPU give bit-identical weights.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ct_engine.toyworld.tokenizer import BOS_ID, EOS_ID, PAD_ID

IGNORE = -100


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and batching settings.

    The learning rate warms up linearly for ``warmup_steps`` and then follows a cosine down to
    ``lr * min_lr_ratio``. Sequences are ``<bos> document <eos>``, cut at ``max_len`` tokens.
    """

    steps: int = 500
    batch_size: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0
    max_len: int = 96
    threads: int = 2


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads and deterministic algorithms; restore."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)


def encode_documents(tokenizer, docs: list[str], max_len: int) -> list[list[int]]:
    """``<bos> ids <eos>`` per document, cut to ``max_len`` tokens (always starting with BOS)."""
    enc = tokenizer(docs, add_special_tokens=False)["input_ids"]
    return [([BOS_ID] + ids + [EOS_ID])[:max_len] for ids in enc]


def batches(
    sequences: list[list[int]], batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Endless stream of right-padded ``(batch_size, T)`` id batches.

    Each epoch shuffles the sequences, sorts them by length within groups of 16 batches (less
    padding), and shuffles the batches' order; ``T`` is the longest sequence in the batch.
    """
    n = len(sequences)
    group = 16 * batch_size
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        chunks = []
        for g in range(0, n - batch_size + 1, group):
            block = sorted(order[g : g + group], key=lambda i: len(sequences[i]))
            chunks += [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
        chunks = [c for c in chunks if len(c) == batch_size]
        for j in torch.randperm(len(chunks), generator=generator).tolist():
            rows = [sequences[i] for i in chunks[j]]
            width = max(len(r) for r in rows)
            batch = torch.full((batch_size, width), PAD_ID, dtype=torch.long)
            for i, r in enumerate(rows):
                batch[i, : len(r)] = torch.tensor(r)
            yield batch


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate at ``step`` (0-based): linear warm-up, then cosine decay."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(t, 1.0)))


def train_loop(
    model,
    sequences: list[list[int]],
    cfg: TrainConfig,
    seed: int,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> list[float]:
    """Train ``model`` in place for ``cfg.steps`` AdamW steps; return the loss of each step.

    ``on_step(step)`` runs after each optimiser step (e.g. a periodic evaluation; it must leave
    the model's weights and the global RNG alone to keep the run deterministic).

    The loss is the mean next-token cross-entropy over non-pad targets (``labels`` equal the
    inputs with pads set to -100; the model shifts them). Biases and norm gains (1-D
    parameters) get no weight decay.
    """
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        foreach=False,
    )
    gen = torch.Generator().manual_seed(seed)
    stream = batches(sequences, cfg.batch_size, gen)
    losses: list[float] = []
    model.train()
    bar = tqdm(range(cfg.steps), desc="train toy model", disable=not progress, mininterval=2.0)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        input_ids = next(stream)  # (B, T)
        labels = input_ids.masked_fill(input_ids == PAD_ID, IGNORE)
        loss = model(input_ids=input_ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr_at(step, cfg):.1e}")
        if on_step is not None:
            on_step(step)
            model.train()
    model.eval()
    return losses
