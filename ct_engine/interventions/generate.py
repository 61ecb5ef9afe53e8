"""Text generation under feature interventions.

The first step runs the whole prompt with every intervention and with the freezing of
:func:`~ct_engine.interventions.feature_intervention`. Later steps add one token each; only
**open-ended** interventions (a ``slice`` position with ``stop=None``, such as
``slice(6, None)``) also apply to the new tokens, and nothing is frozen at new positions.

We do not use a key-value cache. Each step runs the prompt plus the tokens so far, with the
prompt's positions edited exactly as in the first step; causal attention makes their values
identical to the first step's, so the result is what a cached generation would compute, without
the cache's float drift (circuit-tracer's docstring warns about it). The cost is one forward of
the growing sequence per new token, fine for the short continuations used to read a circuit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from tqdm.auto import trange

from ct_engine.interventions.intervene import (
    InterventionPatch,
    check_constrained_layers,
    encode_activations,
    prepare_freezing,
    tokens_of,
)
from ct_engine.interventions.spec import Intervention, resolve_interventions


def feature_intervention_generate(
    model,
    inputs,
    interventions: Sequence[Intervention],
    constrained_layers: Iterable[int] | None = None,
    freeze_attention: bool = True,
    apply_activation_function: bool = True,
    sparse: bool = False,
    return_activations: bool = True,
    *,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_at_eos: bool = True,
    eos_token_id: int | Sequence[int] | None = None,
    freq_penalty: float = 0.0,
    seed: int | None = None,
    verbose: bool = False,
    use_past_kv_cache: bool = True,
    prepend_bos: bool | None = None,
    padding_side: str | None = None,
) -> tuple[str, torch.Tensor, torch.Tensor | None]:
    """Generate a continuation while intervening on features.

    Args:
        inputs, interventions, constrained_layers, freeze_attention, apply_activation_function,
            sparse, return_activations: as for
            :func:`~ct_engine.interventions.feature_intervention` (first step only, except
            open-ended interventions).
        max_new_tokens: at most this many new tokens.
        do_sample: sample instead of greedy decoding (``temperature``, ``top_k``, ``top_p``,
            and ``seed`` for a reproducible draw).
        stop_at_eos: stop after an end-of-sequence token: ``eos_token_id`` (one id or
            several), by default the tokenizer's.
        freq_penalty: when sampling, subtract ``freq_penalty × count`` from the score of each
            token already in the sequence (prompt included), as TransformerLens does; greedy
            decoding ignores it.
        verbose: a progress bar over the new tokens.
        use_past_kv_cache: accepted for circuit-tracer's signature; no cache is used either way
            (see the module doc), so the result is what a cached generation computes, without
            its float drift.
        prepend_bos, padding_side: accepted for circuit-tracer's signature and ignored: a
            string prompt always gets the leading special token that attribution uses
            (:meth:`~ct_engine.replacement.ReplacementModel.ensure_tokenized`), and one
            unpadded sequence is generated.

    Returns:
        ``text``: the prompt and the continuation, decoded without special tokens;
        ``logits``: ``(n_steps, V)``, the distribution each new token was chosen from (the last
        prompt position, then each new token but the last);
        ``activations``: ``(L, T + n_steps − 1, F)`` over every position the model read, or None.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    prompt = tokens_of(model, inputs, allow_batch=False)[0]
    n_prompt = len(prompt)
    if n_prompt + max_new_tokens - 1 > model.n_ctx:
        raise ValueError(
            f"{n_prompt} prompt tokens + {max_new_tokens} new tokens exceed the model's "
            f"context of {model.n_ctx}"
        )
    tc = model.transcoders
    resolve = dict(n_layers=model.n_layers, n_pos=n_prompt, d_transcoder=tc.d_transcoder)
    plan = resolve_interventions(interventions, **resolve)
    constrained = check_constrained_layers(constrained_layers, plan, model.n_layers)
    state, pins, clean_acts = prepare_freezing(model, prompt, plan, constrained, freeze_attention)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    eos = _eos_ids(eos_token_id if eos_token_id is not None else model.tokenizer.eos_token_id)
    sequence, rows, patch = prompt, [], None
    for _ in trange(max_new_tokens, desc="new tokens", disable=not verbose, unit="token"):
        n_pos = len(sequence)
        patch = InterventionPatch(
            tc,
            resolve_interventions(interventions, **resolve, n_pos_open=n_pos),
            n_pos=n_pos,
            state=state,
            constrained_layers=(constrained or []) if plan else [],
            clean_acts=clean_acts,
        )
        logits = model.impl.edited_run(sequence[None], patch, pins)[0, -1]
        rows.append(logits)
        if do_sample and freq_penalty:
            counts = torch.bincount(sequence, minlength=logits.shape[-1])
            logits = logits - freq_penalty * counts.to(logits)
        token = _choose(logits, do_sample, temperature, top_k, top_p, generator)
        sequence = torch.cat([sequence, token.view(1).to(sequence.device)])
        if stop_at_eos and int(token) in eos:
            break
    text = model.tokenizer.decode(sequence.tolist(), skip_special_tokens=True)
    acts = None
    if return_activations:
        acts = encode_activations(
            model,
            patch.feature_inputs,
            apply_activation_function=apply_activation_function,
            sparse=sparse,
        )
    return text, torch.stack(rows), acts


def _eos_ids(eos: int | Sequence[int] | None) -> set[int]:
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(i) for i in eos}


def _choose(
    logits: torch.Tensor,
    do_sample: bool,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The next token from ``logits (V,)``: argmax, or a draw from the filtered softmax."""
    if not do_sample:
        return logits.argmax()
    scores = logits.float().cpu() / temperature
    if top_k is not None:
        kth = torch.topk(scores, min(top_k, scores.numel())).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None:
        sorted_scores, order = torch.sort(scores, descending=True)
        cumulative = torch.softmax(sorted_scores, -1).cumsum(-1)
        drop = cumulative - torch.softmax(sorted_scores, -1) >= top_p  # keep the first past p
        scores[order[drop]] = float("-inf")
    return torch.multinomial(torch.softmax(scores, -1), 1, generator=generator)[0]
