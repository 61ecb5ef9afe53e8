"""Where the shipped toy world model lives, and how to get its world back.

The model directory written by :func:`ct_engine.toyworld.train_model.train_model` records the
seed and world sizes in ``eval.json``; :func:`load_world` regenerates the exact world (and so
its prompts, answers and intermediate entities) from them.
"""

from __future__ import annotations

import json
from pathlib import Path

from ct_engine.toyworld.world import World, WorldSizes

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "artifacts" / "model"


def load_world(model_dir: str | Path = DEFAULT_MODEL_DIR) -> World:
    """The world a model directory was trained on (from its ``eval.json``)."""
    record = json.loads((Path(model_dir) / "eval.json").read_text())
    return World.generate(record["seed"], WorldSizes(**record["settings"]["world"]))
