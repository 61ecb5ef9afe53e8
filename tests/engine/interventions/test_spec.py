"""Resolving and parsing intervention specifications."""

from __future__ import annotations

import pytest
import torch

from ct_engine.interventions.spec import parse_intervention, resolve_interventions


def test_numpy_style_indexing_and_last_entry_wins():
    plan = resolve_interventions(
        [
            (1, slice(2, 4), torch.tensor([7, 9]), torch.tensor([[1.0, 2.0], [3.0, 4.0]])),
            (1, torch.tensor([0, 5]), torch.tensor([3, 3]), 0.5),
            (0, -1, 2, 8.0),
            (1, 2, 7, -1.0),
        ],
        n_layers=2,
        n_pos=6,
        d_transcoder=10,
    )
    assert list(plan) == [0, 1]
    assert plan[0].positions.tolist() == [5] and plan[0].values.tolist() == [8.0]
    entries = {
        (p, f): v
        for p, f, v in zip(
            plan[1].positions.tolist(),
            plan[1].features.tolist(),
            plan[1].values.tolist(),
            strict=True,
        )
    }
    assert entries == {
        (2, 7): -1.0,
        (2, 9): 2.0,
        (3, 7): 3.0,
        (3, 9): 4.0,
        (0, 3): 0.5,
        (5, 3): 0.5,
    }


def test_open_ended_slices_follow_the_sequence():
    items = [(0, slice(3, None), 1, 2.0), (0, slice(-2, None), 4, 1.0), (0, 1, 0, 0.0)]
    kwargs = dict(n_layers=1, n_pos=5, d_transcoder=8)
    prompt = resolve_interventions(items, **kwargs)[0]
    longer = resolve_interventions(items, **kwargs, n_pos_open=7)[0]
    assert sorted(zip(prompt.positions.tolist(), prompt.features.tolist(), strict=True)) == [
        (1, 0),
        (3, 1),
        (3, 4),
        (4, 1),
        (4, 4),
    ]
    # Negative starts count from the prompt's end; the ranges extend to the new tokens.
    assert sorted(zip(longer.positions.tolist(), longer.features.tolist(), strict=True)) == [
        (1, 0),
        (3, 1),
        (3, 4),
        (4, 1),
        (4, 4),
        (5, 1),
        (5, 4),
        (6, 1),
        (6, 4),
    ]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2,5,123=0", (2, 5, 123, 0.0, False)),
        ("0,-1,7=-2.5", (0, -1, 7, -2.5, False)),
        ("1,3:,4=10", (1, slice(3, None), 4, 10.0, False)),
        ("1, 2:4, 4 = *2", (1, slice(2, 4), 4, 2.0, True)),
    ],
)
def test_parse_command_line_items(text, expected):
    item = parse_intervention(text)
    assert (item.layer, item.pos, item.feature, item.value, item.relative) == expected


@pytest.mark.parametrize("text", ["2,5=1", "a,1,2=3", "1,2,3", "1,2,3=inf", "1,2,3=*"])
def test_bad_command_line_items(text):
    with pytest.raises(ValueError):
        parse_intervention(text)


def test_relative_values_scale_clean_activations():
    acts = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    layer, pos, feat, value = parse_intervention("1,1:3,2=*2").resolve(acts)
    assert torch.equal(value, 2 * acts[1, 1:3, 2])
    with pytest.raises(ValueError, match="closed position range"):
        parse_intervention("1,1:,2=*2").resolve(acts)
