"""The whole asset graph, materialized in process for 2 prompts on a tiny model."""

from __future__ import annotations

import duckdb
import pytest

from ct_assets.lib.runner import materialize
from ct_lake.keys import prompt_key

from .conftest import PROMPTS


def _count(con, lake, table, where=""):
    glob = lake.table_glob(table) if hasattr(lake, "table_glob") else lake
    query = f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true) {where}"
    return con.execute(query).fetchone()[0]


def test_two_prompts_fill_every_table_and_mlflow(lakehouse):
    from mlflow.tracking import MlflowClient

    from ct_assets.lib.resources import LOAD_EVENTS
    from ct_lake.lake import Lake

    config, instance = lakehouse
    summary = materialize(config, "tiny", PROMPTS, instance)
    assert summary.success
    assert [name for name, _ in LOAD_EVENTS] == ["tiny"]  # one model load for the whole run
    lake = Lake(config.lake)
    con = duckdb.connect()
    keys = sorted(prompt_key(p) for p in PROMPTS)
    graphs = con.execute(
        f"SELECT prompt, n_tokens, n_features, n_edges, top_target FROM "
        f"read_parquet('{lake.table_glob('graphs')}', hive_partitioning=true) ORDER BY prompt"
    ).fetchall()
    assert [g[0] for g in graphs] == keys
    for prompt, n_tokens, n_features, n_edges, _ in graphs:
        where = f"WHERE prompt = '{prompt}'"
        assert _count(con, lake, "nodes", where) == n_features + 3 * n_tokens + _count(
            con, lake, "logit_targets", where
        )
        assert _count(con, lake, "edges", where) == n_edges > 0
        zero = _count(con, lake, "edges", where + " AND weight = 0")
        assert zero == 0
    scores = con.execute(
        f"SELECT replacement_score, pruned_replacement_score FROM "
        f"read_parquet('{lake.table_glob('scores')}', hive_partitioning=true)"
    ).fetchall()
    assert len(scores) == 2 and all(0 <= r <= 1 and 0 <= pr <= 1 for r, pr in scores)
    rows = con.execute(
        f"SELECT predicted_effect, observed_direct_effect FROM "
        f"read_parquet('{lake.table_glob('interventions')}', hive_partitioning=true)"
    ).fetchall()
    glob = lake.table_glob("pruned_nodes")
    for prompt in keys:
        kept = con.execute(
            f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true) p JOIN "
            f"read_parquet('{lake.table_glob('nodes')}', hive_partitioning=true) n "
            f"USING (model, prompt, node) WHERE prompt = '{prompt}' AND kept AND kind = 'feature'"
        ).fetchone()[0]
        where = f"WHERE prompt = '{prompt}'"
        targets = _count(con, lake, "logit_targets", where)
        assert _count(con, lake, "interventions", where) == min(3, kept) * min(2, targets)
    for predicted, observed in rows:
        assert observed == pytest.approx(predicted, abs=1e-3, rel=1e-2)
    assert _count(con, lake, "feature_census") > 0
    assert _count(con, lake, "transcoder_quality") > 0

    client = MlflowClient(tracking_uri=config.tracking_uri)
    experiment = client.get_experiment_by_name("test")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    by_asset = {}
    for run in runs:
        by_asset.setdefault(run.data.tags["dagster.asset_key"], []).append(run)
    assert len(by_asset["attribution_graph"]) == 2
    run = by_asset["attribution_graph"][0]
    assert run.info.status == "FINISHED"
    assert run.data.params["max_feature_nodes"] == "200"
    assert run.data.tags["dagster.partition_key"].startswith("tiny|p_")
    assert {"n_features", "time_attribution_s", "peak_memory_mb"} <= set(run.data.metrics) or (
        "n_features" in run.data.metrics
    )
    assert len(by_asset["graph_scores"]) == 2
    assert "replacement_score" in by_asset["graph_scores"][0].data.metrics


def test_rematerializing_replaces_partitions(lakehouse):
    from ct_lake.lake import Lake

    config, instance = lakehouse
    materialize(config, "tiny", PROMPTS[:1], instance)
    lake = Lake(config.lake)
    con = duckdb.connect()
    first = {t: _count(con, lake, t) for t in ("nodes", "edges", "graphs", "scores")}
    materialize(config, "tiny", PROMPTS[:1], instance, with_model_assets=False)
    second = {t: _count(con, lake, t) for t in ("nodes", "edges", "graphs", "scores")}
    assert first == second
    assert _count(con, lake, "score_history") == 2  # history keeps one row per run
