"""MLflow tracking: one finished run per (Dagster run, partition) that every asset of the
partition logs into, also when a step is retried after its worker died; the experiment opens
in MLflow's machine-learning view; and MLflow down: the lake is still written, the failure
shows in metadata and a failed check, and nothing hangs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ct_assets.lib.context import multi_key
from ct_assets.lib.resources import lakehouse_resources
from ct_assets.lib.tracking import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    PARAM_CONFLICTS_TAG,
    RUN_KEY_TAG,
    MlflowTracker,
    TrackedRun,
    TrackingOutcome,
    run_key,
)
from ct_lake.config import TRACKING_URI_ENV, LakehouseConfig, load_config
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake
from ct_lake.prompts import register_prompts

from .conftest import PROMPTS, write_config

EXPERIMENT = "tracking-test"
PARAMS = {"model": "toy-world", "batch_size": 64}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


def _config(folder: Path, tracking_uri: str, monkeypatch) -> LakehouseConfig:
    """A config whose MLflow is ``tracking_uri`` (no model is loaded: tracking needs none)."""
    monkeypatch.delenv(TRACKING_URI_ENV, raising=False)
    path = folder / "ct_lakehouse.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "lake": "lake",
                "mlflow": {"tracking_uri": tracking_uri, "experiment": EXPERIMENT, "timeout_s": 30},
                "models": [{"name": "toy", "model": "toy-world", "transcoders": "toy-world-plt"}],
            }
        )
    )
    return load_config(path)


def _tracked(run: str, partition: str) -> TrackedRun:
    tags = {"dagster.run_id": run, "dagster.partition_key": partition}
    return TrackedRun(run_key(run, partition), f"toy · {partition}", tags, {"model": "toy-world"})


def _log(
    config,
    artifact: Path,
    *,
    run="dagster-run-1",
    partition="toy|p_1",
    asset="attribution_graph",
    **changes,
):
    values = dict(params=PARAMS, metrics={"n_edges": 10.0, "time_s": 1.5}) | changes
    return MlflowTracker().log_partition(
        config, _tracked(run, partition), asset=asset, artifacts=[artifact], **values
    )


def _runs(config) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], max_results=100)


@pytest.fixture
def artifact(tmp_path) -> Path:
    path = tmp_path / "graph.json"
    path.write_text('{"nodes": []}')
    return path


@pytest.fixture
def sqlite_config(tmp_path, monkeypatch) -> LakehouseConfig:
    return _config(tmp_path, "sqlite:///mlflow.db", monkeypatch)


def _assert_one_finished_run(config, outcomes: list[TrackingOutcome], metrics: dict) -> None:
    from mlflow.tracking import MlflowClient

    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    [run] = _runs(config)
    assert {o.run_id for o in outcomes} == {run.info.run_id}
    assert run.info.status == "FINISHED"
    assert run.data.metrics == metrics  # the latest attempt's values
    assert run.data.params == {"model": "toy-world", "batch_size": "64"}
    assert run.data.tags[RUN_KEY_TAG] == run_key("dagster-run-1", "toy|p_1")
    assert run.data.tags["dagster.partition_key"] == "toy|p_1"
    assert run.info.run_name == "toy · toy|p_1"
    client = MlflowClient(tracking_uri=config.tracking_uri)
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["graph.json"]


def test_logging_a_partition_twice_leaves_one_finished_run(sqlite_config, artifact):
    first = _log(sqlite_config, artifact)
    second = _log(sqlite_config, artifact, metrics={"n_edges": 12.0, "time_s": 2.0})
    assert first.warning is None and second.warning is None
    _assert_one_finished_run(sqlite_config, [first, second], {"n_edges": 12.0, "time_s": 2.0})


def _killed_attempt(config, params: dict) -> str:
    """The MLflow run of a first attempt whose worker died mid-step: created with its run key
    and params, never terminated (RUNNING, no metrics)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config.tracking_uri)
    experiment_id = client.create_experiment(
        EXPERIMENT, artifact_location=(config.base / "killed-artifacts").as_uri()
    )
    key = run_key("dagster-run-1", "toy|p_1")
    run = client.create_run(experiment_id, tags={RUN_KEY_TAG: key})
    for name, value in params.items():
        client.log_param(run.info.run_id, name, value)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"
    return run.info.run_id


def test_a_run_left_running_by_a_killed_attempt_is_finished(sqlite_config, artifact):
    left = _killed_attempt(sqlite_config, {"model": "toy-world"})
    outcome = _log(sqlite_config, artifact)
    assert outcome.run_id == left and outcome.warning is None
    _assert_one_finished_run(sqlite_config, [outcome], {"n_edges": 10.0, "time_s": 1.5})
    [run] = _runs(sqlite_config)
    assert run.data.tags["dagster.run_id"] == "dagster-run-1"  # the tags the attempt lacked
    assert PARAM_CONFLICTS_TAG not in run.data.tags


def test_a_param_changed_since_the_killed_attempt_is_reported_not_raised(sqlite_config, artifact):
    left = _killed_attempt(sqlite_config, {"model": "toy-world", "batch_size": "32"})
    outcome = _log(sqlite_config, artifact)
    assert outcome.ok and outcome.run_id == left
    expected = "batch_size: '32' -> '64'"
    assert expected in outcome.warning
    assert expected in outcome.metadata()["mlflow_warning"].value
    [run] = _runs(sqlite_config)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"model": "toy-world", "batch_size": "32"}  # MLflow keeps the first
    assert expected in run.data.tags[PARAM_CONFLICTS_TAG]
    assert run.data.metrics == {"n_edges": 10.0, "time_s": 1.5}


def test_other_partitions_and_dagster_runs_get_their_own_runs(sqlite_config, artifact):
    outcomes = [
        _log(sqlite_config, artifact),
        _log(sqlite_config, artifact, partition="toy|p_2"),
        _log(sqlite_config, artifact, run="dagster-run-2"),
        _log(sqlite_config, artifact),  # the first again: reused
    ]
    assert all(o.ok for o in outcomes)
    runs = _runs(sqlite_config)
    assert len(runs) == 3
    assert len({o.run_id for o in outcomes}) == 3 and outcomes[0].run_id == outcomes[3].run_id
    assert len({r.data.tags[RUN_KEY_TAG] for r in runs}) == 3
    assert all(r.info.status == "FINISHED" for r in runs)


def test_every_asset_of_a_graph_logs_into_its_one_run(sqlite_config, artifact):
    attribution = _log(sqlite_config, artifact)
    scores = _log(
        sqlite_config,
        artifact,
        asset="graph_scores",
        params={"node_threshold": 0.8},
        metrics={"replacement_score": 0.7},
    )
    assert attribution.run_id == scores.run_id and scores.warning is None
    [run] = _runs(sqlite_config)
    # the scores sit next to the settings that made them: filterable in the runs table
    assert run.data.params == {"model": "toy-world", "batch_size": "64", "node_threshold": "0.8"}
    assert run.data.metrics == {"n_edges": 10.0, "time_s": 1.5, "replacement_score": 0.7}
    assert run.data.tags["ct.asset.attribution_graph"] == "logged"
    assert run.data.tags["ct.asset.graph_scores"] == "logged"
    assert scores.url == (
        f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        "?workflowType=machine_learning"
    )
    assert scores.metadata()["mlflow_run"].value == scores.url


def test_the_experiment_opens_in_the_machine_learning_view(sqlite_config, artifact):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=sqlite_config.tracking_uri)
    _log(sqlite_config, artifact)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    # an experiment made before (by hand, or by an older version) gets the kind too
    client.delete_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG)
    _log(sqlite_config, artifact, run="dagster-run-2")
    assert client.get_experiment_by_name(EXPERIMENT).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_the_ui_links_follow_the_config(tmp_path, monkeypatch):
    config = _config(tmp_path, "sqlite:///mlflow.db", monkeypatch)
    monkeypatch.delenv("CT_DAGSTER_URL", raising=False)
    assert config.mlflow_ui_url == "http://127.0.0.1:5000"
    assert config.dagster_url == "http://127.0.0.1:3000"
    monkeypatch.setenv("CT_DAGSTER_URL", "http://dagster.lab:3000/")
    assert config.dagster_url == "http://dagster.lab:3000"
    server = _config(tmp_path, "http://mlflow.lab:5000", monkeypatch)
    assert server.mlflow_ui_url == "http://mlflow.lab:5000"  # the tracking server is its UI
    raw = yaml.safe_load(server.path.read_text())
    raw["mlflow"]["ui_url"] = "https://mlflow.example.org/"
    raw["dagster_ui_url"] = "https://dagster.example.org"
    server.path.write_text(yaml.safe_dump(raw))
    explicit = load_config(server.path)
    assert explicit.mlflow_ui_url == "https://mlflow.example.org"
    assert explicit.dagster_url == "https://dagster.example.org"
    raw["dagster_ui_url"] = "dagster.example.org"
    server.path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="dagster_ui_url"):
        load_config(server.path)


def test_the_run_key_is_the_same_in_another_process():
    """A retried step may run on another worker: its key must not depend on the process."""
    script = "from ct_assets.lib.tracking import run_key; print(run_key('r', 'toy|p_1'))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
        check=True,
    )
    assert done.stdout.strip() == run_key("r", "toy|p_1")
    assert run_key("r", "toy|p_1") != run_key("r", "toy|p_2")
    assert run_key("r", None) == run_key("r", "")  # an unpartitioned asset
    assert run_key("r|", "") != run_key("r", "|")  # fields do not run together


@pytest.mark.slow
def test_a_retry_through_an_mlflow_server_leaves_one_finished_run(
    mlflow_server,
    tmp_path,
    monkeypatch,
    artifact,
):
    config = _config(tmp_path, mlflow_server, monkeypatch)
    left = _killed_attempt(config, {"model": "toy-world"})
    first = _log(config, artifact)
    second = _log(config, artifact, metrics={"n_edges": 11.0, "time_s": 3.0})
    assert first.run_id == second.run_id == left
    _assert_one_finished_run(config, [first, second], {"n_edges": 11.0, "time_s": 3.0})


def test_unreachable_mlflow_keeps_the_lake_and_fails_a_check(tmp_path, tiny_lakehouse_files):
    from ct_assets.defs.assets.graphs import attribution_graph

    mlflow = {"tracking_uri": f"http://127.0.0.1:{_closed_port()}", "timeout_s": 3}
    path = write_config(tmp_path, tiny_lakehouse_files, mlflow=mlflow)
    config = load_config(path)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        register_prompts(config, PROMPTS[:1], ["tiny"], instance)
        start = time.perf_counter()
        result = dg.materialize(
            [attribution_graph],
            partition_key=multi_key("tiny", prompt_key(PROMPTS[0])),
            instance=instance,
            resources=lakehouse_resources(str(path)),
        )
        elapsed = time.perf_counter() - start
    assert result.success
    assert elapsed < 60  # the tracking call gave up; nothing hung
    lake = Lake(config.lake)
    keys = dict(model="tiny", prompt=prompt_key(PROMPTS[0]))
    assert lake.read_table("graphs", **keys).num_rows == 1
    assert lake.read_table("edges", **keys).num_rows > 0
    [materialization] = result.asset_materializations_for_node("attribution_graph")
    error = materialization.metadata["mlflow_error"].value
    assert "127.0.0.1" in error
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "mlflow_logged" and not check.passed


@pytest.fixture
def silent_server():
    """An HTTP address whose server accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    held, stop = [], threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:  # the accept timed out: look at stop again
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_silent_server_is_waited_for_once_per_dagster_run(
    tmp_path, monkeypatch, artifact, silent_server
):
    import mlflow.tracking  # noqa: F401 - imported before the clocks below start

    config = _config(tmp_path, silent_server, monkeypatch)
    tracker = MlflowTracker(timeout_s=2)

    def log_graph(run: str) -> tuple[float, list[TrackingOutcome]]:
        start = time.perf_counter()
        outcomes = [
            tracker.log_partition(
                config, _tracked(run, partition), asset=asset, params=PARAMS, metrics={}
            )
            for partition in ("toy|p_1", "toy|p_2")
            for asset in ("attribution_graph", "pruned_graph", "graph_scores")
        ]
        return time.perf_counter() - start, outcomes

    elapsed, outcomes = log_graph("silent-run-1")
    # one wait of timeout_s for the six calls (not six), each reported
    assert elapsed < 2 + 2.5, elapsed
    assert not any(o.ok for o in outcomes)
    assert outcomes[0].error == f"MLflow at {silent_server} did not answer in 2s"
    assert all(o.error == outcomes[0].error + " (not tried again)" for o in outcomes[1:])
    # another Dagster run tries again (the server may be back): one wait again
    elapsed, outcomes = log_graph("silent-run-2")
    assert 2 <= elapsed < 2 + 2.5, elapsed
    assert outcomes[0].error == f"MLflow at {silent_server} did not answer in 2s"


FIRST_RUN = """
import sys, time
from pathlib import Path
from ct_assets.lib.tracking import MlflowTracker, TrackedRun, run_key
from ct_lake.config import load_config

config, run, folder = load_config(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
(folder / f"ready-{run}").touch()
while len(list(folder.glob("ready-*"))) < 2:  # both imported: start together
    time.sleep(0.01)
tracked = TrackedRun(run_key(run, "toy|p_1"), run, {"dagster.run_id": run}, {"model": "toy-world"})
outcome = MlflowTracker().log_partition(config, tracked, asset="a", params={}, metrics={})
print("ok" if outcome.ok else outcome.error)
"""


@pytest.mark.slow  # MLflow's migrations of a new store: ~1 min on a loaded machine
def test_two_first_runs_at_once_both_log_to_a_new_sqlite_store(tmp_path, monkeypatch):
    config = _config(tmp_path, "sqlite:///mlflow.db", monkeypatch)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_RUN, str(config.path), f"run-{i}", str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ | {"MLFLOW_LOGGING_LEVEL": "ERROR"},
        )
        for i in range(2)
    ]
    outputs = [proc.communicate(timeout=180)[0] for proc in procs]
    assert [out.strip().splitlines()[-1] for out in outputs] == ["ok", "ok"], outputs
    assert sorted(r.info.run_name for r in _runs(config)) == ["run-0", "run-1"]
