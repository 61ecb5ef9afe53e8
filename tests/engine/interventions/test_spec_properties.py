"""Property-based tests of the intervention specs: ``ct intervene``'s ``layer,pos,feature=value``
text and the ``(layer, pos, feature, value)`` tuples of the Python API. Any input either gives a
valid spec or one ``ValueError`` line; never another exception."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ct_engine.interventions.spec import (
    InterventionText,
    parse_intervention,
    resolve_interventions,
)

# Derandomized and database-free: CI runs the same examples every time.
FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None)

N_LAYERS, N_POS, N_FEATURES = 3, 6, 10


def _format(spec: InterventionText) -> str:
    if isinstance(spec.pos, slice):
        start = "" if spec.pos.start is None else spec.pos.start
        stop = "" if spec.pos.stop is None else spec.pos.stop
        pos = f"{start}:{stop}"
    else:
        pos = str(spec.pos)
    return f"{spec.layer},{pos},{spec.feature}={'*' if spec.relative else ''}{spec.value!r}"


def _one_line_value_error(err: BaseException) -> None:
    assert type(err) is ValueError, repr(err)
    message = str(err)
    assert message and "\n" not in message and "\r" not in message, message


# Text built from the spec's own alphabet finds the parser's corners far more often than any
# Unicode text; the latter still runs, with fewer examples.
_SPEC_ALPHABET = st.sampled_from(list("0123456789,:=*x.-+e _") + ["nan", "inf", "\n", "１"])
spec_like = st.lists(_SPEC_ALPHABET, max_size=24).map("".join)


@FAST
@given(st.one_of(spec_like, st.text(max_size=40)))
@example("0,5,10=1e308")
@example("0,5,10=1e309")
@example("0,1:,2=*nan")
@example("0," + "9" * 5000 + ",1=0")
def test_any_text_parses_and_round_trips_or_is_one_value_error(text):
    try:
        spec = parse_intervention(text)
    except Exception as err:  # noqa: BLE001 - the property is about the exception's type
        _one_line_value_error(err)
        return
    assert math.isfinite(spec.value)
    assert parse_intervention(_format(spec)) == spec


positions = st.one_of(
    st.integers(-9, 9),
    st.builds(slice, st.none() | st.integers(-9, 9), st.none() | st.integers(-9, 9)),
)
values = st.floats(allow_nan=False, allow_infinity=False, width=32)


@FAST
@given(
    st.integers(-4, 4),
    positions,
    st.integers(-2, 12),
    values,
    st.booleans(),
)
def test_written_specs_read_back(layer, pos, feature, value, relative):
    spec = InterventionText(layer, pos, feature, value, relative)
    assert parse_intervention(_format(spec)) == spec


scalars = st.one_of(
    st.integers(-12, 12),
    st.floats(width=32),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
indices = st.one_of(
    scalars,
    st.lists(st.integers(-12, 12), max_size=4),
    st.lists(st.lists(st.integers(0, 3), max_size=2), max_size=2),
    st.builds(slice, st.none() | st.integers(-9, 9), st.none() | st.integers(-9, 9), st.none()),
    st.lists(st.integers(-12, 12), max_size=4).map(lambda v: torch.tensor(v, dtype=torch.long)),
    st.lists(values, max_size=3).map(torch.tensor),
)
interventions = st.lists(
    st.one_of(
        st.tuples(indices, indices, indices, st.one_of(scalars, indices)),
        st.tuples(st.integers(-1, 3), indices, indices, values),
        st.lists(scalars, max_size=5),
    ),
    max_size=3,
)


@FAST
@given(interventions)
@example([(0, slice(2, None, 2), 1, 1.0)])
@example([(1, [0, 1], [[1, 2]], 0.0)])
@example([(0, 0, 0, float("inf"))])
def test_any_tuples_resolve_in_range_or_are_one_value_error(items):
    try:
        resolved = resolve_interventions(
            items, n_layers=N_LAYERS, n_pos=N_POS, d_transcoder=N_FEATURES
        )
    except Exception as err:  # noqa: BLE001
        _one_line_value_error(err)
        return
    for layer, entry in resolved.items():
        assert 0 <= layer < N_LAYERS
        n = entry.positions.numel()
        assert entry.features.numel() == n == entry.values.numel()
        assert ((entry.positions >= 0) & (entry.positions < N_POS)).all()
        assert ((entry.features >= 0) & (entry.features < N_FEATURES)).all()
        assert torch.isfinite(entry.values).all()
        keys = (entry.positions * N_FEATURES + entry.features).tolist()
        assert len(set(keys)) == n  # one entry per (position, feature): the last one wins


@pytest.mark.parametrize("text", ["1,2,3=0.5", "0,-1,7=*2", "2,3:,4=-1e3", "1,:5,0=x0"])
def test_hand_written_specs_round_trip(text):
    spec = parse_intervention(text)
    assert parse_intervention(_format(spec)) == spec
