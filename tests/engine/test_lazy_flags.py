"""``ct attribute``'s lazy-loading switches: circuit-tracer's defaults (lazy decoder on, lazy
encoder off), both turned either way, in dashed and underscored spellings, reach the model."""

from __future__ import annotations

import pytest

from ct_cli.main import COMMANDS
from ct_engine import commands
from ct_engine.commands._shared import load_model_from_args


def _parse(*flags: str):
    parser = commands.build_parser(COMMANDS, prog="ct")
    return parser.parse_args(["attribute", "-p", "x", "-t", "tc", *flags])


@pytest.mark.parametrize(
    ("flags", "encoder", "decoder"),
    [
        ((), False, True),
        (("--lazy-encoder",), True, True),
        (("--lazy_encoder",), True, True),
        (("--lazy-encoder", "--no-lazy-encoder"), False, True),
        (("--lazy_encoder", "--no_lazy_encoder"), False, True),
        (("--no-lazy-decoder",), False, False),
        (("--no_lazy_decoder",), False, False),
        (("--no-lazy-decoder", "--lazy_decoder"), False, True),
        (("--no_lazy_decoder", "--lazy-decoder", "--lazy-encoder"), True, True),
    ],
)
def test_the_switches_and_their_defaults(flags, encoder, decoder):
    args = _parse(*flags)
    assert (args.lazy_encoder, args.lazy_decoder) == (encoder, decoder)


def test_the_help_says_each_default_once(capsys):
    with pytest.raises(SystemExit):
        commands.main(COMMANDS, ["attribute", "--help"], prog="ct")
    page = " ".join(capsys.readouterr().out.split())
    assert "[--lazy-encoder | --no-lazy-encoder]" in page
    assert "[--lazy-decoder | --no-lazy-decoder]" in page
    assert "--lazy-encoder, --lazy_encoder, --no-lazy-encoder, --no_lazy_encoder" in page
    assert "(default: off; --lazy-encoder turns it on)" in page
    assert "(default: on; --no-lazy-decoder turns it off)" in page


@pytest.mark.parametrize(
    ("flags", "encoder", "decoder"),
    [((), False, True), (("--lazy_encoder", "--no_lazy_decoder"), True, False)],
)
def test_the_switches_reach_the_transcoders(
    flags, encoder, decoder, tiny_model_dir, transcoder_dir
):
    args = _parse(
        "-m",
        str(tiny_model_dir("llama")),
        "-t",
        str(transcoder_dir("llama", "plt_jumprelu")),
        *flags,
    )
    model = load_model_from_args(args)
    assert (model.transcoders.lazy_encoder, model.transcoders.lazy_decoder) == (encoder, decoder)
    logits, _ = model.get_activations("the capital of Texas")
    assert logits.isfinite().all()
