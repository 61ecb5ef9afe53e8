"""Greedy next-token accuracy on the world's prompts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from ct_engine.toyworld.tokenizer import BOS_ID, PAD_ID
from ct_engine.toyworld.world import FactPrompt, World


@torch.no_grad()
def greedy_next_tokens(
    model, tokenizer, prompts: Sequence[str], batch_size: int = 256
) -> list[int]:
    """The argmax next-token id after ``<bos> + prompt``, for each prompt.

    Prompts are right-padded into batches of shape ``(B, T)``; attention is causal, so padding
    after a prompt's last token cannot change its logits, which are read at that position.
    """
    model.eval()
    out: list[int] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids = [[BOS_ID] + tokenizer(p, add_special_tokens=False)["input_ids"] for p in chunk]
        width = max(len(x) for x in ids)
        batch = torch.full((len(ids), width), PAD_ID, dtype=torch.long)
        for i, x in enumerate(ids):
            batch[i, : len(x)] = torch.tensor(x)
        last = torch.tensor([len(x) - 1 for x in ids])
        logits = model(input_ids=batch).logits  # (B, T, V)
        out += logits[torch.arange(len(ids)), last].argmax(-1).tolist()
    return out


def accuracy_by_split(
    model, tokenizer, prompts: Sequence[FactPrompt]
) -> dict[str, dict[str, float | int]]:
    """``{split: {"accuracy": ..., "n": ...}}`` plus ``"by_relation"`` per split and relation."""
    preds = greedy_next_tokens(model, tokenizer, [p.prompt for p in prompts])
    hits: dict[str, list[bool]] = defaultdict(list)
    rel_hits: dict[str, list[bool]] = defaultdict(list)
    for p, pred in zip(prompts, preds, strict=True):
        answer_id = tokenizer.convert_tokens_to_ids(p.answer)
        hits[p.split].append(pred == answer_id)
        rel_hits[f"{p.split}/{p.relation}"].append(pred == answer_id)
    result: dict = {s: {"accuracy": sum(h) / len(h), "n": len(h)} for s, h in sorted(hits.items())}
    result["by_relation"] = {k: sum(h) / len(h) for k, h in sorted(rel_hits.items())}
    return result


def evaluate_world(model, tokenizer, world: World) -> dict:
    """One- and two-hop accuracies by split (see :mod:`ct_engine.toyworld.world`)."""
    return {
        "one_hop": accuracy_by_split(model, tokenizer, world.one_hop_prompts()),
        "two_hop": accuracy_by_split(model, tokenizer, world.two_hop_prompts()),
    }
