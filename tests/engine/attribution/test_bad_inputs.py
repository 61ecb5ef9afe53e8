"""Bad input gets a clear error that says what to do."""

from __future__ import annotations

import time

import pytest
import torch

from ct_engine.attribution import attribute
from ct_engine.replacement import ModelLoadError, ReplacementModel
from ct_engine.tiny import build_random_transcoders
from ct_engine.transcoders import TranscoderFormatError

from ..conftest import PROMPT


@pytest.fixture(scope="module")
def model(replacement_model):
    return replacement_model("llama", "plt_jumprelu")


@pytest.mark.parametrize("prompt", ["", "   ", []])
def test_empty_prompt(model, prompt):
    with pytest.raises(ValueError, match="empty"):
        attribute(prompt, model)


def test_prompt_longer_than_context(model):
    too_long = " ".join(["the"] * model.n_ctx)  # plus the prepended special token
    with pytest.raises(ValueError, match="context is 512: shorten it"):
        attribute(too_long, model)


@pytest.mark.parametrize("target", [["Austin Dallas"], ["capital city"]])
def test_target_string_not_one_token(model, target):
    with pytest.raises(ValueError, match="not exactly one"):
        attribute(PROMPT, model, attribution_targets=target)


def test_target_ids_out_of_range(model):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        attribute(PROMPT, model, attribution_targets=torch.tensor([3, model.d_vocab]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        attribute(PROMPT, model, attribution_targets=[-1])


def test_prompt_token_ids_out_of_range(model):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        attribute([1, 5, model.d_vocab + 3], model)


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, True])
def test_batch_size_below_one(model, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        attribute(PROMPT, model, batch_size=batch_size)


def test_bad_custom_target(model):
    with pytest.raises(ValueError, match="expected \\(32,\\)"):
        attribute(PROMPT, model, attribution_targets=[("x", 1.0, torch.zeros(5))])
    with pytest.raises(ValueError, match="attribution_targets is empty"):
        attribute(PROMPT, model, attribution_targets=[])


def test_unknown_model_fails_fast(transcoder_dir):
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="could not load model 'no-such/model'"):
        ReplacementModel.from_pretrained("no-such/model", transcoder_dir("llama", "plt_jumprelu"))
    assert time.perf_counter() - start < 10
    with pytest.raises(ModelLoadError, match="does not exist"):
        ReplacementModel.from_pretrained("/no/such/dir", transcoder_dir("llama", "plt_jumprelu"))


def test_transcoders_of_another_width(tiny_model_dir, tmp_path):
    wrong = build_random_transcoders(tmp_path / "tc", n_layers=3, d_model=48, d_transcoder=64)
    with pytest.raises(TranscoderFormatError) as err:
        ReplacementModel.from_pretrained(tiny_model_dir("llama"), wrong)
    assert "d_model" in str(err.value) and "layer_0.safetensors" in str(err.value)


def test_transcoders_with_missing_layers(tiny_model_dir, tmp_path):
    short = build_random_transcoders(tmp_path / "tc", n_layers=2, d_model=32, d_transcoder=64)
    with pytest.raises(TranscoderFormatError, match="layer"):
        ReplacementModel.from_pretrained(tiny_model_dir("llama"), short)


def test_transcoder_hook_the_model_lacks(tiny_model_dir, tmp_path):
    odd = build_random_transcoders(
        tmp_path / "tc", n_layers=3, d_model=32, d_transcoder=64, feature_input_hook="hook_nope"
    )
    with pytest.raises(ValueError, match="hook_nope"):
        ReplacementModel.from_pretrained(tiny_model_dir("llama"), odd)
