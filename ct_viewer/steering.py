"""Steering: set a graph's features to values and report how the next token moves.

The model of a lake graph is loaded on first use from the config's model entry (the lake's
cached transcoders when ``transcoder_cache`` ran, else the entry's reference), with the
entry's backend, dtype and device (CUDA when available, else the CPU by default), and kept in
the app's :class:`SteeringModels` for the life of the app. Runs on one model are serialized
(the backend installs hooks during a forward pass).
"""

from __future__ import annotations

import math
import threading
from typing import Any

from ct_viewer.annotations import InvalidBody
from ct_viewer.graphs import NodeRef

MAX_INTERVENTIONS = 64
MAX_TOP = 100
MAX_ABS_VALUE = 1e6
FIELDS = ("interventions", "freeze_attention", "top")


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidBody(f"{name} must be a number")
    value = float(value)
    if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
        raise InvalidBody(f"{name} must be finite and at most {MAX_ABS_VALUE:g} in magnitude")
    return value


def validate(body: Any, nodes: dict[str, NodeRef]) -> dict:
    """The checked steer request: ``interventions`` as ``(node_id, NodeRef, kind, number)``
    with kind ``"value"`` or ``"multiplier"``, ``freeze_attention`` and ``top``."""
    if not isinstance(body, dict):
        raise InvalidBody("the body must be a JSON object")
    extra = sorted(set(body) - set(FIELDS))
    if extra:
        raise InvalidBody(f"unknown fields {extra}; expected {list(FIELDS)}")
    items = body.get("interventions")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_INTERVENTIONS:
        raise InvalidBody(f"interventions must be a list of 1 to {MAX_INTERVENTIONS} objects")
    freeze = body.get("freeze_attention", True)
    if not isinstance(freeze, bool):
        raise InvalidBody("freeze_attention must be true or false")
    top = body.get("top", 10)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP:
        raise InvalidBody(f"top must be an integer from 1 to {MAX_TOP}")
    checked, seen = [], set()
    for k, item in enumerate(items):
        if not isinstance(item, dict) or "node_id" not in item:
            raise InvalidBody(f"interventions[{k}] must be an object with a node_id")
        modes = [m for m in ("value", "multiplier") if m in item]
        if len(modes) != 1 or set(item) != {"node_id", modes[0]}:
            raise InvalidBody(
                f"interventions[{k}] needs node_id and exactly one of value or multiplier"
            )
        node_id = item["node_id"]
        if not isinstance(node_id, str) or node_id not in nodes:
            raise InvalidBody(
                f"interventions[{k}]: {str(node_id)[:64]!r} is not a node of the graph"
            )
        node = nodes[node_id]
        if node.kind != "feature":
            raise InvalidBody(
                f"interventions[{k}]: {node_id} is a {node.kind} node; only feature nodes "
                "(cross layer transcoder) can be steered"
            )
        if node_id in seen:
            raise InvalidBody(f"interventions[{k}]: {node_id} appears twice")
        seen.add(node_id)
        mode = modes[0]
        checked.append((node_id, node, mode, _number(item[mode], f"interventions[{k}].{mode}")))
    return {"interventions": checked, "freeze_attention": freeze, "top": top}


class SteeringModels:
    """The models an app steers with: its own :class:`~ct_engine.model_cache.ModelCache` (loaded
    once per entry and transcoders) and one run lock per model."""

    def __init__(self, cache=None):
        from ct_engine.model_cache import ModelCache

        self.cache = cache if cache is not None else ModelCache()
        self._locks: dict[tuple, threading.Lock] = {}
        self._registry_lock = threading.Lock()

    def load(self, entry, transcoders: str | None) -> tuple[Any, threading.Lock]:
        """``(model, lock)`` of a config entry (``transcoders`` overrides its reference):
        hold the lock while running the model (steering requests arrive on several
        threads)."""
        model = self.cache.get(entry, transcoders)
        key = self.cache.key(entry, transcoders)
        with self._registry_lock:
            lock = self._locks.setdefault(key, threading.Lock())
        return model, lock

    def clear(self) -> None:
        """Forget the loaded models."""
        self.cache.clear()
        with self._registry_lock:
            self._locks.clear()


def steer(model, lock: threading.Lock, graph, request: dict) -> dict:
    """Run the interventions on the graph's prompt; the SteerResult of ``ct_viewer/API.md``."""
    import torch

    from ct_engine.interventions.report import top_logit_changes

    tokens = graph.input_tokens.to(model.device)
    with lock, torch.no_grad():
        logits, activations = model.get_activations(tokens)
        applied, rows = [], []
        for node_id, node, mode, number in request["interventions"]:
            clean = float(activations[node.layer, node.pos, node.feature])
            value = number if mode == "value" else number * clean
            applied.append((node.layer, node.pos, node.feature, value))
            rows.append(
                {
                    "node_id": node_id,
                    "layer": node.layer,
                    "pos": node.pos,
                    "feature": node.feature,
                    "clean": clean,
                    "value": value,
                }
            )
        steered, _ = model.feature_intervention(
            tokens,
            applied,
            freeze_attention=request["freeze_attention"],
            return_activations=False,
        )
    changes = top_logit_changes(logits[0, -1], steered[0, -1], model.tokenizer, request["top"])
    return {
        "interventions": rows,
        "changes": [
            {
                "token": c.token,
                "token_id": c.token_id,
                "prob_before": c.prob_before,
                "prob_after": c.prob_after,
                "logit_before": c.logit_before,
                "logit_after": c.logit_after,
            }
            for c in changes
        ],
    }
