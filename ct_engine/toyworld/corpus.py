"""The training corpus: short documents of fact sentences and filler, one per line.

Each document is 2 to 6 sentences drawn independently: a one-hop fact sentence, a two-hop fact
sentence (both from :meth:`World.training_sentences`, so held-out fact/template pairs never
appear), or a filler sentence (everyday text about the world's people: food, pets, days,
counting, repeated phrases). Sentences are drawn independently, so a document rarely holds
two facts about the same entity: two-hop facts have to be recalled, not read from context.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from ct_engine.toyworld.templates import FILLER, NUMBER_WORDS, WORD_CLASSES, slot_class
from ct_engine.toyworld.world import World

_SLOT_RE = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class CorpusConfig:
    """Corpus size and mixture. The filler share is ``1 - p_one_hop - p_two_hop``."""

    n_docs: int = 12_000
    min_sentences: int = 2
    max_sentences: int = 6
    p_one_hop: float = 0.4
    p_two_hop: float = 0.3


def filler_sentence(rng: random.Random, world: World) -> str:
    """One filler sentence; people are the world's, words come from the template classes."""
    template = rng.choice(FILLER)
    people = [p.name for p in world.people]
    values: dict[str, str] = {}

    def value(m: re.Match) -> str:
        slot = m.group(1)
        if slot not in values:
            cls = slot_class(slot)
            if cls == "count":
                n = rng.randint(3, 5)
                start = rng.randrange(len(NUMBER_WORDS) - n + 1)
                values[slot] = ", ".join(NUMBER_WORDS[start : start + n])
            elif cls == "person":
                values[slot] = rng.choice(people)
            else:
                values[slot] = rng.choice(WORD_CLASSES[cls])
        return values[slot]

    return _SLOT_RE.sub(value, template)


def generate_corpus(world: World, seed: int = 0, config: CorpusConfig | None = None) -> list[str]:
    """``config.n_docs`` documents (one line each, no newlines); deterministic in ``seed``."""
    config = config or CorpusConfig()
    rng = random.Random(f"toyworld-corpus-{world.seed}-{seed}")
    one_hop = world.training_sentences(two_hop=False)
    two_hop = world.training_sentences(two_hop=True)
    docs = []
    for _ in range(config.n_docs):
        n = rng.randint(config.min_sentences, config.max_sentences)
        sentences = []
        for _ in range(n):
            u = rng.random()
            if u < config.p_one_hop:
                sentences.append(rng.choice(one_hop))
            elif u < config.p_one_hop + config.p_two_hop:
                sentences.append(rng.choice(two_hop))
            else:
                sentences.append(filler_sentence(rng, world))
        docs.append(" ".join(sentences))
    return docs


def write_corpus(path: str | Path, docs: list[str]) -> Path:
    """Write documents one per line (UTF-8, ``\\n`` line ends)."""
    path = Path(path)
    path.write_text("".join(d + "\n" for d in docs), encoding="utf-8")
    return path


def read_corpus(path: str | Path) -> list[str]:
    """Read the documents written by :func:`write_corpus`."""
    return Path(path).read_text(encoding="utf-8").splitlines()
