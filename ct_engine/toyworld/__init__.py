"""The toy world: a seeded fictional world, its corpus, tokenizer and a small Llama model.

The project's embedded default model is trained here from scratch on CPU (see
:mod:`ct_engine.toyworld.train_model`). Names are invented, so nothing about the world can come
from a pretrained prior; two-hop prompts ("The capital of the country where Mira lives is")
record their intermediate entity for ground-truth circuit tests.

    from ct_engine.toyworld import World
    world = World.generate(seed=0)
    world.one_hop_prompts("heldout_template"); world.two_hop_prompts("heldout_fact")
"""

from ct_engine.toyworld.corpus import CorpusConfig, generate_corpus, read_corpus
from ct_engine.toyworld.model import ModelSpec
from ct_engine.toyworld.training import TrainConfig
from ct_engine.toyworld.world import (
    SPLITS,
    FactPrompt,
    TwoHopPrompt,
    World,
    WorldSizes,
)

__all__ = [
    "SPLITS",
    "CorpusConfig",
    "FactPrompt",
    "ModelSpec",
    "TrainConfig",
    "TwoHopPrompt",
    "World",
    "WorldSizes",
    "generate_corpus",
    "read_corpus",
]
