"""The shipped toy world model: it reproduces its eval.json and its corpus from the seed."""

from __future__ import annotations

import json

import pytest

from ct_engine.toyworld.corpus import CorpusConfig, generate_corpus, read_corpus
from ct_engine.toyworld.default_model import DEFAULT_MODEL_DIR, load_world
from ct_engine.toyworld.evaluate import evaluate_world

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "model.safetensors").exists(), reason="toy model not built"
)


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads((DEFAULT_MODEL_DIR / "eval.json").read_text())


def test_accuracies_are_high(record):
    summary = record["summary"]
    assert summary["one_hop_heldout_template"] >= 0.95
    assert summary["two_hop_heldout_template"] >= 0.9
    assert summary["two_hop_composition"] >= 0.8
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size < 10 * 2**20


def test_model_reproduces_its_accuracies(record):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_DIR)
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_DIR)
    assert model.config.architectures == ["LlamaForCausalLM"]
    measured = evaluate_world(model, tokenizer, load_world())
    # Equal up to one prompt per split: another CPU may round a near-tie the other way.
    for kind, splits in record["accuracy"].items():
        for split, expected in splits.items():
            if split != "by_relation":
                got = measured[kind][split]
                assert got["n"] == expected["n"]
                assert abs(got["accuracy"] - expected["accuracy"]) <= 1.01 / expected["n"]


def test_corpus_is_regenerated_from_the_seed(record):
    world = load_world()
    config = CorpusConfig(**record["settings"]["corpus"])
    assert generate_corpus(world, record["seed"], config) == read_corpus(
        DEFAULT_MODEL_DIR / "corpus.txt"
    )
