"""The toy world: deterministic generation, well-defined facts, held-out splits."""

from __future__ import annotations

import pytest

from ct_engine.toyworld import templates
from ct_engine.toyworld.templates import RELATIONS, Relation, check_prefix_free, template_words
from ct_engine.toyworld.world import (
    HELDOUT_FACT,
    HELDOUT_SUBJECT,
    HELDOUT_TEMPLATE,
    TRAIN,
    World,
    WorldSizes,
)


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(0)


def test_generation_is_deterministic(world):
    again = World.generate(0)
    assert again == world
    assert again.two_hop_prompts() == world.two_hop_prompts()
    assert World.generate(1).people != world.people


def test_entities_are_consistent(world):
    sizes = WorldSizes()
    assert len(world.countries) == sizes.countries
    assert len(world.cities) == sizes.countries * sizes.cities_per_country
    assert len(world.people) == sizes.countries * sizes.people_per_country
    for c in world.countries:
        assert c.capital in c.cities
        assert all(world.entity(city).country == c.name for city in c.cities)
    for p in world.people:
        assert world.entity(p.city).country == p.country
    names = [n for group in world.entity_names().values() for n in group]
    assert len({n.lower() for n in names}) == len(names)
    assert not {n.lower() for n in names} & {w.lower() for w in template_words()}


def test_every_fact_is_learnable(world):
    """A one-hop fact is in training in some template, and held out in exactly one."""
    for f in world.facts:
        rel = RELATIONS[f.relation]
        if not rel.is_two_hop:
            assert len(f.train_templates) == len(rel.templates) - 1
    one = world.one_hop_prompts()
    assert {p.split for p in one} == {TRAIN, HELDOUT_TEMPLATE}
    assert len(world.one_hop_prompts(HELDOUT_TEMPLATE)) == len(
        [f for f in world.facts if not RELATIONS[f.relation].is_two_hop]
    )


def test_two_hop_prompts_record_the_intermediate(world):
    prompts = world.two_hop_prompts()
    assert {p.split for p in prompts} == {TRAIN, HELDOUT_TEMPLATE, HELDOUT_FACT, HELDOUT_SUBJECT}
    for p in prompts:
        subject = world.entity(p.subject)
        country = world.country(p.intermediate)
        assert subject.country == country.name
        expected = country.capital if p.relation.endswith("capital") else country.language
        assert p.answer == expected
        assert p.subject in p.prompt.split() and p.answer not in p.prompt.split()
        assert p.hops == RELATIONS[p.relation].hops
    mira_like = [p for p in prompts if p.relation == "person_capital" and p.template == 0]
    assert mira_like[0].prompt == (
        f"The capital of the country where {mira_like[0].subject} lives is"
    )


def test_two_hop_split_groups(world):
    trained = {(f.subject, f.relation) for f in world.facts if f.train_templates}
    by_subject: dict[str, set[str]] = {}
    for p in world.two_hop_prompts():
        by_subject.setdefault(p.subject, set()).add(p.split)
        if p.split == HELDOUT_FACT:
            # The subject's other two-hop fact is stated in training.
            others = [r for (s, r) in trained if s == p.subject and RELATIONS[r].is_two_hop]
            assert others and p.relation not in others
        if p.split == HELDOUT_SUBJECT:
            assert not [r for (s, r) in trained if s == p.subject and RELATIONS[r].is_two_hop]
    capitals = {c.capital for c in world.countries}
    assert not capitals & set(by_subject)


def test_prompt_sentences_round_trip(world):
    train = set(world.training_sentences())
    for p in world.one_hop_prompts() + world.two_hop_prompts():
        assert (p.sentence in train) == (p.split == TRAIN)


def test_templates_are_prefix_free(monkeypatch):
    check_prefix_free()
    clash = Relation("bad", "person", "city", ("{s} lives in a town called {a}.",))
    monkeypatch.setattr(templates, "TWO_HOP", templates.TWO_HOP + (clash,))
    with pytest.raises(ValueError, match="prefix"):
        check_prefix_free()
