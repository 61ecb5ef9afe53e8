"""The shipped toy world loads by name, offline."""

from __future__ import annotations

import pytest

from ct_engine import ReplacementModel
from ct_engine.presets import MODELS, TRANSCODERS, resolve_model, resolve_transcoders
from ct_engine.replacement.model import ModelLoadError


def test_registered_names_resolve_to_shipped_folders():
    assert resolve_model("toy-world") == str(MODELS["toy-world"])
    assert resolve_transcoders("toy-world-plt") == TRANSCODERS["toy-world-plt"]
    assert resolve_model("some/hub-id") == "some/hub-id"


def test_toy_world_loads_by_name_and_answers():
    model = ReplacementModel.from_pretrained("toy-world", "toy-world-plt", device="cpu")
    assert model.n_layers == 4 and model.d_model == 128
    assert model.transcoders.d_transcoder == 1024
    logits, _ = model.get_activations("The capital of the country where Mosho lives is")
    assert model.tokenizer.decode([int(logits[0, -1].argmax())]) == "Ludus"


def test_unknown_model_name_fails_fast():
    with pytest.raises(ModelLoadError):
        ReplacementModel.from_pretrained("./no-such-model", "toy-world-plt", device="cpu")
