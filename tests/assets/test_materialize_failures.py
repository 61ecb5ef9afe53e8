"""One bad prompt among many fails its own graph only: the range run's failure is retried one
partition per run, the good prompts get every asset, and the summary names the bad prompt and
the error its step raised."""

from __future__ import annotations

import dagster as dg

from ct_assets.lib.context import multi_key
from ct_assets.lib.resources import EngineResource
from ct_assets.lib.runner import materialize
from ct_lake.catalog import connect
from ct_lake.keys import prompt_key

from .conftest import PROMPTS

# Longer than the tiny model's context (512 positions): attribution refuses it.
TOO_LONG = " ".join(["the"] * 600)
GRAPH_ASSETS = ["attribution_graph", "pruned_graph", "graph_scores", "intervention_results"]


def _materialized(instance, asset: str, prompt: str) -> bool:
    key = str(multi_key("tiny", prompt_key(prompt)))
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1
    )
    return bool(found.records)


def test_a_bad_prompt_fails_only_its_partition(lakehouse, capfd):
    config, instance = lakehouse
    capfd.readouterr()
    engine = EngineResource(verbose=False)
    prompts = [TOO_LONG, PROMPTS[0]]  # one range: its first partition fails
    summary = materialize(
        config,
        "tiny",
        prompts,
        instance,
        with_model_assets=False,
        raise_on_error=False,
        engine=engine,
        quiet=True,
    )
    assert not summary.success
    assert summary.failed == [
        (
            TOO_LONG,
            "attribution_graph: ValueError: the prompt has 601 tokens (with the leading special "
            "token) but the model's context is 512: shorten it",
        )
    ]
    runs = [instance.get_run_by_id(run_id) for run_id in summary.run_ids]
    # the range run, then one run per partition of it, then the census
    assert [(r.job_name, r.tags.get("ct/prompts"), r.is_success) for r in runs] == [
        ("graph_job", "2", False),
        ("graph_job", "1", False),
        ("graph_job", "1", True),
        ("census_job", None, True),
    ]
    # one model load for all of them
    assert [name for name, _ in engine.models.load_events] == ["tiny"]
    for prompt in PROMPTS[:1]:
        assert all(_materialized(instance, asset, prompt) for asset in GRAPH_ASSETS), prompt
    assert not any(_materialized(instance, asset, TOO_LONG) for asset in GRAPH_ASSETS)
    con = connect(config.lake)
    for table in ("graphs", "pruned_nodes", "scores", "interventions"):
        keys = {row[0] for row in con.execute(f"SELECT DISTINCT prompt FROM {table}").fetchall()}
        assert keys == {prompt_key(PROMPTS[0])}, table
    assert con.execute("SELECT count(*) FROM feature_census").fetchone()[0] > 0
    # quiet: the summary names the failure; Dagster's stack dumps stay in its event log
    shown = capfd.readouterr()
    assert "Traceback" not in shown.err + shown.out


def test_unreachable_mlflow_is_in_the_summary_and_the_exit_status(
    tmp_path, tiny_lakehouse_files, monkeypatch
):
    import socket

    from ct_assets.commands.materialize import UNTRACKED, _status, exit_code
    from ct_lake.config import load_config

    from .conftest import write_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket closes
    uri = f"http://127.0.0.1:{port}"
    path = write_config(
        tmp_path, tiny_lakehouse_files, mlflow={"tracking_uri": uri, "timeout_s": 5}
    )
    monkeypatch.setenv("CT_CONFIG", str(path))
    config = load_config(path)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        summary = materialize(
            config, "tiny", PROMPTS[:1], instance, with_model_assets=False, quiet=True
        )
    assert summary.success  # the lake has every graph
    # every asset partition of the graph and the census, none tracked
    assert summary.untracked == len(GRAPH_ASSETS) + 2
    assert summary.tracking_error.startswith(f"MLflow at {uri}")  # refused, or slow to import
    assert exit_code(summary) == UNTRACKED == 3
    first, last = _status(summary, "tiny").splitlines()
    assert first.startswith(f"MLflow: {summary.untracked} asset partitions not tracked (the lake ")
    assert last == "done: 1 graphs of tiny"
