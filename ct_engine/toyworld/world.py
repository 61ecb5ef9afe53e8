"""The toy world: invented countries, cities, languages and people, with their facts.

World design (every choice is drawn from one seed):

* ``countries`` countries, each with its own language and ``cities_per_country`` cities, one of
  which is its capital. Every city is in exactly one country.
* ``people_per_country`` people per country. Each person lives in exactly one city, and is a
  citizen of that city's country. Both facts are stated (``person_city``, ``person_country``),
  so a person's country is a *directly stated* fact and the intermediate entity of a two-hop
  question about a person is well defined: their country.
* One-hop relations: ``person_city``, ``person_country``, ``city_country``, ``country_capital``,
  ``country_language``. Two-hop relations compose them through the country:
  ``person_capital`` and ``person_language`` (person -> country -> capital/language),
  ``city_capital`` and ``city_language`` (city -> country -> capital/language; capitals are
  not used as two-hop subjects, where the answer would be the subject itself).

Held-out design, recorded as each prompt's ``split``:

* Every one-hop fact is stated in training in all its templates but one; the left-out
  template is a ``"heldout_template"`` prompt. So every fact is learnable and each one is
  tested on wording not seen with it.
* Two-hop subjects (people, non-capital cities) are dealt into three groups: about half have
  both their two-hop facts in training (each with one template left out:
  ``"heldout_template"``), about 30 % have one of the two in training and the other never
  stated (``"heldout_fact"``: the model must compose the two stated one-hop facts), and the
  rest have no two-hop fact in training at all (``"heldout_subject"``).
* ``"train"`` prompts are fact/template pairs seen verbatim in training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ct_engine.toyworld.names import invent_names
from ct_engine.toyworld.templates import (
    CITY,
    COUNTRY,
    ONE_HOP,
    PERSON,
    RELATIONS,
    TWO_HOP,
    answer_index,
    check_prefix_free,
    template_words,
)

TRAIN = "train"
HELDOUT_TEMPLATE = "heldout_template"
HELDOUT_FACT = "heldout_fact"
HELDOUT_SUBJECT = "heldout_subject"
SPLITS = (TRAIN, HELDOUT_TEMPLATE, HELDOUT_FACT, HELDOUT_SUBJECT)

# Shares of two-hop subjects with both / one / none of their two-hop facts in training.
TWO_HOP_GROUPS = (0.5, 0.3, 0.2)


@dataclass(frozen=True)
class WorldSizes:
    """How many entities the world has."""

    countries: int = 8
    cities_per_country: int = 4
    people_per_country: int = 8


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    language: str
    cities: tuple[str, ...]


@dataclass(frozen=True)
class City:
    name: str
    country: str


@dataclass(frozen=True)
class Person:
    name: str
    city: str
    country: str


@dataclass(frozen=True)
class Fact:
    """One (relation, subject, answer) triple and how it is split.

    ``train_templates`` are the indices of the relation's templates that state the fact in
    the training corpus (empty for a held-out two-hop fact). ``intermediate`` is the bridge
    entity of a two-hop fact (the subject's country), ``None`` for one-hop facts.
    """

    relation: str
    subject: str
    answer: str
    train_templates: tuple[int, ...]
    intermediate: str | None = None
    heldout_split: str = HELDOUT_TEMPLATE


@dataclass(frozen=True)
class FactPrompt:
    """A prompt whose next token is a known single-token answer.

    ``prompt`` has no trailing space (``"The capital of Velor is"``); ``answer`` is the answer
    word (``"Tenmar"``), one token of the toy tokenizer. ``template`` indexes the relation's
    templates, ``split`` is one of :data:`SPLITS`.
    """

    prompt: str
    answer: str
    relation: str
    subject: str
    template: int
    split: str

    @property
    def sentence(self) -> str:
        return f"{self.prompt} {self.answer}."


@dataclass(frozen=True)
class TwoHopPrompt(FactPrompt):
    """A two-hop prompt: the answer needs the ``intermediate`` entity (the subject's country).

    ``hops`` names the two one-hop relations composed, e.g. ``("person_country",
    "country_capital")``; ``intermediate_kind`` is the intermediate entity's kind.
    """

    intermediate: str = ""
    intermediate_kind: str = COUNTRY
    hops: tuple[str, ...] = ()


def fill(template: str, subject: str, answer: str | None = None) -> str:
    """The template's sentence, or its prompt (text before the answer) when ``answer`` is None."""
    if answer is not None:
        return template.format(s=subject, a=answer)
    return template[: template.index("{a}")].rstrip().format(s=subject)


@dataclass(frozen=True)
class World:
    """A generated world: entities, facts with their held-out split, and prompts."""

    seed: int
    sizes: WorldSizes
    countries: tuple[Country, ...]
    cities: tuple[City, ...]
    people: tuple[Person, ...]
    facts: tuple[Fact, ...]
    _index: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def generate(cls, seed: int = 0, sizes: WorldSizes | None = None) -> World:
        """Draw a world from ``seed``; the same seed and sizes give the same world."""
        sizes = sizes or WorldSizes()
        check_prefix_free()
        rng = random.Random(f"toyworld-world-{seed}")
        n_c, n_city = sizes.countries, sizes.countries * sizes.cities_per_country
        n_people = sizes.countries * sizes.people_per_country
        bases = invent_names(rng, 2 * n_c + n_city + n_people, reserved=template_words())
        country_names = [b + "ia" for b in bases[:n_c]]
        languages = [b + "ish" for b in bases[n_c : 2 * n_c]]
        city_names = bases[2 * n_c : 2 * n_c + n_city]
        person_names = bases[2 * n_c + n_city :]
        words = country_names + languages + city_names + person_names
        if len({w.lower() for w in words}) != len(words):
            raise AssertionError("invented names collide")

        countries, cities, people = [], [], []
        k = sizes.cities_per_country
        for i, name in enumerate(country_names):
            own = tuple(city_names[i * k : (i + 1) * k])
            countries.append(Country(name, rng.choice(own), languages[i], own))
            cities += [City(c, name) for c in own]
        for i, name in enumerate(person_names):
            country = countries[i % n_c]
            people.append(Person(name, rng.choice(country.cities), country.name))
        rng.shuffle(people)
        facts = _draw_facts(rng, countries, cities, people)
        return cls(seed, sizes, tuple(countries), tuple(cities), tuple(people), tuple(facts))

    # -- lookups ---------------------------------------------------------------------------

    def _lookup(self) -> dict:
        if not self._index:
            for e in self.countries + self.cities + self.people:
                self._index[e.name] = e
        return self._index

    def country(self, name: str) -> Country:
        """The country called ``name``."""
        found = self._lookup()[name]
        if not isinstance(found, Country):
            raise KeyError(f"{name!r} is not a country")
        return found

    def entity(self, name: str) -> Country | City | Person:
        """The country, city or person called ``name``."""
        return self._lookup()[name]

    def entity_names(self) -> dict[str, tuple[str, ...]]:
        """Names by kind: ``person``, ``city``, ``country``, ``language``."""
        return {
            PERSON: tuple(p.name for p in self.people),
            CITY: tuple(c.name for c in self.cities),
            COUNTRY: tuple(c.name for c in self.countries),
            "language": tuple(c.language for c in self.countries),
        }

    # -- sentences and prompts ---------------------------------------------------------------

    def training_sentences(self, two_hop: bool | None = None) -> list[str]:
        """Every fact sentence the training corpus may state (fact x training template).

        ``two_hop`` keeps only two-hop (``True``) or one-hop (``False``) facts.
        """
        out = []
        for f in self.facts:
            rel = RELATIONS[f.relation]
            if two_hop is not None and rel.is_two_hop != two_hop:
                continue
            templates = rel.templates
            out += [fill(templates[i], f.subject, f.answer) for i in f.train_templates]
        return out

    def _prompts(self, two_hop: bool, split: str | None) -> list:
        out = []
        for f in self.facts:
            rel = RELATIONS[f.relation]
            if rel.is_two_hop != two_hop:
                continue
            for i, t in enumerate(rel.templates):
                answer_index(rel, t)  # validates the template shape
                s = TRAIN if i in f.train_templates else f.heldout_split
                if split is not None and s != split:
                    continue
                common = dict(
                    prompt=fill(t, f.subject),
                    answer=f.answer,
                    relation=f.relation,
                    subject=f.subject,
                    template=i,
                    split=s,
                )
                if two_hop:
                    out.append(TwoHopPrompt(**common, intermediate=f.intermediate, hops=rel.hops))
                else:
                    out.append(FactPrompt(**common))
        return out

    def one_hop_prompts(self, split: str | None = None) -> list[FactPrompt]:
        """One-hop prompts, every fact in every template; ``split`` filters (see module doc)."""
        return self._prompts(False, split)

    def two_hop_prompts(self, split: str | None = None) -> list[TwoHopPrompt]:
        """Two-hop prompts, every fact in every template; ``split`` filters (see module doc)."""
        return self._prompts(True, split)


def _draw_facts(
    rng: random.Random, countries: list[Country], cities: list[City], people: list[Person]
) -> list[Fact]:
    by_country = {c.name: c for c in countries}
    triples: list[tuple[str, str, str]] = []
    for p in people:
        triples += [("person_city", p.name, p.city), ("person_country", p.name, p.country)]
    triples += [("city_country", c.name, c.country) for c in cities]
    for c in countries:
        triples += [
            ("country_capital", c.name, c.capital),
            ("country_language", c.name, c.language),
        ]

    facts = []
    for rel, subject, answer in triples:
        n = len(RELATIONS[rel].templates)
        held = rng.randrange(n)
        facts.append(Fact(rel, subject, answer, tuple(i for i in range(n) if i != held)))

    subjects = [(p.name, p.country, ("person_capital", "person_language")) for p in people]
    capitals = {c.capital for c in countries}
    subjects_c = [
        (c.name, c.country, ("city_capital", "city_language"))
        for c in cities
        if c.name not in capitals
    ]
    for group in (subjects, subjects_c):
        n = len(group)
        n_both = round(TWO_HOP_GROUPS[0] * n)
        n_one = round(TWO_HOP_GROUPS[1] * n)
        status = ["both"] * n_both + ["one"] * n_one + ["none"] * (n - n_both - n_one)
        rng.shuffle(status)
        for (subject, country, rels), st in zip(group, status, strict=True):
            dropped = rng.randrange(2) if st == "one" else None
            for j, rel in enumerate(rels):
                c = by_country[country]
                answer = c.capital if rel.endswith("capital") else c.language
                n_t = len(RELATIONS[rel].templates)
                if st == "both" or (st == "one" and j != dropped):
                    held = rng.randrange(n_t)
                    train = tuple(i for i in range(n_t) if i != held)
                    split = HELDOUT_TEMPLATE
                else:
                    train = ()
                    split = HELDOUT_FACT if st == "one" else HELDOUT_SUBJECT
                facts.append(Fact(rel, subject, answer, train, country, split))
    assert {r.name for r in ONE_HOP + TWO_HOP} == {f.relation for f in facts}
    return facts
