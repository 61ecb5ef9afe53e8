"""How an intervention moved the model's next-token distribution, as rows and as text."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LogitChange:
    """One token's next-token probability and logit before and after an intervention."""

    token_id: int
    token: str
    prob_before: float
    prob_after: float
    logit_before: float
    logit_after: float

    @property
    def delta_logit(self) -> float:
        return self.logit_after - self.logit_before


def top_logit_changes(
    before: torch.Tensor, after: torch.Tensor, tokenizer, top: int = 10
) -> list[LogitChange]:
    """The union of the ``top`` most probable tokens before and after, most probable after first.

    Args:
        before, after: logits ``(V,)`` at one position.
    """
    p_before, p_after = torch.softmax(before.double(), -1), torch.softmax(after.double(), -1)
    ids = torch.cat([p_before.topk(top).indices, p_after.topk(top).indices]).unique()
    ids = ids[p_after[ids].argsort(descending=True)]
    return [
        LogitChange(
            token_id=int(i),
            token=tokenizer.decode([int(i)]),
            prob_before=float(p_before[i]),
            prob_after=float(p_after[i]),
            logit_before=float(before[i]),
            logit_after=float(after[i]),
        )
        for i in ids
    ]


def format_logit_changes(changes: list[LogitChange]) -> str:
    """A plain-text table: token, p before, p after, Δp, Δlogit."""
    width = max([len(repr(c.token)) for c in changes] + [5])
    lines = [f"{'token':<{width}}  {'p before':>9}  {'p after':>9}  {'Δp':>8}  {'Δlogit':>8}"]
    for c in changes:
        lines.append(
            f"{c.token!r:<{width}}  {c.prob_before:9.4f}  {c.prob_after:9.4f}  "
            f"{c.prob_after - c.prob_before:+8.4f}  {c.delta_logit:+8.3f}"
        )
    return "\n".join(lines)
