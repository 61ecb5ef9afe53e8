"""Token samples for :func:`~ct_engine.metrics.evaluate_transcoders`.

A token sample is a list of 1-D token tensors, each starting with the model's leading special
token (BOS), as :meth:`ReplacementModel.ensure_tokenized` makes them. Long texts are cut into
sequences of at most ``max_seq_len`` tokens (BOS included); ``n_tokens`` caps the number of
evaluated tokens (positions ``≥ 1``) over the whole sample.

:data:`DEFAULT_TEXTS` is the built-in sample used when no prompts are given: a few short
English sentences (a smoke test, not a representative corpus; give real text for real
numbers).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

DEFAULT_TEXTS = (
    "The capital of the state containing Dallas is Austin.",
    "The opposite of small is big, and the opposite of north is south.",
    "Mira lives in France, where people speak French, and Tom lives in Germany.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    "The river runs from the mountains in the north to the sea in the south.",
    "When the fact was checked, it turned out that the city was not the capital.",
    "In Italy the capital is Rome; in Spain it is Madrid; in Germany it is Berlin.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "She opened the door, looked at the garden and smiled at the first flowers of spring.",
    "The meeting was moved from Tuesday to Thursday because two people were travelling.",
    "Water boils at one hundred degrees Celsius at sea level and freezes at zero.",
    "Ana asked who had written the letter, and Tom said that he did not know.",
    "The train to Paris leaves at nine and arrives a little after noon.",
    "Prices rose by three percent last year, more than most economists expected.",
    "A triangle has three sides, a square has four, and a pentagon has five.",
    "He speaks English at work, Spanish at home and a little Italian with friends.",
)


def token_sample_from_texts(
    model,
    texts: Iterable[str],
    *,
    max_seq_len: int = 128,
    n_tokens: int | None = None,
) -> list[torch.Tensor]:
    """Tokenize text lines into a token sample.

    Args:
        model: a :class:`~ct_engine.replacement.ReplacementModel` (its tokenizer and
            ``ensure_tokenized``).
        texts: one prompt per item; blank items are skipped.
        max_seq_len: longest sequence, BOS included (capped at the model's context); longer
            texts are split into several sequences, each with its own BOS.
        n_tokens: stop once this many evaluated tokens (positions ``≥ 1``) are collected;
            the last sequence is cut to fit. ``None``: use everything.

    Returns:
        1-D long tensors ``(T_i,)``, each starting with the leading special token (BOS) that
        ``model.ensure_tokenized`` adds, also when a piece of text itself starts with a
        special token (such as an unknown-word token), and with ``T_i ≥ 2``.
    """
    if max_seq_len < 2:
        raise ValueError(f"max_seq_len must be at least 2, got {max_seq_len}")
    chunk = min(max_seq_len, model.n_ctx) - 1
    lead = leading_token_id(model)
    sample: list[torch.Tensor] = []
    budget = n_tokens
    for text in texts:
        if not text.strip():
            continue
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), chunk):
            if budget is not None and budget <= 0:
                return sample
            piece = ids[start : start + chunk]
            if budget is not None:
                piece = piece[:budget]
            if not piece:
                continue
            seq = model.ensure_tokenized(piece if lead is None else [lead, *piece])
            sample.append(seq)
            if budget is not None:
                budget -= len(seq) - 1
    return sample


def leading_token_id(model) -> int | None:
    """The special token ``model.ensure_tokenized`` puts in front of a prompt (BOS), or None
    when the tokenizer has no special token (then position 0 is the first text token)."""
    specials = set(model.tokenizer.all_special_ids)
    probe = next((i for i in range(model.d_vocab) if i not in specials), None)
    if probe is None:
        return None
    tokens = model.ensure_tokenized([probe])
    return int(tokens[0]) if len(tokens) == 2 else None


def default_token_sample(
    model, *, max_seq_len: int = 128, n_tokens: int | None = None
) -> list[torch.Tensor]:
    """The built-in sample: :data:`DEFAULT_TEXTS`, tokenized like
    :func:`token_sample_from_texts`."""
    return token_sample_from_texts(model, DEFAULT_TEXTS, max_seq_len=max_seq_len, n_tokens=n_tokens)
