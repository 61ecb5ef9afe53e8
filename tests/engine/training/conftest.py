"""Activations of the tiny Llama model (3 layers, d_model 32) on synthetic text."""

from __future__ import annotations

import random

import pytest

from ct_engine.tiny import _WORDS, FAMILY_HOOKS

HOOKS = FAMILY_HOOKS["llama"]


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` lines of 4–24 words the tiny tokenizer knows."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 24))) for _ in range(n)]


@pytest.fixture(scope="session")
def texts_file(tiny_root):
    path = tiny_root / "training-texts.txt"
    path.write_text("\n".join(synthetic_texts(160)) + "\n")
    return path


@pytest.fixture(scope="session")
def hooked_llama(tiny_model_dir):
    from ct_engine.training import load_hooked_model

    return load_hooked_model(tiny_model_dir("llama"), HOOKS)


@pytest.fixture(scope="session")
def llama_activations(hooked_llama, texts_file):
    from ct_engine.training import collect_activations

    texts = texts_file.read_text().splitlines()
    return collect_activations(hooked_llama, texts, holdout_fraction=0.1, seed=0)
