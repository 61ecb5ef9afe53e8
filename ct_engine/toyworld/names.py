"""Invented names for the toy world, drawn from syllables with a seeded generator.

Names are capitalised two- or three-syllable words such as ``Velor`` or ``Mirana``. They are
not English words, so neither a real tokenizer's merges nor a pretrained model's prior knows
anything about them: every fact about them has to be learned from the toy corpus.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "sh")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "th")


def _syllable(rng: random.Random, coda: bool) -> str:
    onset = rng.choice(_ONSETS)
    vowel = rng.choice(_VOWELS)
    return onset + vowel + (rng.choice(_CODAS) if coda else "")


def invent_names(
    rng: random.Random, count: int, *, reserved: Iterable[str] = (), syllables: int = 2
) -> list[str]:
    """Draw ``count`` distinct capitalised names, none equal (any case) to a reserved word.

    Args:
        rng: the generator to draw from; the result depends only on its state.
        count: how many names.
        reserved: words the names must avoid (other names already drawn, template words).
        syllables: syllables per name; only the last one may end in a consonant cluster.
    """
    taken = {w.lower() for w in reserved}
    names: list[str] = []
    while len(names) < count:
        word = "".join(_syllable(rng, coda=i == syllables - 1) for i in range(syllables))
        if len(word) < 4 or word in taken:
            continue
        taken.add(word)
        names.append(word.capitalize())
    return names
