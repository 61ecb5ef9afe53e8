"""Attribution targets: which output directions a graph explains.

Four forms are accepted by :func:`ct_engine.attribute`:

* ``None``: the salient logits, the smallest set of most probable next tokens whose
  cumulative probability reaches ``desired_logit_prob``, at most ``max_n_logits`` of them;
* a tensor (or list) of token ids;
* a sequence of strings, each exactly one token;
* a sequence of :class:`CustomTarget` (or ``(label, weight, vector)`` tuples): arbitrary
  residual directions, such as a logit difference ``u_Austin − u_Dallas``.

Real tokens are read through the *demeaned* unembedding column
``u = W_U[:, id] − mean_v W_U[:, v]`` (the logit minus the mean logit, before any softcap).
Custom vectors are used as given. Custom targets get virtual vocabulary ids ``V + i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ct_engine.graph import LogitTarget


@dataclass(frozen=True)
class CustomTarget:
    """A custom attribution target.

    Attributes:
        token_str: label shown for the target node.
        prob: its weight in pruning and ranking (a probability for token targets).
        vec: ``(D,)`` direction read at the final-norm output of the last position.
    """

    token_str: str
    prob: float
    vec: torch.Tensor


TargetSpec = (
    None
    | torch.Tensor
    | Sequence[int]
    | Sequence[str]
    | Sequence[CustomTarget | tuple[str, float, torch.Tensor]]
)


@dataclass
class AttributionTargets:
    """The resolved targets.

    Attributes:
        logit_targets: ``K`` labels with vocabulary ids (virtual ids ``>= V`` for custom).
        logit_probabilities: ``(K,)`` target weights (model probabilities for tokens).
        logit_vectors: ``(K, D)`` readout directions.
    """

    logit_targets: list[LogitTarget]
    logit_probabilities: torch.Tensor
    logit_vectors: torch.Tensor

    def __len__(self) -> int:
        return len(self.logit_targets)

    @classmethod
    def build(
        cls,
        spec: TargetSpec,
        logits: torch.Tensor,
        unembedding: torch.Tensor,
        tokenizer,
        *,
        max_n_logits: int = 10,
        desired_logit_prob: float = 0.95,
    ) -> AttributionTargets:
        """Resolve ``spec`` against last-position ``logits (V,)`` and ``unembedding (D, V)``."""
        vocab = logits.shape[-1]
        probs = torch.softmax(logits.float(), dim=-1)
        if spec is None:
            if max_n_logits < 1:
                raise ValueError(f"max_n_logits must be >= 1, got {max_n_logits}")
            if not 0.0 < desired_logit_prob <= 1.0:
                raise ValueError(f"desired_logit_prob must be in (0, 1], got {desired_logit_prob}")
            top_p, top_ids = probs.topk(min(max_n_logits, vocab))
            threshold = torch.tensor(desired_logit_prob, device=top_p.device, dtype=top_p.dtype)
            cutoff = int(torch.searchsorted(top_p.cumsum(0), threshold))
            ids = top_ids[: min(cutoff + 1, len(top_ids))]
            return cls._from_ids(ids, probs, unembedding, tokenizer)
        if isinstance(spec, torch.Tensor):
            return cls._from_ids(
                _checked_ids(spec.reshape(-1).tolist(), vocab), probs, unembedding, tokenizer
            )
        items = list(spec)
        if not items:
            raise ValueError("attribution_targets is empty: give at least one target or None")
        if all(isinstance(x, int) and not isinstance(x, bool) for x in items):
            return cls._from_ids(_checked_ids(items, vocab), probs, unembedding, tokenizer)
        if all(isinstance(x, str) for x in items):
            ids = [single_token_id(s, tokenizer) for s in items]
            return cls._from_ids(_checked_ids(ids, vocab), probs, unembedding, tokenizer)
        customs = [_as_custom(x, unembedding.shape[0]) for x in items]
        return cls(
            logit_targets=[LogitTarget(c.token_str, vocab + i) for i, c in enumerate(customs)],
            logit_probabilities=torch.tensor([float(c.prob) for c in customs]),
            logit_vectors=torch.stack([c.vec.to(unembedding) for c in customs]),
        )

    @classmethod
    def _from_ids(cls, ids, probs, unembedding, tokenizer) -> AttributionTargets:
        ids = torch.as_tensor(ids, dtype=torch.long, device=unembedding.device)
        demeaned = unembedding[:, ids] - unembedding.mean(dim=1, keepdim=True)
        return cls(
            logit_targets=[LogitTarget(tokenizer.decode([int(i)]), int(i)) for i in ids],
            logit_probabilities=probs[ids.to(probs.device)].cpu(),
            logit_vectors=demeaned.T.contiguous(),
        )


def _checked_ids(ids: list[int], vocab: int) -> list[int]:
    if not ids:
        raise ValueError("attribution_targets is empty: give at least one token id")
    bad = [i for i in ids if not 0 <= int(i) < vocab]
    if bad:
        raise ValueError(f"target token ids {bad} are outside the vocabulary [0, {vocab})")
    return [int(i) for i in ids]


def single_token_id(text: str, tokenizer, what: str = "target") -> int:
    """The id of ``text`` if it is exactly one token of the vocabulary.

    A tokenizer with an unknown token (a word-level one, as the toy world's) reads a word it
    does not know as that token: attributing it would explain ``<unk>``, not the word. Raises
    ``ValueError`` naming ``what`` and the text, how it tokenizes and, for an unknown word, the
    nearest vocabulary entries."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    pieces = [tokenizer.decode([i]) for i in ids]
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and unk in ids and text.strip() != tokenizer.unk_token:
        near = nearest_tokens(text.strip(), tokenizer)
        hint = f"; nearest: {', '.join(repr(t) for t in near)}" if near else ""
        raise ValueError(
            f"{what} {text!r} is not in the model's vocabulary (it tokenizes as {pieces}){hint}"
        )
    if len(ids) != 1:
        raise ValueError(
            f"{what} {text!r} is {len(ids)} tokens {pieces}, not exactly one: give a single-"
            "token string (mind the leading space), a token id, or a CustomTarget"
        )
    return ids[0]


def nearest_tokens(word: str, tokenizer, n: int = 3) -> list[str]:
    """Up to ``n`` vocabulary entries spelt most like ``word`` (case aside)."""
    import difflib

    special = set(getattr(tokenizer, "all_special_tokens", []))
    by_lower: dict[str, str] = {}
    for token in tokenizer.get_vocab():
        shown = token.lstrip("Ġ▁")  # BPE / SentencePiece word-start marks
        if shown and token not in special and abs(len(shown) - len(word)) <= 3:
            by_lower.setdefault(shown.lower(), shown)
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.6)
    return [by_lower[c] for c in close]


def _as_custom(item, d_model: int) -> CustomTarget:
    if isinstance(item, CustomTarget):
        target = item
    elif isinstance(item, tuple) and len(item) == 3:
        target = CustomTarget(*item)
    else:
        raise ValueError(
            f"cannot read attribution target {item!r}: use token ids, single-token strings, or "
            "CustomTarget(label, weight, vector)"
        )
    if not isinstance(target.token_str, str):
        raise ValueError(f"custom target label must be a string, got {target.token_str!r}")
    if isinstance(target.prob, bool) or not isinstance(target.prob, int | float):
        raise ValueError(f"custom target weight must be a number, got {target.prob!r}")
    vec = torch.as_tensor(target.vec)
    if vec.shape != (d_model,):
        raise ValueError(
            f"custom target {target.token_str!r} has a vector of shape {tuple(vec.shape)}; "
            f"expected ({d_model},)"
        )
    return CustomTarget(target.token_str, float(target.prob), vec)
