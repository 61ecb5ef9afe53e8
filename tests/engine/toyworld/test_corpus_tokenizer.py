"""Corpus generation and the word-level tokenizer."""

from __future__ import annotations

import re

import pytest

from ct_engine.toyworld.corpus import CorpusConfig, generate_corpus, read_corpus, write_corpus
from ct_engine.toyworld.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    save_tokenizer,
    train_tokenizer,
)
from ct_engine.toyworld.world import TRAIN, World

CONFIG = CorpusConfig(n_docs=3000)


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(0)


@pytest.fixture(scope="module")
def docs(world) -> list[str]:
    return generate_corpus(world, 0, CONFIG)


@pytest.fixture(scope="module")
def tokenizer(world, docs, tmp_path_factory):
    directory = tmp_path_factory.mktemp("toy-tokenizer")
    save_tokenizer(train_tokenizer(docs, world), directory)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)


def _sentences(docs: list[str]) -> set[str]:
    return {s for d in docs for s in re.split(r"(?<=\.) ", d)}


def test_corpus_is_deterministic(world, docs, tmp_path):
    assert generate_corpus(World.generate(0), 0, CONFIG) == docs
    assert generate_corpus(world, 1, CONFIG) != docs
    path = write_corpus(tmp_path / "corpus.txt", docs)
    assert read_corpus(path) == docs
    assert len(path.read_text().splitlines()) == CONFIG.n_docs


def test_held_out_sentences_never_appear(world, docs):
    sentences = _sentences(docs)
    prompts = world.one_hop_prompts() + world.two_hop_prompts()
    held = [p for p in prompts if p.split != TRAIN]
    assert held
    assert not [p.sentence for p in held if p.sentence in sentences]
    # Training sentences do appear, and the corpus has filler besides facts.
    assert sum(p.sentence in sentences for p in prompts if p.split == TRAIN) > 0.9 * sum(
        p.split == TRAIN for p in prompts
    )
    assert len(sentences - set(world.training_sentences())) > 100


def test_entities_and_answers_are_single_tokens(world, tokenizer):
    for group in world.entity_names().values():
        for name in group:
            for text in (name, " " + name):
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                assert len(ids) == 1 and ids[0] != UNK_ID, name
    for p in world.one_hop_prompts() + world.two_hop_prompts():
        assert len(tokenizer(" " + p.answer, add_special_tokens=False)["input_ids"]) == 1
        ids = tokenizer(p.prompt, add_special_tokens=False)["input_ids"]
        assert UNK_ID not in ids


def test_special_tokens_and_vocab(world, docs, tokenizer):
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id) == (PAD_ID, BOS_ID)
    assert (tokenizer.eos_token_id, tokenizer.unk_token_id) == (EOS_ID, UNK_ID)
    assert tokenizer("Hello")["input_ids"][0] == BOS_ID
    assert 200 <= len(tokenizer) <= 2000
    # Deterministic: the same corpus gives the same vocabulary.
    again = train_tokenizer(docs, world)
    assert again.get_vocab() == tokenizer.get_vocab()
    text = docs[0]
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
