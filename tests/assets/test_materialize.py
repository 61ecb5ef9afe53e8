"""The whole asset graph, materialized in process for 3 prompts on a tiny model: the project's
jobs run over a partition range, the lake holds every table, and Dagster and MLflow show each
partition's own facts: one materialization per partition with its own scores, its prompt's
text and a link to its graph's one MLflow run."""

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


THREE = [*PROMPTS, "Austin is the capital of the state of"]


def test_three_prompts_fill_every_table_and_mlflow(lakehouse):
    config, instance = lakehouse
    engine = EngineResource()
    stored = []
    summary = materialize(
        config,
        "tiny",
        THREE,
        instance,
        engine=engine,
        on_materialized=lambda asset, partition: stored.append((asset, partition)),
    )
    assert summary.success
    # model_job, graph_job over the 3-prompt range, census_job: the runs of the defined jobs,
    # tagged with what they are about
    runs = [instance.get_run_by_id(run_id) for run_id in summary.run_ids]
    assert [run.job_name for run in runs] == ["model_job", "graph_job", "census_job"]
    assert all(run.tags["ct/model"] == "tiny" for run in runs)
    assert runs[1].tags["ct/prompts"] == "3"
    assert runs[1].tags["ct/prompt"] == f"{PROMPTS[0]} (+2 more)"
    # the progress callback heard of every asset partition, as the plan counts them
    from ct_assets.lib.runner import planned_steps, project_definitions

    assert len(stored) == len(set(stored)) == planned_steps(project_definitions(), 3)
    assert ("graph_scores", str(multi_key("tiny", prompt_key(THREE[2])))) in stored
    # one model load for every run (the engine resource's cache)
    assert [name for name, _ in engine.models.load_events] == ["tiny"]
    con = connect(config.lake)
    keys = sorted(prompt_key(p) for p in THREE)
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
    assert len(scores) == 3 and all(0 <= r <= 1 and 0 <= pr <= 1 for r, pr in scores)
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
    texts = {prompt_key(t): t for t in THREE}
    for prompt, _, n_features, n_edges, top_target in graphs:
        meta = _latest(instance, "attribution_graph", multi_key("tiny", prompt))
        assert meta["n_edges"] == n_edges and meta["top_target"] == top_target
        assert meta["n_features"] == n_features and meta["max_feature_nodes"] == 200
        assert meta["prompt_text"] == texts[prompt]
        assert meta["graph_file"].endswith(f"prompt={prompt}/graph.safetensors")
        pruned = _latest(instance, "pruned_graph", multi_key("tiny", prompt))
        assert pruned["pruned graph"].startswith("![pruned graph](data:image/png;base64,")
        assert pruned["node_threshold"] == config.pruning.node_threshold
        assert pruned["prompt_text"] == texts[prompt]
    _check_graph_scores_and_mlflow(config, instance, con, runs[1].run_id, texts)


def _check_graph_scores_and_mlflow(config, instance, con, graph_run: str, texts: dict) -> None:
    """``graph_scores`` shows one materialization per partition with that graph's own scores
    (the values of the lake's ``scores`` table, not another column or partition), its prompt's
    text and the link to its MLflow run; that run is the graph's one run, holding every
    asset's params and metrics, and links back to the Dagster run."""
    from mlflow.tracking import MlflowClient

    events = instance.get_records_for_run(
        graph_run, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    scored = [
        e.event_log_entry.dagster_event.partition
        for e in events
        if e.event_log_entry.dagster_event.asset_key == dg.AssetKey("graph_scores")
    ]
    assert sorted(scored) == sorted(str(multi_key("tiny", k)) for k in texts)
    client = MlflowClient(tracking_uri=config.tracking_uri)
    experiment = client.get_experiment_by_name("test")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    graph_runs = [r for r in runs if r.data.tags.get("dagster.run_id") == graph_run]
    assert len(graph_runs) == len(texts)  # one MLflow run per graph
    by_prompt = {r.data.tags["ct.prompt_key"]: r for r in graph_runs}
    columns = ("replacement_score", "completeness_score", "pruned_replacement_score")
    seen = set()
    for prompt, text in texts.items():
        row = con.execute(
            f"SELECT {', '.join(columns)} FROM scores WHERE prompt = ?", [prompt]
        ).fetchone()
        seen.add(row)
        meta = _latest(instance, "graph_scores", multi_key("tiny", prompt))
        assert tuple(meta[c] for c in columns) == pytest.approx(row)
        assert meta["prompt_text"] == text
        run = by_prompt[prompt]
        assert meta["mlflow_run_id"] == run.info.run_id
        assert meta["mlflow_run"] == (
            f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
            "?workflowType=machine_learning"
        )
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"tiny · {text}"[: len(run.info.run_name)]
        assert run.info.run_name.startswith("tiny · " + text[:20])
        # the scores sit next to the settings that made them
        params = run.data.params
        assert params["model"] == config.model("tiny").model
        assert params["transcoders"] == config.model("tiny").transcoders
        assert params["prompt_text"] == text
        assert params["node_threshold"] == str(config.pruning.node_threshold)
        assert params["edge_threshold"] == str(config.pruning.edge_threshold)
        assert params["max_feature_nodes"] == "200" and params["max_n_logits"] == "5"
        assert params["desired_logit_prob"] == "0.9" and params["batch_size"] == "32"
        assert tuple(run.data.metrics[c] for c in columns) == pytest.approx(row)
        n_edges = con.execute("SELECT n_edges FROM graphs WHERE prompt = ?", [prompt]).fetchone()
        assert run.data.metrics["n_edges"] == n_edges[0]
        assert {"time_forward_s", "time_load_model_s", "peak_memory_mb"} <= set(run.data.metrics)
        assert {"n_rows", "size_bytes", "kept_nodes"} <= set(run.data.metrics)  # other assets
        assert run.data.tags["dagster.run_url"] == f"http://127.0.0.1:3000/runs/{graph_run}"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "pruned_graph.png" in artifacts and any(a.endswith(".json") for a in artifacts)
    assert len(seen) == len(texts)  # the graphs differ: each shows its own
    [quality] = [r for r in runs if r.data.tags.get("ct.asset.transcoder_quality")]
    assert quality.info.run_name == "tiny · model_job"
    assert "mean_fvu_centered" in quality.data.metrics
    assert "labelled_auto" in quality.data.metrics or "features" in quality.data.metrics
    assert any(a.path.endswith(".png") for a in client.list_artifacts(quality.info.run_id))


def test_rematerializing_replaces_partitions(lakehouse, capfd):
    config, instance = lakehouse
    engine = EngineResource()
    materialize(config, "tiny", PROMPTS[:1], instance, engine=engine)
    # Dagster's console log shows every event by default (what `ct materialize --verbose`
    # shows), warnings and errors only when quiet
    assert " - DEBUG - " in capfd.readouterr().err
    con = connect(config.lake)
    first = {t: _count(con, t) for t in ("nodes", "edges", "graphs", "scores")}
    materialize(
        config, "tiny", PROMPTS[:1], instance, with_model_assets=False, engine=engine, quiet=True
    )
    quiet = capfd.readouterr().err
    assert " - DEBUG - " not in quiet and " - INFO - " not in quiet, quiet
    con = connect(config.lake)
    second = {t: _count(con, t) for t in ("nodes", "edges", "graphs", "scores")}
    assert first == second
    assert _count(con, "score_history") == 2  # history keeps one row per run
    assert len(engine.models.load_events) == 1  # the second call reused the loaded model
