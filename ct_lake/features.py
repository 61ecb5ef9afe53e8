"""The feature dashboards in the lake, read back for the viewer (no torch, no engine).

The asset ``feature_dashboards`` writes, per model, the tables ``feature_stats`` (one row per
transcoder feature), ``feature_examples`` and ``feature_logits`` (:mod:`ct_lake.tables`) and
circuit-tracer's feature files under ``files/features/model=<m>/features/``. A person's label
on a feature node in the viewer (an annotation of kind ``label``) outranks the dashboards' own
label; the view ``feature_human_labels`` (``ct_lake/sql/views/``) is the one place that maps
annotations to features, and :func:`read_card` and :func:`labels` read it.

Each function takes the lake and, optionally, a DuckDB connection of
:func:`ct_lake.catalog.connect` over it, so that a caller reading many cards reuses one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from ct_lake.catalog import connect
from ct_lake.paths import FEATURE_DIR, FEATURE_FILES

HUMAN = "human"  # the label source of a person's label (ct_engine.features.LABEL_SOURCES[0])

_KEY = "model = ? AND layer = ? AND feature = ?"


@contextlib.contextmanager
def _connection(lake, con: duckdb.DuckDBPyConnection | None) -> Iterator:
    if con is not None:
        yield con
        return
    con = connect(lake)
    try:
        yield con
    finally:
        con.close()


def _rows(con, sql: str, params: list) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def read_card(
    lake, model: str, layer: int, feature: int, *, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, Any] | None:
    """Feature ``feature`` of layer ``layer`` of ``model``'s dashboards as
    ``FeatureCard.to_dict()`` JSON (pairs as ``[token, value]`` lists), with a person's label
    from the viewer in place of the dashboards' own (``label_source`` ``"human"``); None when
    the model has no dashboards or no such feature."""
    params = [model, int(layer), int(feature)]
    with _connection(lake, con) as con:
        found = _rows(con, f"SELECT * FROM feature_stats WHERE {_KEY}", params)
        if not found:
            return None
        stats = found[0]
        human = _rows(con, f"SELECT label FROM feature_human_labels WHERE {_KEY}", params)
        examples = _rows(
            con,
            "SELECT group_name, group_rank, tokens, acts, max_pos, max_act "
            f"FROM feature_examples WHERE {_KEY} ORDER BY group_rank, rank",
            params,
        )
        logits = _rows(
            con,
            f"SELECT direction, token, value FROM feature_logits WHERE {_KEY} ORDER BY rank",
            params,
        )
    groups: list[dict[str, Any]] = []
    for row in examples:
        if not groups or groups[-1]["rank"] != row["group_rank"]:
            groups.append({"rank": row["group_rank"], "name": row["group_name"], "examples": []})
        groups[-1]["examples"].append(
            {
                "tokens": list(row["tokens"]),
                "acts": [float(a) for a in row["acts"]],
                "max_pos": int(row["max_pos"]),
                "max_act": float(row["max_act"]),
            }
        )
    label, source = stats["label"] or "", stats["label_source"] or ""
    if human:
        label, source = human[0]["label"], HUMAN
    return {
        "layer": int(stats["layer"]),
        "feature": int(stats["feature"]),
        "transcoder_id": stats["transcoder_id"] or "",
        "n_tokens": int(stats["n_tokens"]),
        "n_active": int(stats["n_active"]),
        "frequency": float(stats["frequency"]),
        "act_min": float(stats["act_min"]),
        "act_max": float(stats["act_max"]),
        "act_mean": float(stats["act_mean"]),
        "quantile_levels": [float(q) for q in stats["quantile_levels"]],
        "quantile_values": [float(v) for v in stats["quantile_values"]],
        "histogram_edges": [float(e) for e in stats["histogram_edges"]],
        "histogram_counts": [int(c) for c in stats["histogram_counts"]],
        "groups": [{"name": g["name"], "examples": g["examples"]} for g in groups],
        "top_logits": [[r["token"], float(r["value"])] for r in logits if r["direction"] == "top"],
        "bottom_logits": [
            [r["token"], float(r["value"])] for r in logits if r["direction"] == "bottom"
        ],
        "top_tokens": [
            [token, int(count)]
            for token, count in zip(stats["top_tokens"], stats["top_token_counts"], strict=True)
        ],
        "label": label,
        "label_source": source,
    }


def labels(
    lake, model: str, *, con: duckdb.DuckDBPyConnection | None = None
) -> dict[tuple[int, int], tuple[str, str]]:
    """``{(layer, feature): (label, source)}`` of every labelled feature of ``model``: a
    person's label from the viewer where there is one (source ``"human"``, also for a feature
    without dashboards), else the dashboards' own (``truth``, ``explainer`` or ``auto``)."""
    with _connection(lake, con) as con:
        rows = con.execute(
            "SELECT layer, feature, label, label_source FROM feature_cards "
            "WHERE model = ? AND label <> '' "
            "UNION ALL "
            "SELECT h.layer, h.feature, h.label, ? FROM feature_human_labels AS h "
            "WHERE h.model = ? AND NOT EXISTS (SELECT 1 FROM feature_stats AS s "
            "WHERE s.model = h.model AND s.layer = h.layer AND s.feature = h.feature)",
            [model, HUMAN, model],
        ).fetchall()
    return {(int(layer), int(feature)): (label, source) for layer, feature, label, source in rows}


def feature_files(lake, model: str) -> Path | None:
    """A local folder with ``model``'s circuit-tracer feature files (``index.json.gz`` and
    ``layer_<l>.bin``; fetched into the local cache for a lake on object storage), or None
    before ``feature_dashboards`` ran."""
    try:  # a tree is stored whole or not at all
        return lake.local_tree(FEATURE_FILES, FEATURE_DIR, model=model)
    except FileNotFoundError:
        return None
