"""Intervention specifications: ``(layer, pos, feature, value)`` tuples, checked and resolved.

An intervention sets transcoder features to **absolute** (post-activation) values, as in
circuit-tracer. ``pos`` and ``feature`` index the ``(T, F)`` activation grid of
``layer`` the way NumPy/PyTorch indexing would:

* ``pos`` an int (negative counts from the end), a 1-D integer tensor or list, or a ``slice``;
* ``feature`` an int or a 1-D integer tensor or list;
* ``value`` a number or a tensor broadcastable to the indexed shape.

A slice with a tensor of features selects the grid ``positions × features``; two tensors are
paired element-wise. A slice whose ``stop`` is ``None`` (for example ``slice(6, None)``) is
**open-ended**: during generation it also covers every new token.

Several entries for the same ``(layer, pos, feature)``: the last one wins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

Intervention = tuple[int, "int | slice | torch.Tensor | Sequence[int]", "int | torch.Tensor", float]


@dataclass
class LayerInterventions:
    """The resolved interventions of one layer, one entry per ``(position, feature)``.

    Attributes:
        positions: ``(n,)`` long.
        features: ``(n,)`` long.
        values: ``(n,)`` float64 target activations.
    """

    positions: torch.Tensor
    features: torch.Tensor
    values: torch.Tensor


def resolve_interventions(
    interventions: Sequence[Intervention],
    *,
    n_layers: int,
    n_pos: int,
    d_transcoder: int,
    n_pos_open: int | None = None,
) -> dict[int, LayerInterventions]:
    """Check interventions and flatten them per layer.

    Args:
        interventions: ``(layer, pos, feature, value)`` tuples.
        n_pos: ``T``, the prompt length that positions refer to.
        d_transcoder: ``F``.
        n_pos_open: the current sequence length during generation: open-ended slices cover
            positions up to it (default ``n_pos``).

    Returns:
        layer -> :class:`LayerInterventions`, layers in ascending order.
    """
    n_pos_open = n_pos if n_pos_open is None else n_pos_open
    per_layer: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
    for k, item in enumerate(interventions):
        where = f"intervention {k} {_short(item)}"
        if not isinstance(item, (tuple, list)) or len(item) != 4:
            raise ValueError(f"{where}: expected a (layer, pos, feature, value) tuple")
        layer, pos, feature, value = item
        if isinstance(layer, torch.Tensor) and layer.numel() == 1:
            layer = int(layer)
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise ValueError(f"{where}: the layer must be an int, got {type(layer).__name__}")
        if not 0 <= layer < n_layers:
            raise ValueError(f"{where}: layer {layer} is out of range [0, {n_layers})")
        positions, features = _index(pos, feature, n_pos, n_pos_open, d_transcoder, where)
        values = _values(value, positions.shape, where)
        per_layer.setdefault(layer, []).append(
            (positions.reshape(-1), features.reshape(-1), values.reshape(-1))
        )
    resolved = {}
    for layer in sorted(per_layer):
        pos, feat, val = (torch.cat(parts) for parts in zip(*per_layer[layer], strict=True))
        keep = _last_occurrence(pos * d_transcoder + feat)
        resolved[layer] = LayerInterventions(pos[keep], feat[keep], val[keep])
    return resolved


def _index(pos, feature, n_pos, n_pos_open, d_transcoder, where):
    """Broadcast ``pos`` and ``feature`` to matching ``positions`` and ``features`` tensors."""
    features = _as_long(feature, where, "feature")
    if features.ndim > 1:
        raise ValueError(f"{where}: feature indices must be an int or a 1-D list/tensor")
    bad = (features < 0) | (features >= d_transcoder)
    if bad.any():
        raise ValueError(
            f"{where}: feature {features[bad][0].item()} is out of range [0, {d_transcoder})"
        )
    if isinstance(pos, slice):
        if pos.step not in (None, 1) and pos.stop is None:
            raise ValueError(f"{where}: an open-ended slice must have step 1")
        start, stop, step = pos.indices(n_pos)
        if pos.stop is None:
            stop = n_pos_open
        if pos.start is not None and not -n_pos <= pos.start < n_pos:
            raise ValueError(f"{where}: slice start {pos.start} is out of range for {n_pos} tokens")
        positions = torch.tensor(list(range(start, stop, step)), dtype=torch.long)
        if positions.numel() == 0:
            raise ValueError(f"{where}: slice {pos} selects no position of {n_pos} tokens")
        if features.ndim == 1:  # NumPy semantics of x[slice, tensor]: the grid
            return torch.broadcast_tensors(positions[:, None], features[None, :])
        return positions, features.expand_as(positions)
    positions = _as_long(pos, where, "position")
    if positions.ndim > 1:
        raise ValueError(f"{where}: positions must be an int, a slice or a 1-D list/tensor")
    bad = (positions < -n_pos) | (positions >= n_pos)
    if bad.any():
        raise ValueError(
            f"{where}: position {positions[bad][0].item()} is out of range for a prompt of "
            f"{n_pos} tokens"
        )
    positions = torch.where(positions < 0, positions + n_pos, positions)
    try:
        return torch.broadcast_tensors(positions, features)
    except RuntimeError as err:
        raise ValueError(f"{where}: positions and features do not broadcast: {err}") from err


def _values(value, shape: torch.Size, where: str) -> torch.Tensor:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{where}: the value {value} is not finite")
        return torch.full(shape, float(value), dtype=torch.float64)
    try:
        values = torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where}: the value must be a number or a tensor") from err
    if not torch.isfinite(values).all():
        raise ValueError(f"{where}: the values are not all finite")
    try:
        return torch.broadcast_to(values, shape)
    except RuntimeError as err:
        raise ValueError(
            f"{where}: values of shape {tuple(values.shape)} do not fit the indexed shape "
            f"{tuple(shape)}"
        ) from err


def _as_long(index, where: str, what: str) -> torch.Tensor:
    if isinstance(index, bool):
        raise ValueError(f"{where}: the {what} must be an integer, not a bool")
    try:
        t = torch.as_tensor(index).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where}: cannot read the {what} index {index!r}") from err
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{where}: the {what} index must be integers, got {t.dtype}")
    return t.long()


def _last_occurrence(keys: torch.Tensor) -> torch.Tensor:
    """Indices of the last entry of each distinct key, in ascending key order."""
    uniq, inverse = torch.unique(keys, return_inverse=True)
    order = torch.arange(len(keys))
    last = torch.full((len(uniq),), -1, dtype=torch.long)
    return last.scatter_reduce(0, inverse, order, reduce="amax")


def _short(item) -> str:
    text = repr(item)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class InterventionText:
    """An intervention written as ``layer,pos,feature=value`` on the command line.

    ``pos`` is an int or a slice ``a:b`` / ``a:`` (open-ended, follows generation). ``value``
    is an absolute activation, or, written ``*c``, ``c`` times the feature's clean activation
    (``relative``).
    """

    layer: int
    pos: int | slice
    feature: int
    value: float
    relative: bool = False

    def resolve(self, clean_acts: torch.Tensor) -> Intervention:
        """The ``(layer, pos, feature, value)`` tuple; ``clean_acts (L, T, F)`` for ``*c``."""
        if not self.relative:
            return (self.layer, self.pos, self.feature, self.value)
        n_layers, n_pos, n_features = clean_acts.shape
        if not (0 <= self.layer < n_layers and 0 <= self.feature < n_features):
            raise ValueError(f"{self}: layer or feature out of range")
        if isinstance(self.pos, slice) and self.pos.stop is None:
            raise ValueError(
                f"{self}: a relative value (*c) needs a closed position range a:b; give an "
                "absolute value to steer an open-ended range"
            )
        if isinstance(self.pos, int) and not -n_pos <= self.pos < n_pos:
            raise ValueError(f"{self}: position {self.pos} is out of range for {n_pos} tokens")
        value = self.value * clean_acts[self.layer, self.pos, self.feature]
        return (self.layer, self.pos, self.feature, value)


def parse_intervention(text: str) -> InterventionText:
    """Parse ``layer,pos,feature=value`` (see :class:`InterventionText`)."""
    usage = f"cannot read intervention {text!r}: expected layer,pos,feature=value (e.g. 2,5,123=0)"
    target, sep, value_text = text.replace(" ", "").partition("=")
    parts = target.split(",")
    if not sep or len(parts) != 3 or not value_text:
        raise ValueError(usage)
    try:
        layer, feature = int(parts[0]), int(parts[2])
        if ":" in parts[1]:
            start, _, stop = parts[1].partition(":")
            pos: int | slice = slice(int(start) if start else None, int(stop) if stop else None)
        else:
            pos = int(parts[1])
        relative = value_text.startswith(("*", "x"))
        value = float(value_text[1:] if relative else value_text)
    except ValueError as err:
        raise ValueError(usage) from err
    if not math.isfinite(value):
        raise ValueError(f"{text!r}: the value must be finite")
    return InterventionText(layer, pos, feature, value, relative)
