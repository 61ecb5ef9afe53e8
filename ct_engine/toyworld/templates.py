"""Sentence templates of the toy world: facts (one- and two-hop) and filler.

A fact template is a sentence whose last word is the answer, written with two slots:
``{s}`` (the subject) and ``{a}`` (the answer), e.g. ``"The capital of {s} is {a}."``. Its
*prompt* is the text before ``{a}``: ``"The capital of Velor is"``. Filler templates use
word-class slots (``{food}``, ``{animal}``, ...; a digit suffix such as ``{food2}`` names a
second draw, and a repeated slot name repeats its value) and entity slots (``{person}``).

Templates are checked to be *prefix-free* (:func:`check_prefix_free`): no fact prompt is a
prefix of another template's sentence, so the next word after a prompt is determined by the
world (greedy next-token evaluation is well posed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Entity kinds. Every entity name is one word (one token).
PERSON, CITY, COUNTRY, LANGUAGE = "person", "city", "country", "language"
ENTITY_KINDS = (PERSON, CITY, COUNTRY, LANGUAGE)


@dataclass(frozen=True)
class Relation:
    """A relation from a subject kind to an answer kind, stated in several templates.

    ``hops`` is empty for a one-hop relation; for a two-hop relation it names the two one-hop
    relations it composes, e.g. ``("person_country", "country_capital")``.
    """

    name: str
    subject_kind: str
    answer_kind: str
    templates: tuple[str, ...]
    hops: tuple[str, ...] = ()

    @property
    def is_two_hop(self) -> bool:
        return bool(self.hops)


ONE_HOP = (
    Relation(
        "person_city",
        PERSON,
        CITY,
        (
            "{s} lives in {a}.",
            "The city where {s} lives is {a}.",
            "{s} has a house in {a}.",
            "The home of {s} is in {a}.",
        ),
    ),
    Relation(
        "person_country",
        PERSON,
        COUNTRY,
        (
            "{s} is a citizen of {a}.",
            "{s} comes from {a}.",
            "The country where {s} lives is {a}.",
            "{s} holds a passport of {a}.",
        ),
    ),
    Relation(
        "city_country",
        CITY,
        COUNTRY,
        (
            "{s} is a city in {a}.",
            "{s} is located in {a}.",
            "The city of {s} lies in {a}.",
            "{s} belongs to {a}.",
        ),
    ),
    Relation(
        "country_capital",
        COUNTRY,
        CITY,
        (
            "The capital of {s} is {a}.",
            "{s} has its capital in {a}.",
            "The capital city of {s} is {a}.",
            "The government of {s} sits in {a}.",
        ),
    ),
    Relation(
        "country_language",
        COUNTRY,
        LANGUAGE,
        (
            "People in {s} speak {a}.",
            "The language of {s} is {a}.",
            "In {s}, people speak {a}.",
            "Most people in {s} speak {a}.",
        ),
    ),
)

TWO_HOP = (
    Relation(
        "person_capital",
        PERSON,
        CITY,
        (
            "The capital of the country where {s} lives is {a}.",
            "{s} is from a country whose capital is {a}.",
            "The capital of the home country of {s} is {a}.",
        ),
        hops=("person_country", "country_capital"),
    ),
    Relation(
        "person_language",
        PERSON,
        LANGUAGE,
        (
            "People in the country where {s} lives speak {a}.",
            "The language of the country where {s} lives is {a}.",
            "In the country where {s} lives, people speak {a}.",
        ),
        hops=("person_country", "country_language"),
    ),
    Relation(
        "city_capital",
        CITY,
        CITY,
        (
            "The capital of the country containing {s} is {a}.",
            "{s} is in a country whose capital is {a}.",
            "The capital of the country that contains {s} is {a}.",
        ),
        hops=("city_country", "country_capital"),
    ),
    Relation(
        "city_language",
        CITY,
        LANGUAGE,
        (
            "People in {s} speak {a}.",
            "The language spoken in {s} is {a}.",
            "The language of the country containing {s} is {a}.",
        ),
        hops=("city_country", "country_language"),
    ),
)

RELATIONS = {r.name: r for r in ONE_HOP + TWO_HOP}

# Word classes for filler slots. Lower-case common words: never equal to an invented name.
WORD_CLASSES: dict[str, tuple[str, ...]] = {
    "food": ("bread", "rice", "fish", "apples", "soup", "cheese", "honey", "beans", "eggs"),
    "animal": ("dog", "cat", "horse", "goat", "bird", "fox", "sheep", "cow", "duck"),
    "color": ("red", "blue", "green", "yellow", "white", "black", "brown", "grey"),
    "place": ("market", "river", "school", "garden", "library", "harbor", "park", "bakery"),
    "weather": ("cold", "warm", "windy", "rainy", "sunny", "dry", "foggy"),
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "thing": ("book", "letter", "basket", "lamp", "song", "story", "map", "hat", "cup"),
    "season": ("spring", "summer", "autumn", "winter"),
    "adj": ("small", "old", "happy", "quiet", "busy", "tired", "clever", "young"),
}
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

# ``{count}`` is special: three to five consecutive number words ("two, three, four").
FILLER = (
    "{person} likes to eat {food}.",
    "{person} has a {color} {animal}.",
    "On {day}, {person} walked to the {place}.",
    "The {adj} {animal} slept near the {place}.",
    "A {color} {animal} ran across the road.",
    "In {season}, the weather is {weather}.",
    "{person} read a {thing} about a {animal}.",
    "{person} counted {count}.",
    "Every {day} the {place} is {adj}.",
    "{person} bought {food} and {food2} at the {place}.",
    "{person} said {thing} and {animal}, then {person2} said {thing} and {animal} too.",
    "Today it is {weather} and the {animal} is {adj}.",
    "{person} and {person2} went to the {place} together.",
    "The {thing} on the table is {color}.",
    "{person} gave a {thing} to {person2}.",
    "It was a {weather} day, so {person} stayed at home.",
)

_TOKEN_RE = re.compile(r"\{(\w+)\}|\w+|[^\w\s]+")


def slot_class(slot: str) -> str:
    """The class of a slot name: ``"food2"`` -> ``"food"``, ``"s"`` -> ``"s"``."""
    return slot.rstrip("0123456789")


def pattern(template: str) -> list[tuple[str, str]]:
    """Split a template into ``("word", text)`` and ``("slot", class)`` items.

    Words split like the tokenizer's pre-tokenizer: runs of word characters, and runs of
    punctuation.
    """
    items = []
    for m in _TOKEN_RE.finditer(template):
        if m.group(1) is not None:
            items.append(("slot", slot_class(m.group(1))))
        else:
            items.append(("word", m.group(0)))
    return items


def _fact_pattern(relation: Relation, template: str) -> list[tuple[str, str]]:
    kinds = {"s": relation.subject_kind, "a": relation.answer_kind}
    return [("slot", kinds[v]) if k == "slot" else (k, v) for k, v in pattern(template)]


def _items_match(a: tuple[str, str], b: tuple[str, str]) -> bool:
    if a[0] == "word" and b[0] == "word":
        return a[1] == b[1]
    if a[0] == "slot" and b[0] == "slot":
        return a[1] == b[1]
    slot, word = (a[1], b[1]) if a[0] == "slot" else (b[1], a[1])
    if slot == "count":
        return word in NUMBER_WORDS or word == ","
    return word in WORD_CLASSES.get(slot, ())  # entity slots never equal a template word


def check_prefix_free() -> None:
    """Raise ``ValueError`` when a fact prompt is a prefix of another template's sentence.

    A fact prompt is its pattern up to the answer slot; it must not match the start of any
    other fact sentence (answer slot included) or filler sentence, nor equal another prompt.
    """
    sentences: list[tuple[str, list[tuple[str, str]]]] = []
    prompts: list[tuple[str, list[tuple[str, str]]]] = []
    for rel in ONE_HOP + TWO_HOP:
        for t in rel.templates:
            pat = _fact_pattern(rel, t)
            sentences.append((t, pat))
            prompts.append((t, pat[: answer_index(rel, t)]))
    sentences += [(t, pattern(t)) for t in FILLER]
    for name, prompt in prompts:
        for other, sentence in sentences:
            if other == name or len(sentence) < len(prompt):
                continue
            if all(_items_match(p, s) for p, s in zip(prompt, sentence, strict=False)):
                raise ValueError(f"prompt of {name!r} is a prefix of {other!r}")


def answer_index(relation: Relation, template: str) -> int:
    """Index of the answer slot in the template's pattern (the prompt's length in words)."""
    items = pattern(template)
    idx = [i for i, (k, v) in enumerate(items) if k == "slot" and v == "a"]
    if len(idx) != 1 or items[idx[0] + 1 :] != [("word", ".")]:
        raise ValueError(f"template {template!r} must end with '{{a}}.'")
    return idx[0]


def template_words() -> set[str]:
    """Every literal word of every template and word class (names must avoid these)."""
    words = set(NUMBER_WORDS)
    for cls in WORD_CLASSES.values():
        words.update(cls)
    for t in [t for r in ONE_HOP + TWO_HOP for t in r.templates] + list(FILLER):
        words.update(v for k, v in pattern(t) if k == "word")
    return words
