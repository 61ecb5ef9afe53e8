"""Golden set and regression baselines: what a graph looked like when it was last blessed.

The golden set (the config's ``golden:`` file, ``ct_assets/golden/golden_set.yaml`` in the
repo; no file means no golden set) lists model × prompt cells::

    models:
      - model: toy-world
        prompts:
          - "The capital of the country where Nife lives is"

Each cell's baseline is ``<golden dir>/baselines/<model>/<prompt key>.json``: a snapshot of
the graph read from the lake (:func:`snapshot_from_lake`) holding the feature nodes
``(layer, pos, feature, activation, influence)``, the top :data:`MAX_EDGES` edges by
``|weight|`` (nodes named by what they are, not by their index, so they survive a change of
the feature set), the top target with its probability and the graph scores. Baselines change
only on purpose (``ct baseline update``) so that every change is reviewed in git.

:func:`compare` measures a current graph against its baseline (graph agreement: features,
edges, top target, scores) and grades each measure. The engine is deterministic on CPU (same
code, model, transcoders, config, torch build and thread count give the same graph bit for
bit), so any drift means a code, model, transcoder or configuration change. The *pass* bands
allow only floating-point noise (another BLAS, thread count or a GPU); *warn* is a small drift
worth a look; *error* is a different graph.

=============================  ==========  ===================  ===========
measure                        pass        warn                 error
=============================  ==========  ===================  ===========
feature-node Jaccard           >= 0.95     [0.80, 0.95)         < 0.80
Pearson r, shared edge weights >= 0.99     [0.95, 0.99)         < 0.95 [#]_
same top target                yes         --                   no
abs. delta top-target prob.    <= 0.01     (0.01, 0.05]         > 0.05
abs. delta of each score [#]_  <= 0.01     (0.01, 0.05]         > 0.05
max rel. activation diff [#]_  <= 1e-3     (1e-3, 0.05]         > 0.05
=============================  ==========  ===================  ===========

.. [#] Also *error* when the baseline has 2 or more edges but fewer than 2 are shared.
.. [#] ``replacement_score``, ``completeness_score``, ``pruned_replacement_score``,
   ``pruned_completeness_score``.
.. [#] ``max |a - b| / max(|b|, 1e-6)`` over the features in both graphs (``b`` baseline).

The cell's severity is the worst of its measures. Why these numbers: a Jaccard of 0.95 lets
a few features at the ``max_feature_nodes`` cut swap places; below 0.8 a fifth of the
features changed. Scores live in [0, 1]; 0.01 is below anything we would report, 0.05 is a
change a reader of the scores would notice. Activations are float32: 1e-3 is far above
float noise, 5 % means the transcoders or the model changed.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import yaml

from ct_assets.lib.context import model_prompt, multi_key
from ct_engine.folders import set_default_mode
from ct_lake.config import LakehouseConfig
from ct_lake.keys import check_model_key, prompt_key
from ct_lake.lake import Lake

FORMAT = 1
MAX_EDGES = 2000  # edges kept in a baseline: the largest by |weight|
BASELINES_DIR = "baselines"
GRAPH_TABLES = ("graphs", "nodes", "edges", "logit_targets", "scores")
SCORES = (
    "replacement_score",
    "completeness_score",
    "pruned_replacement_score",
    "pruned_completeness_score",
)
PASS, WARN, ERROR = "pass", "warn", "error"
SKIP = "skip"  # a partition the golden set has no baseline for: not compared
_RANK = {PASS: 0, WARN: 1, ERROR: 2}


@dataclass(frozen=True)
class Band:
    """Thresholds of one measure: ``pass`` if within ``pass_at``, ``warn`` if within
    ``warn_at``, else ``error``; ``higher`` says which direction is good."""

    pass_at: float
    warn_at: float
    higher: bool

    def grade(self, value: float) -> str:
        if self.higher:
            return PASS if value >= self.pass_at else WARN if value >= self.warn_at else ERROR
        return PASS if value <= self.pass_at else WARN if value <= self.warn_at else ERROR


THRESHOLDS: dict[str, Band] = {
    "feature_jaccard": Band(0.95, 0.80, higher=True),
    "edge_pearson": Band(0.99, 0.95, higher=True),
    "top_target_prob_abs_delta": Band(0.01, 0.05, higher=False),
    **{f"{name}_abs_delta": Band(0.01, 0.05, higher=False) for name in SCORES},
    "max_rel_activation_diff": Band(1e-3, 0.05, higher=False),
}


# -- the golden set ----------------------------------------------------------------------


@dataclass(frozen=True)
class GoldenCell:
    """One model × prompt of the golden set."""

    model: str
    prompt: str

    @property
    def prompt_key(self) -> str:
        return prompt_key(self.prompt)

    @property
    def partition_key(self) -> dg.MultiPartitionKey:
        return multi_key(self.model, self.prompt_key)


def load_golden(config: LakehouseConfig, model: str | None = None) -> list[GoldenCell]:
    """The golden cells of ``config`` (of ``model`` only, if given); [] without a golden file.

    Raises ValueError on a malformed file or a model the config does not declare.
    """
    path = config.golden
    if path is None or not Path(path).exists():
        return []
    raw = yaml.safe_load(Path(path).read_text()) or {}
    entries = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected `models:` with a list of {{model, prompts}} entries")
    cells: list[GoldenCell] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("prompts"), list):
            raise ValueError(f"{path}: each entry needs `model:` and a list of `prompts:`")
        name = check_model_key(str(entry.get("model")))
        config.model(name)  # a model the config declares
        for text in entry["prompts"]:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{path}: empty or non-text prompt under model {name}")
            cells.append(GoldenCell(name, text))
    if len({c.partition_key for c in cells}) != len(cells):
        raise ValueError(f"{path}: a model × prompt cell is listed twice")
    if model is not None:
        config.model(model)
        cells = [c for c in cells if c.model == model]
    return cells


def golden_cell(config: LakehouseConfig, key) -> GoldenCell | None:
    """The golden cell of partition ``key``, or None if it is not in the golden set."""
    model, prompt = model_prompt(key)
    for cell in load_golden(config):
        if cell.model == model and cell.prompt_key == prompt:
            return cell
    return None


# -- baselines on disk -------------------------------------------------------------------


def baseline_path(config: LakehouseConfig, model: str, prompt: str) -> Path:
    """``<golden dir>/baselines/<model>/<prompt key>.json`` (``prompt``: a key)."""
    if config.golden is None:
        raise ValueError(f"the config {config.path} names no golden set (`golden:`)")
    return Path(config.golden).parent / BASELINES_DIR / check_model_key(model) / f"{prompt}.json"


def read_baseline(path: Path) -> dict | None:
    """The baseline at ``path``, or None if there is none."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: baseline format {data.get('format')}, expected {FORMAT}")
    return data


def write_baseline(path: Path, snapshot: Mapping[str, Any]) -> Path:
    """Write ``snapshot`` atomically: one feature or edge per line, for readable diffs."""
    rows = {"features", "edges"}
    parts = []
    for name, value in snapshot.items():
        if name in rows:
            body = ",\n".join("    " + json.dumps(row) for row in value)
            parts.append(f'  "{name}": [\n{body}\n  ]' if value else f'  "{name}": []')
        else:
            text = json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n  ")
            parts.append(f"  {json.dumps(name)}: {text}")
    text = "{\n" + ",\n".join(parts) + "\n}\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        set_default_mode(tmp)  # mkstemp's file is private (0600); a baseline is committed
        os.replace(tmp, path)  # readers see the old baseline or the new one, never half
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


# -- snapshots of the lake ---------------------------------------------------------------


def missing_tables(lake: Lake, model: str, prompt: str) -> list[str]:
    """The graph tables that partition ``(model, prompt)`` lacks."""
    return [t for t in GRAPH_TABLES if not lake.has_partition(t, model=model, prompt=prompt)]


def _r(value) -> float | None:
    """A float rounded to 8 significant digits (None stays None, NaN becomes None)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else float(f"{value:.8g}")


def _node_ids(nodes: list[dict]) -> list[str]:
    """Index-free node names: ``f:L:P:F`` feature, ``e:L:P`` error, ``t:P`` token,
    ``l:V`` logit (vocabulary index)."""
    ids = []
    for n in nodes:
        kind = n["kind"]
        if kind == "feature":
            ids.append(f"f:{n['layer']}:{n['pos']}:{n['feature']}")
        elif kind == "error":
            ids.append(f"e:{n['layer']}:{n['pos']}")
        elif kind == "token":
            ids.append(f"t:{n['pos']}")
        else:
            ids.append(f"l:{n['token_id']}")
    return ids


def snapshot_from_lake(
    lake: Lake, model: str, prompt: str, *, text: str | None = None, max_edges: int = MAX_EDGES
) -> dict[str, Any]:
    """What a baseline holds, read from the lake tables of partition ``(model, prompt)``.

    Raises FileNotFoundError naming the partition if a graph table is missing.
    """
    missing = missing_tables(lake, model, prompt)
    if missing:
        raise FileNotFoundError(
            f"partition {multi_key(model, prompt)} has no {', '.join(missing)} in the lake "
            f"{lake.uri}"
        )
    keys = dict(model=model, prompt=prompt)
    graph = lake.read_table("graphs", **keys).to_pylist()[0]
    nodes = lake.read_table("nodes", **keys).to_pylist()
    ids = _node_ids(nodes)
    features = sorted(
        [n["layer"], n["pos"], n["feature"], _r(n["activation"]), _r(n["influence"])]
        for n in nodes
        if n["kind"] == "feature"
    )
    edges = lake.read_table("edges", **keys)
    target = edges.column("target").to_numpy()
    source = edges.column("source").to_numpy()
    weight = edges.column("weight").to_numpy()
    order = np.argsort(-np.abs(weight), kind="stable")[:max_edges]
    top_edges = [[ids[target[i]], ids[source[i]], _r(weight[i])] for i in order]
    targets = sorted(lake.read_table("logit_targets", **keys).to_pylist(), key=lambda r: r["rank"])
    scores = lake.read_table("scores", **keys).to_pylist()[0]
    return {
        "format": FORMAT,
        "partition": str(multi_key(model, prompt)),
        "model": model,
        "prompt_key": prompt,
        "prompt": text,
        "graph": {
            "model_name": graph["model_name"],
            "transcoders": graph["transcoders"],
            "dtype": graph["dtype"],
            "code_version": graph["code_version"],
            "dagster_run_id": graph["dagster_run_id"],
            "created_at": graph["created_at"].isoformat() if graph["created_at"] else None,
            "n_tokens": graph["n_tokens"],
            "n_features": graph["n_features"],
            "n_edges": graph["n_edges"],
        },
        "top_target": {
            "token": targets[0]["token"] if targets else None,
            "probability": _r(targets[0]["probability"]) if targets else None,
        },
        "scores": {name: _r(scores[name]) for name in (*SCORES, "error_influence_share")},
        "max_edges": max_edges,
        "features": features,
        "edges": top_edges,
    }


# -- comparison --------------------------------------------------------------------------


def jaccard(a, b) -> float:
    """``|a ∩ b| / |a ∪ b|``; 1.0 for two empty sets."""
    a, b = set(a), set(b)
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson r of two equal-length vectors; 1.0 if they are equal; None if undefined (fewer
    than 2 values, or a constant vector)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"pearson: lengths differ ({len(x)} vs {len(y)})")
    if len(x) < 2:
        return None
    if np.array_equal(x, y):
        return 1.0
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy) / denominator if denominator > 0 else None


def max_relative_diff(current: Sequence[float], baseline: Sequence[float]) -> float | None:
    """``max |a - b| / max(|b|, 1e-6)`` (``b`` the baseline); None for empty inputs."""
    a, b = np.asarray(current, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if len(a) == 0:
        return None
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6)))


def _abs_delta(current, baseline) -> float | None:
    if current is None and baseline is None:
        return 0.0
    if current is None or baseline is None:
        return None  # a score appeared or disappeared: graded as an error
    return abs(float(current) - float(baseline))


@dataclass
class DriftReport:
    """The measures of one cell, the grade of each and the cell's severity."""

    measures: dict[str, Any]
    grades: dict[str, str] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def severity(self) -> str:
        return max(self.grades.values(), key=_RANK.__getitem__, default=PASS)

    @property
    def passed(self) -> bool:
        return self.severity == PASS

    def metadata(self) -> dict[str, Any]:
        """Plain JSON-able values: every measure, the severity, reasons and thresholds."""
        return {
            "severity": self.severity,
            **self.measures,
            "reasons": list(self.reasons),
            "grades": dict(self.grades),
            "thresholds": {
                k: {"pass": b.pass_at, "warn": b.warn_at, "higher_is_better": b.higher}
                for k, b in THRESHOLDS.items()
            },
        }

    def summary(self) -> str:
        m = self.measures
        pearson_r = m["edge_pearson"]
        return (
            f"jaccard {m['feature_jaccard']:.4f}  "
            f"pearson {'n/a' if pearson_r is None else f'{pearson_r:.4f}'}  "
            f"top {'same' if m['same_top_target'] else 'CHANGED'}  "
            f"max|Δscore| {_fmt(m['max_score_abs_delta'])}  "
            f"max rel Δact {_fmt(m['max_rel_activation_diff'])}"
        )


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def compare(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> DriftReport:
    """Measure ``current`` against ``baseline`` (both snapshots) and grade each measure."""
    base_f = {tuple(f[:3]): f for f in baseline["features"]}
    cur_f = {tuple(f[:3]): f for f in current["features"]}
    shared_f = sorted(set(base_f) & set(cur_f))
    base_e = {(e[0], e[1]): e[2] for e in baseline["edges"]}
    cur_e = {(e[0], e[1]): e[2] for e in current["edges"]}
    shared_e = sorted(set(base_e) & set(cur_e))
    r = pearson([cur_e[k] for k in shared_e], [base_e[k] for k in shared_e])
    base_top, cur_top = baseline["top_target"], current["top_target"]
    measures: dict[str, Any] = {
        "feature_jaccard": jaccard(base_f, cur_f),
        "n_features_baseline": len(base_f),
        "n_features_current": len(cur_f),
        "n_features_shared": len(shared_f),
        "edge_pearson": r,
        "n_edges_baseline": len(base_e),
        "n_edges_current": len(cur_e),
        "n_edges_shared": len(shared_e),
        "same_top_target": base_top["token"] == cur_top["token"],
        "top_target_baseline": base_top["token"],
        "top_target_current": cur_top["token"],
        "top_target_prob_baseline": base_top["probability"],
        "top_target_prob_current": cur_top["probability"],
        "top_target_prob_abs_delta": _abs_delta(cur_top["probability"], base_top["probability"]),
    }
    for name in SCORES:
        measures[f"{name}_baseline"] = baseline["scores"].get(name)
        measures[f"{name}_current"] = current["scores"].get(name)
        measures[f"{name}_abs_delta"] = _abs_delta(
            current["scores"].get(name), baseline["scores"].get(name)
        )
    deltas = [measures[f"{name}_abs_delta"] for name in SCORES]
    measures["max_score_abs_delta"] = None if None in deltas else max(deltas)
    measures["max_rel_activation_diff"] = max_relative_diff(
        [cur_f[k][3] for k in shared_f], [base_f[k][3] for k in shared_f]
    )
    influence = [abs(cur_f[k][4] - base_f[k][4]) for k in shared_f]
    measures["max_abs_influence_delta"] = max(influence) if influence else None  # not graded

    report = DriftReport(measures)
    for name, band in THRESHOLDS.items():
        value = measures[name]
        if value is None:
            if name == "edge_pearson" and len(base_e) < 2:
                report.grades[name] = PASS  # nothing to correlate in the baseline
                continue
            if name == "max_rel_activation_diff" and not shared_f:
                continue  # no shared features: the Jaccard grade says it
            report.grades[name] = ERROR
            report.reasons.append(f"{name} undefined (baseline vs current do not overlap)")
            continue
        grade = band.grade(value)
        report.grades[name] = grade
        if grade != PASS:
            limit = band.pass_at if grade == WARN else band.warn_at
            op = "<" if band.higher else ">"
            report.reasons.append(f"{grade.upper()}: {name} {value:.4g} {op} {limit:g}")
    report.grades["same_top_target"] = PASS if measures["same_top_target"] else ERROR
    if not measures["same_top_target"]:
        report.reasons.append(
            f"ERROR: top target changed: {base_top['token']!r} -> {cur_top['token']!r}"
        )
    return report


# -- the check ---------------------------------------------------------------------------


def golden_check(config: LakehouseConfig, lake: Lake, key) -> tuple[str, dict[str, Any]]:
    """``(severity, metadata)`` of partition ``key`` against its baseline: ``skip`` with a
    note when the partition is not in the golden set or has no baseline yet (nothing was
    compared, so nothing passed)."""
    model, prompt = model_prompt(key)
    cell = golden_cell(config, key)
    if cell is None:
        return SKIP, {"golden": False, "note": "not in the golden set: nothing to compare"}
    path = baseline_path(config, model, prompt)
    baseline = read_baseline(path)
    if baseline is None:
        return SKIP, {
            "golden": True,
            "baseline": str(path),
            "note": f"no baseline yet: create it with `ct baseline update --model {model}`",
        }
    report = compare(baseline, snapshot_from_lake(lake, model, prompt, text=cell.prompt))
    return report.severity, {
        "golden": True,
        "baseline": str(path),
        "baseline_created_at": baseline.get("created_at"),
        "baseline_code_version": baseline.get("graph", {}).get("code_version"),
        **report.metadata(),
    }


def stamp(snapshot: dict[str, Any]) -> dict[str, Any]:
    """``snapshot`` with ``created_at`` (now, UTC) right after its ``format``."""
    out = {"format": snapshot["format"], "created_at": datetime.now(UTC).isoformat()}
    return out | {k: v for k, v in snapshot.items() if k not in out}
