"""The shipped toy-world transcoders are what ``python -m ct_engine.toyworld.train_transcoders``
trains: each folder's recorded settings are the command's, for the model and corpus shipped."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import yaml

from ct_engine.presets import TOY_WORLD_TRANSCODERS, TRANSCODERS
from ct_engine.toyworld.train_transcoders import ARTIFACTS, SETTINGS, main
from ct_engine.training.train_transcoders import TRAINING_FILE


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_recorded_settings_are_the_commands(kind):
    folder = ARTIFACTS / kind
    record = json.loads((folder / TRAINING_FILE).read_text())
    assert record["config"] == asdict(SETTINGS[kind])
    assert record["kind"] == kind
    assert yaml.safe_load((folder / "config.yaml").read_text())["model_name"] == "toy-world"
    assert TRANSCODERS[f"toy-world-{kind}"] == folder


def test_the_default_set_is_shipped():
    assert TOY_WORLD_TRANSCODERS in TRANSCODERS


def test_command_rejects_an_unknown_kind(capsys):
    with pytest.raises(SystemExit):
        main(["--kind", "sae"])
    assert "invalid choice: 'sae'" in capsys.readouterr().err
