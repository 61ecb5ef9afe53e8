"""The whole asset graph, materialized in process for 2 prompts on a tiny model: the project's
jobs run over a partition range, the lake holds every table, and Dagster and MLflow show each
partition's own facts."""

from __future__ import annotations

import dagster as dg
import pytest

from ct_assets.lib.context import multi_key
from ct_assets.lib.resources import EngineResource
from ct_assets.lib.runner import materialize
from ct_lake.catalog import connect
from ct_lake.keys import prompt_key

from .conftest import PROMPTS


def _count(con, table, where="", params=()):
    return con.execute(f"SELECT count(*) FROM {table} {where}", list(params)).fetchone()[0]


def _latest(instance, asset: str, key) -> dict:
    """The metadata of the latest materialization of ``asset``'s partition ``key``."""
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(key)]),
        limit=1,
    ).records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def test_two_prompts_fill_every_table_and_mlflow(lakehouse):
    from mlflow.tracking import MlflowClient

    config, instance = lakehouse
    engine = EngineResource()
    summary = materialize(config, "tiny", PROMPTS, instance, engine=engine)
    assert summary.success
    # model_job, graph_job over the 2-prompt range, census_job: the runs of the defined jobs
    jobs = [instance.get_run_by_id(run_id).job_name for run_id in summary.run_ids]
    assert jobs == ["model_job", "graph_job", "census_job"]
    # one model load for every run (the engine resource's cache)
    assert [name for name, _ in engine.models.load_events] == ["tiny"]
    con = connect(config.lake)
    keys = sorted(prompt_key(p) for p in PROMPTS)
    graphs = con.execute(
        "SELECT prompt, n_tokens, n_features, n_edges, top_target FROM graphs ORDER BY prompt"
    ).fetchall()
    assert [g[0] for g in graphs] == keys
    for prompt, n_tokens, n_features, n_edges, _ in graphs:
        where, params = "WHERE prompt = ?", [prompt]
        assert _count(con, "nodes", where, params) == n_features + 3 * n_tokens + _count(
            con, "logit_targets", where, params
        )
        assert _count(con, "edges", where, params) == n_edges > 0
        assert _count(con, "edges", where + " AND weight = 0", params) == 0
    scores = con.execute(
        "SELECT replacement_score, pruned_replacement_score FROM scores"
    ).fetchall()
    assert len(scores) == 2 and all(0 <= r <= 1 and 0 <= pr <= 1 for r, pr in scores)
    for prompt in keys:
        kept = con.execute(
            "SELECT count(*) FROM pruned_nodes p JOIN nodes n USING (model, prompt, node) "
            "WHERE prompt = ? AND kept AND kind = 'feature'",
            [prompt],
        ).fetchone()[0]
        targets = _count(con, "logit_targets", "WHERE prompt = ?", [prompt])
        assert _count(con, "interventions", "WHERE prompt = ?", [prompt]) == min(3, kept) * min(
            2, targets
        )
    rows = con.execute(
        "SELECT predicted_effect, observed_direct_effect FROM interventions"
    ).fetchall()
    for predicted, observed in rows:
        assert observed == pytest.approx(predicted, abs=1e-3, rel=1e-2)
    assert _count(con, "feature_census") > 0
    assert _count(con, "transcoder_quality") > 0

    # Each partition's latest materialization shows its own graph, as the lake has it.
    for prompt, _, n_features, n_edges, top_target in graphs:
        meta = _latest(instance, "attribution_graph", multi_key("tiny", prompt))
        assert meta["n_edges"] == n_edges and meta["top_target"] == top_target
        assert meta["n_features"] == n_features and meta["max_feature_nodes"] == 200
        assert meta["prompt"] in PROMPTS and prompt_key(meta["prompt"]) == prompt
        assert meta["graph_file"].endswith(f"prompt={prompt}/graph.safetensors")
        pruned = _latest(instance, "pruned_graph", multi_key("tiny", prompt))
        assert pruned["pruned graph"].startswith("![pruned graph](data:image/png;base64,")
        assert pruned["node_threshold"] == config.pruning.node_threshold

    client = MlflowClient(tracking_uri=config.tracking_uri)
    experiment = client.get_experiment_by_name("test")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    by_asset = {}
    for run in runs:
        by_asset.setdefault(run.data.tags["dagster.asset_key"], []).append(run)
    assert len(by_asset["attribution_graph"]) == 2
    by_partition = {r.data.tags["dagster.partition_key"]: r for r in by_asset["attribution_graph"]}
    for prompt, _, n_features, n_edges, _ in graphs:
        run = by_partition[str(multi_key("tiny", prompt))]
        assert run.info.status == "FINISHED"
        # the params the config set, the metrics the graph has
        params = run.data.params
        assert params["max_feature_nodes"] == "200" and params["max_n_logits"] == "5"
        assert params["desired_logit_prob"] == "0.9" and params["batch_size"] == "32"
        assert params["model"] == config.model("tiny").model
        assert run.data.metrics["n_edges"] == n_edges
        assert run.data.metrics["n_features"] == n_features
        assert {"time_forward_s", "time_load_model_s", "peak_memory_mb"} <= set(run.data.metrics)
    assert len(by_asset["graph_scores"]) == 2
    assert "replacement_score" in by_asset["graph_scores"][0].data.metrics
    [quality] = by_asset["transcoder_quality"]
    assert "mean_fvu_centered" in quality.data.metrics
    assert any(a.path.endswith(".png") for a in client.list_artifacts(quality.info.run_id))


def test_rematerializing_replaces_partitions(lakehouse):
    config, instance = lakehouse
    engine = EngineResource()
    materialize(config, "tiny", PROMPTS[:1], instance, engine=engine)
    con = connect(config.lake)
    first = {t: _count(con, t) for t in ("nodes", "edges", "graphs", "scores")}
    materialize(config, "tiny", PROMPTS[:1], instance, with_model_assets=False, engine=engine)
    con = connect(config.lake)
    second = {t: _count(con, t) for t in ("nodes", "edges", "graphs", "scores")}
    assert first == second
    assert _count(con, "score_history") == 2  # history keeps one row per run
    assert len(engine.models.load_events) == 1  # the second call reused the loaded model
