"""Attribution finds the toy world's real two-hop structure (ct_engine.toyworld.ground_truth).

The bounds are conservative: about half of what the full run measured on every eligible
prompt (``ct_engine/toyworld/artifacts/ground_truth.json``), asserted here on a fixed subset
of 12 held-out prompts so that the module runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import json

import pytest
import torch

from ct_engine.presets import TOY_WORLD_TRANSCODERS, TRANSCODERS
from ct_engine.toyworld.default_model import DEFAULT_MODEL_DIR
from ct_engine.toyworld.ground_truth import SITES, CountryFeatures

ARTIFACTS = DEFAULT_MODEL_DIR.parent
needs_artifacts = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "model.safetensors").exists()
    or not (TRANSCODERS[TOY_WORLD_TRANSCODERS] / "config.yaml").exists(),
    reason="toy model or its transcoders not built",
)


# -- the selectivity rule, on made-up activity --------------------------------------------


def _toy_features(min_groups: int = 1) -> CountryFeatures:
    """Two countries, two people each, two groups; feature 0 (layer 0, last site) fires for
    country 0's people, feature 1 for one person of each country, feature 2 for Ann only."""
    subjects = ("Ann", "Bob", "Cid", "Dee") * 2
    country = torch.tensor([0, 0, 1, 1] * 2)
    group = torch.tensor([0] * 4 + [1] * 4)
    active = torch.zeros(8, len(SITES), 1, 3, dtype=torch.bool)
    last = SITES.index("last")
    active[country == 0, last, 0, 0] = True
    active[torch.tensor([0, 2, 4, 6]), last, 0, 1] = True
    active[torch.tensor([0, 4]), last, 0, 2] = True
    return CountryFeatures(
        countries=("Xia", "Yia"),
        active=active,
        country=country,
        group=group,
        subjects=subjects,
        min_freq=0.5,
        max_other=0.0,
        min_groups=min_groups,
    )


def test_selectivity_rule_on_made_up_activity():
    features = _toy_features()
    last = SITES.index("last")
    assert features.of("Xia")[last, 0].tolist() == [True, False, True]
    assert features.of("Yia")[last, 0].tolist() == [False, False, False]
    assert not features.of("Xia")[SITES.index("subject")].any()
    # leaving Ann out: feature 2 (Ann only) is no longer a country feature, feature 0 stays
    assert features.of("Xia", exclude_subject="Ann")[last, 0].tolist() == [True, False, False]
    # two groups agree, so min_groups=2 keeps the same features; 3 keeps none
    assert features.of("Xia")[last].equal(_toy_features(2).of("Xia")[last])
    assert not _toy_features(3).of("Xia").any()


# -- the shipped model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def measured():
    from ct_engine.toyworld.default_model import load_world
    from ct_engine.toyworld.ground_truth import (
        CountryFeatures,
        correct_prompts,
        load_model,
        run_all,
    )

    model = load_model()  # one torch thread, as every test (tests/conftest.py)
    world = load_world()
    features = CountryFeatures.build(model, world)
    eligible = correct_prompts(model, world)
    subset = eligible[::9][:12]
    summary = run_all(model, world, prompts=subset, features=features, scales=(2.0, 4.0))
    return {"summary": summary, "features": features, "eligible": eligible, "subset": subset}


@needs_artifacts
def test_eligible_prompts_are_held_out_and_answered(measured):
    eligible = measured["eligible"]
    assert len(eligible) >= 90  # of 112 held-out person_capital prompts
    assert {p.split for p in eligible} <= {"heldout_template", "heldout_fact", "heldout_subject"}
    assert len(measured["subset"]) == 12


@needs_artifacts
def test_every_country_has_last_position_features(measured):
    masks = measured["features"].masks()  # (C, 2, L, F)
    per_country = masks[:, SITES.index("last")].sum(dim=(-1, -2))
    assert (per_country >= 1).all(), per_country
    # a feature is a country feature of one country at most
    assert int(masks.sum(dim=0).max()) <= 1


@needs_artifacts
def test_pruned_graph_holds_country_features(measured):
    graph = measured["summary"]["graph"]
    # full run: 0.99 of the graphs keep an own-country feature at the last position (1.6 on
    # average); the toy world's flagship goal is at least 0.9
    assert graph["share_with_own_country_feature"] >= 0.9
    assert graph["mean_kept_own_country_features"] >= 1.0


@needs_artifacts
def test_ablating_country_features_lowers_the_answer(measured):
    ablation = measured["summary"]["ablation"]
    # full run: mean drop of p(answer) 0.78, control (as many other active features) 0.18
    assert ablation["mean_p_drop"] >= 0.4
    assert ablation["mean_p_drop"] >= 2 * ablation["mean_p_drop_control"]


@needs_artifacts
def test_swapping_country_features_changes_the_answer(measured):
    steering = measured["summary"]["steering"]
    assert steering["n"] >= 10
    # full run: 0.97 of prompts switch to the other country's capital at 4x, 0.99 at 2x
    assert steering["success_rate"]["4.0"] >= 0.75
    assert steering["success_rate"]["2.0"] >= 0.75


@needs_artifacts
def test_graph_predicts_the_ablation(measured):
    prediction = measured["summary"]["prediction"]
    assert prediction["n"] >= 6
    # direct effects are exact in the constrained (linearized) model
    assert prediction["max_abs_error_constrained_vs_direct"] < 1e-3
    # and track the full model's observed change (full run: correlation 0.75)
    assert prediction["corr_direct_vs_observed"]["unfrozen"] >= 0.4
    assert prediction["mean_observed"]["unfrozen"] < 0


@needs_artifacts
def test_recorded_results_exist():
    path = ARTIFACTS / "ground_truth.json"
    record = json.loads(path.read_text())
    assert record["n_prompts"] >= 90
    assert record["transcoders"] == TOY_WORLD_TRANSCODERS
    assert record["graph"]["share_with_own_country_feature"] >= 0.9
    assert record["ablation"]["mean_p_drop"] > 0
    assert record["prediction"]["max_abs_error_constrained_vs_direct"] < 1e-3
