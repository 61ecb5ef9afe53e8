"""``ct intervene``: set features to values (``layer,pos,feature=value``) and print how the
next-token distribution moves; ``--generate N`` continues the text under the intervention."""

from __future__ import annotations

import argparse

from ct_engine.commands._shared import add_model_flags, load_model_from_args
from ct_engine.options import DTYPE_NAMES

NAME = "intervene"
HELP = "set features to values and show how the next-token distribution moves"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--prompt", required=True)
    add_model_flags(parser)
    parser.add_argument(
        "interventions",
        nargs="+",
        metavar="LAYER,POS,FEATURE=VALUE",
        help="set a feature's activation; POS may be a range a:b or an open-ended a: "
        "(follows --generate); VALUE may be *c for c times its clean activation",
    )
    parser.add_argument(
        "--constrained",
        action="store_true",
        help="direct effects only: freeze every layer's MLP output and norm (constrained_layers "
        "= all layers)",
    )
    parser.add_argument("--no-freeze-attention", dest="freeze_attention", action="store_false")
    parser.add_argument("--top", type=int, default=10, help="tokens to show")
    parser.add_argument("--generate", type=int, metavar="N", help="continue the text N tokens")


def run(args: argparse.Namespace) -> int:
    """Run the interventions, print top-logit changes (and continuations)."""
    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    if args.generate is not None and args.generate < 1:
        raise ValueError(f"--generate must be at least 1, got {args.generate}")
    if not args.prompt.strip():
        raise ValueError("the prompt is empty")
    import torch

    from ct_engine.interventions.report import format_logit_changes, top_logit_changes
    from ct_engine.interventions.spec import parse_intervention

    dtype = getattr(torch, DTYPE_NAMES[args.dtype])
    items = [parse_intervention(text) for text in args.interventions]
    for text, item in zip(args.interventions, items, strict=True):
        if not item.relative:  # before the model loads; a factor is checked once resolved
            _check_fits(text, item.value, dtype)
    model = load_model_from_args(args)
    tokens = model.ensure_tokenized(args.prompt)
    clean_logits, clean_acts = model.get_activations(tokens)
    interventions = [item.resolve(clean_acts) for item in items]
    for text, item in zip(args.interventions, items, strict=True):
        if item.relative:  # in float64: the product in the model's dtype may be inf already
            clean = clean_acts[item.layer, item.pos, item.feature].double()
            _check_fits(text, item.value * clean, dtype)
    constrained = range(model.n_layers) if args.constrained else None
    logits, _ = model.feature_intervention(
        tokens,
        interventions,
        constrained_layers=constrained,
        freeze_attention=args.freeze_attention,
        return_activations=False,
    )
    if not torch.isfinite(logits[0, -1]).all():
        raise ValueError(
            f"the interventions drive the model's {args.dtype} activations past their range "
            "(its logits are no longer finite numbers): give smaller values"
        )
    words = [model.tokenizer.decode([int(t)]) for t in tokens]
    print(f"prompt: {len(tokens)} tokens: {' | '.join(repr(w) for w in words)}")
    for layer, pos, feat, value in interventions:
        where = pos if isinstance(pos, int) else f"{pos.start or 0}:{pos.stop or ''}"
        before = clean_acts[layer, pos, feat]
        print(
            f"  layer {layer}, pos {where}, feature {feat}: clean {_values(before)} -> "
            f"{_values(value)}"
        )
    mode = "constrained (direct effects)" if args.constrained else "full forward"
    frozen = ", attention frozen" if args.freeze_attention else ""
    print(f"\nnext-token distribution after {words[-1]!r} ({mode}{frozen}):")
    print(
        format_logit_changes(
            top_logit_changes(clean_logits[0, -1], logits[0, -1], model.tokenizer, args.top)
        )
    )
    if args.generate:
        kwargs = dict(max_new_tokens=args.generate, return_activations=False)
        clean_text, _, _ = model.feature_intervention_generate(tokens, [], **kwargs)
        text, _, _ = model.feature_intervention_generate(
            tokens,
            interventions,
            constrained_layers=constrained,
            freeze_attention=args.freeze_attention,
            **kwargs,
        )
        print(f"\nclean:      {clean_text}\nintervened: {text}")
    return 0


def _check_fits(text: str, value, dtype) -> None:
    """Refuse a value the model's dtype cannot hold: it would become infinite, and every
    probability NaN."""
    import torch

    largest = torch.finfo(dtype).max
    biggest = float(torch.as_tensor(value, dtype=torch.float64).abs().max())
    if biggest > largest:
        raise ValueError(
            f"{text!r}: the value {biggest:g} overflows the model's dtype "
            f"{str(dtype).removeprefix('torch.')} (largest {largest:g})"
        )


def _values(value) -> str:
    import torch

    if isinstance(value, torch.Tensor) and value.numel() > 1:
        shown = ", ".join(_values(v) for v in value.flatten()[:6])
        return f"[{shown}{', ...' if value.numel() > 6 else ''}]"
    return f"{float(value) + 0.0:.3f}"  # + 0.0 prints -0.0 as 0.000
