"""A feature's output effect: the tokens its decoder vector promotes and suppresses.

The direct path from a feature to the logits is ``d · norm(·) · W_U``: its decoder vector
``d`` is added to the residual stream, and the final norm and the unembedding read it. With
the norm's per-token denominator (the residual's RMS, or standard deviation) held fixed, as
attribution holds it, the norm is linear: an elementwise scale ``γ`` (and, for a LayerNorm,
centring). The denominator is a positive number that differs per token position and scales
every logit of a position alike, so it changes no ranking and is left out: the effect of
feature ``f`` on token ``v`` is ``((d_f − mean(d_f)·[LayerNorm]) ⊙ γ) · W_U[:, v]``.

``γ`` is read by applying the model's final norm to a vector of ones (RMS 1), which gives
the effective scale whatever the norm's weight convention (Gemma's ``1 + w`` included). A
LayerNorm (which would centre the vector of ones to zero) is read from its ``weight``. A model
whose final norm cannot be found uses ``γ = 1``.

For a cross-layer transcoder a feature writes to every layer from its own to the last; all
those writes add into the residual stream that the unembedding reads, so the effect uses the
sum of its decoder vectors over the layers it writes to.
"""

from __future__ import annotations

import torch

_FINAL_NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "final_norm")


def final_norm(hf_model) -> torch.nn.Module | None:
    """The final norm module of a Hugging Face causal LM, or None when not found."""
    owners = []
    get_decoder = getattr(hf_model, "get_decoder", None)
    if callable(get_decoder):
        try:
            owners.append(get_decoder())
        except (AttributeError, NotImplementedError, TypeError):
            pass
    owners += [getattr(hf_model, name, None) for name in ("model", "transformer", "gpt_neox")]
    owners.append(hf_model)
    for owner in owners:
        if owner is None:
            continue
        for name in _FINAL_NORM_NAMES:
            module = getattr(owner, name, None)
            if isinstance(module, torch.nn.Module):
                return module
    return None


@torch.no_grad()
def norm_scale(hf_model, d_model: int, device, dtype=torch.float32) -> tuple[torch.Tensor, bool]:
    """``(γ (D,), centred)``: the final norm's elementwise scale and whether it centres."""
    module = final_norm(hf_model)
    if module is None:
        return torch.ones(d_model, device=device, dtype=dtype), False
    if isinstance(module, torch.nn.LayerNorm) or type(module).__name__ == "LayerNorm":
        weight = getattr(module, "weight", None)
        gamma = torch.ones(d_model) if weight is None else weight.detach()
        return gamma.to(device=device, dtype=dtype), True
    param = next(module.parameters(), None)
    ones = torch.ones(1, 1, d_model, device=param.device if param is not None else device)
    if param is not None:
        ones = ones.to(param.dtype)
    gamma = module(ones).reshape(-1)
    if gamma.shape[0] != d_model or not torch.isfinite(gamma).all() or gamma.abs().max() == 0:
        return torch.ones(d_model, device=device, dtype=dtype), False
    return gamma.to(device=device, dtype=dtype), False


@torch.no_grad()
def output_effects(
    model, n: int = 10, chunk: int = 2048
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top and bottom ``n`` logit effects of every feature (see the module docstring).

    Returns ``(top_ids, top_values, bottom_ids, bottom_values)``, each ``(L, F, n)`` on the
    CPU (ids int64, values float32; bottom values most negative first). Decoder rows are read
    ``chunk`` features at a time, so memory stays ``chunk × V``.
    """
    transcoders = model.transcoders
    L, F = transcoders.n_layers, transcoders.d_transcoder
    W_U = model.impl.unembedding.float()  # (D, V)
    n = min(n, W_U.shape[1])
    gamma, centred = norm_scale(model.impl.hf_model, W_U.shape[0], W_U.device)
    top_ids = torch.empty(L, F, n, dtype=torch.long)
    top_vals = torch.empty(L, F, n)
    bot_ids = torch.empty(L, F, n, dtype=torch.long)
    bot_vals = torch.empty(L, F, n)
    for layer in range(L):
        for start in range(0, F, chunk):
            ids = torch.arange(start, min(start + chunk, F))
            d = transcoders.decoder_vectors(layer, ids).to(W_U.device).float()
            if d.ndim == 3:  # cross-layer: (n, L − layer, D), every write reaches the logits
                d = d.sum(dim=1)
            if centred:
                d = d - d.mean(dim=-1, keepdim=True)
            effect = (d * gamma) @ W_U  # (chunk, V)
            top = effect.topk(n, dim=-1)
            bottom = effect.topk(n, dim=-1, largest=False)
            top_ids[layer, ids], top_vals[layer, ids] = top.indices.cpu(), top.values.cpu()
            bot_ids[layer, ids], bot_vals[layer, ids] = bottom.indices.cpu(), bottom.values.cpu()
    return top_ids, top_vals, bot_ids, bot_vals
