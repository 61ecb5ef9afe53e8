"""The team profile end to end, on real services that the test starts and stops.

PostgreSQL (Dagster's instance, MLflow's store), Redis (the Celery broker), moto (the lake and
MLflow's artifacts), the MLflow tracking server, the Dagster daemon and webserver and two
Celery workers come up through ``scripts/services.sh`` (the ``team_services`` fixture). Then
``CT_PROFILE=team ct materialize`` runs 8 toy-world prompts while one worker is killed
(SIGKILL, its whole process group) in the middle of a step, and two more ``ct materialize``
commands materialize overlapping partitions at the same time. Afterwards the lake equals, graph
by graph, a local-profile run of the same prompts; MLflow holds one finished run per asset of
each graph; the killed step was retried by its retry policy; no secret appears in Dagster's
event log, MLflow or the command's output.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ct_lake.keys import prompt_key

# One set of team services for the session: under two workers, every test that uses them runs
# on the same one (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("team_services")]

MODEL = "toy-world"
GRAPH_ASSETS = (
    "attribution_graph",
    "pruned_graph",
    "graph_scores",
    "intervention_results",
    "graph_files",
)
# Per model × prompt: every table a graph run writes. Columns that say when, by which run or
# how fast are not science and differ between any two runs.
GRAPH_TABLES = (
    "graphs",
    "nodes",
    "edges",
    "logit_targets",
    "active_features",
    "pruned_nodes",
    "pruned_edges",
    "scores",
    "interventions",
)
VOLATILE = {"timings_s", "total_s", "peak_memory_mb", "dagster_run_id", "created_at"}
CT = str(Path(sys.executable).with_name("ct"))


# Enough graph steps for a worker to be killed mid-run and for the runs to share the workers
# (2 graph runs of 4 prompts, 5 steps each); each prompt costs the suite about 20 s.
N_PROMPTS = 8


def sampled_prompts() -> list[str]:
    from ct_engine.toyworld.default_model import load_world
    from ct_engine.toyworld.ground_truth import sample_prompt_texts

    return sample_prompt_texts(load_world(), N_PROMPTS)


def _ct(args, env, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([CT, *args], env=env, capture_output=True, text=True, **kwargs)


def _tasks(log: Path) -> tuple[int, int]:
    """``(received, finished)`` step tasks in a Celery worker's log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    received = len(re.findall(r"Task execute_plan\[[^\]]+\] received", text))
    finished = len(re.findall(r"Task execute_plan\[[^\]]+\] (succeeded|failed|raised)", text))
    return received, finished


def _kill_mid_step(services, worker: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    """SIGKILL ``worker`` (its process group) while it runs its third step task or later."""
    log = services.dir / "logs" / f"{worker}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run finished before a worker could be killed"
        received, finished = _tasks(log)
        if received >= 3 and received > finished:
            os.killpg(services.worker_pids()[worker], signal.SIGKILL)
            return
        time.sleep(0.2)
    raise AssertionError(f"{worker} never ran a third step")


def _science(table: pa.Table) -> pa.Table:
    keep = [c for c in table.column_names if c not in VOLATILE]
    return table.select(keep)


def _assert_same_table(name: str, keys: dict, team: pa.Table, local: pa.Table) -> None:
    team, local = _science(team), _science(local)
    where = f"{name} {keys}"
    assert team.num_rows == local.num_rows, f"{where}: {team.num_rows} vs {local.num_rows} rows"
    assert team.column_names == local.column_names, where
    for column in team.column_names:
        a, b = team.column(column).to_pylist(), local.column(column).to_pylist()
        floats = pa.types.is_floating(team.schema.field(column).type)
        if floats:
            np.testing.assert_allclose(
                np.array(a, dtype=float), np.array(b, dtype=float), rtol=1e-4, atol=1e-6,
                err_msg=f"{where}.{column}",
            )  # fmt: skip
        else:
            assert a == b, f"{where}.{column} differs"


def _local_run(prompts_file: Path, tmp_path: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """The same prompts in the local profile: one process, a local lake, sqlite MLflow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CT_", "MLFLOW_"))}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        DAGSTER_HOME=str(tmp_path / "local-dagster"),
        CT_LAKE=str(tmp_path / "local-lake"),
        CT_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'local-mlflow.db'}",
    )
    done = _ct(["materialize", "--prompts-file", str(prompts_file)], env, timeout=900)
    return tmp_path / "local-lake", done


def test_team_profile_survives_a_killed_worker_and_equals_the_local_run(
    team_services, tmp_path, monkeypatch
):
    from ct_lake.lake import Lake

    services = team_services
    env = {**os.environ, **services.env(), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    secrets = [services.env()["CT_PG_PASSWORD"], services.env()["AWS_SECRET_ACCESS_KEY"]]
    prompts = sampled_prompts()
    assert len(prompts) == N_PROMPTS
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("\n".join(prompts) + "\n")

    # 8 prompts in runs of 4 (2 graph runs in the queue), one worker killed mid-step.
    team = subprocess.Popen(
        [CT, "materialize", "--prompts-file", str(prompts_file), "--partitions-per-run", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _kill_mid_step(services, "worker1", team)
        output, _ = team.communicate(timeout=1200)
    finally:
        if team.poll() is None:
            team.kill()
    assert team.returncode == 0, output

    # Two commands at once over overlapping partitions (prompts 0-2 and 1-3).
    both = [
        subprocess.Popen(
            [CT, "materialize", "--partitions-per-run", "3", "--prompts-file", str(path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in _overlapping_files(prompts, tmp_path)
    ]
    outputs = [p.communicate(timeout=900)[0] for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs

    lake_dir, local = _local_run(prompts_file, tmp_path)
    assert local.returncode == 0, local.stdout + local.stderr

    # The lake: exactly the partitions of the prompts, each equal to the local run's.
    for name, value in services.env().items():  # this process reads the lake and the instance
        monkeypatch.setenv(name, value)
    team_lake, local_lake = Lake(services.env()["CT_LAKE"]), Lake(str(lake_dir))
    expected = sorted(prompt_key(p) for p in prompts)
    for name in GRAPH_TABLES:
        found = sorted(k["prompt"] for k in team_lake.partitions(name) if k["model"] == MODEL)
        assert found == expected, name
        for key in expected:
            keys = {"model": MODEL, "prompt": key}
            _assert_same_table(
                name, keys, team_lake.read_table(name, **keys), local_lake.read_table(name, **keys)
            )
        # The Delta table as a whole: no row twice (the overlapping runs replaced, not added).
        assert team_lake.scan(name).num_rows == local_lake.scan(name).num_rows, name
    order = [("layer", "ascending"), ("feature", "ascending")]
    census = [
        lake.read_table("feature_census", model=MODEL).sort_by(order)
        for lake in (team_lake, local_lake)
    ]
    _assert_same_table("feature_census", {"model": MODEL}, *census)

    # Each worker process loaded the model once (load_model ~0.5 s), then kept it (~0 s).
    loads = [
        dict(t)["load_model"] for t in team_lake.scan("graphs").column("timings_s").to_pylist()
    ]
    assert len(loads) == N_PROMPTS and sum(s > 0.05 for s in loads) <= 2, loads

    _assert_killed_step_was_retried(services)
    again = {}
    for chosen in (prompts[0:3], prompts[1:4]):
        for text in chosen:
            again[prompt_key(text)] = again.get(prompt_key(text), 0) + 1
    _assert_one_mlflow_run_per_graph(services, expected, again, secrets)
    for text in [output, *outputs]:
        assert not any(s in text for s in secrets)

    # `up` brings the killed worker back (the session's other tests use both workers).
    restarted = services.up("workers")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert set(services.worker_pids()) == {"worker1", "worker2"}


def _overlapping_files(prompts: list[str], tmp_path: Path) -> list[Path]:
    paths = []
    for i, chosen in enumerate((prompts[0:3], prompts[1:4])):
        path = tmp_path / f"overlap{i}.txt"
        path.write_text("\n".join(chosen) + "\n")
        paths.append(path)
    return paths


def _instance(services):
    import dagster as dg

    return dg.DagsterInstance.from_config(services.env()["DAGSTER_HOME"])


def _assert_killed_step_was_retried(services) -> None:
    """A step lost its worker, Dagster's retry policy ran it again and every run succeeded;
    nothing in the event log holds a secret."""
    import dagster as dg

    secrets = [services.env()["CT_PG_PASSWORD"], services.env()["AWS_SECRET_ACCESS_KEY"]]
    with _instance(services) as instance:
        runs = instance.get_runs()
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        retried, restarted = [], []
        for run in runs:
            for record in instance.all_logs(run.run_id):
                text = json.dumps(record.to_dict() if hasattr(record, "to_dict") else str(record))
                assert not any(s in text for s in secrets)
                event = record.dagster_event
                if event is None:
                    continue
                if event.event_type_value == "STEP_UP_FOR_RETRY":
                    retried.append(event.step_retry_data.error.message)
                if event.event_type_value == "STEP_RESTARTED":
                    restarted.append(event.step_key)
        assert any("lost its Celery worker" in m for m in retried), retried
        assert restarted


def _assert_one_mlflow_run_per_graph(services, prompt_keys, again, secrets) -> None:
    """One finished MLflow run per Dagster run × partition, none with a secret, into which
    every graph asset of the partition logged, although each ran as its own step on a worker:
    each graph has one run, plus one per later materialization (``again``)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(services.env()["CT_MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("ct-lakehouse")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    assert all(r.info.status == "FINISHED" for r in runs)
    by_key: dict[tuple[str, str], int] = {}
    per_graph: dict[str, int] = {}
    for r in runs:
        tags = r.data.tags
        key = (tags["dagster.run_id"], tags["dagster.partition_key"])
        by_key[key] = by_key.get(key, 0) + 1
        blob = json.dumps([r.data.params, r.data.tags])
        assert not any(s in blob for s in secrets)
        if "ct.prompt_key" in tags:
            per_graph[tags["ct.prompt_key"]] = per_graph.get(tags["ct.prompt_key"], 0) + 1
            assert all(tags.get(f"ct.asset.{asset}") == "logged" for asset in GRAPH_ASSETS)
            assert "replacement_score" in r.data.metrics and "node_threshold" in r.data.params
    assert set(by_key.values()) == {1}  # no Dagster step made a second run, retried or not
    assert per_graph == {k: 1 + again.get(k, 0) for k in prompt_keys}


def test_team_profile_fails_only_the_bad_prompts_graph(team_services, tmp_path, monkeypatch):
    """A prompt longer than the toy world's context fails its own graph: its range run is run
    again one partition per run on the workers, and the good prompt of the range completes.
    (After the test above: its lake and MLflow checks count only their own prompts.)"""
    services = team_services
    env = {**os.environ, **services.env(), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    good = sampled_prompts()[0]
    bad = " ".join(["the"] * 200)  # 201 tokens, the toy world's context is 128
    prompts_file = tmp_path / "prompts.txt"  # these two only, not the config's prompt sets
    prompts_file.write_text(f"{bad}\n{good}\n")
    done = _ct(
        ["materialize", "--prompts-file", str(prompts_file), "--partitions-per-run", "2"],
        env,
        timeout=900,
    )
    shown = done.stdout + done.stderr
    assert done.returncode == 1, shown
    assert "Traceback" not in shown
    assert re.search(
        r"failed: 'the the the .*': attribution_graph: ValueError: the prompt has", shown
    )
    assert re.search(r"FAILED: 1 of 2 graphs of toy-world \(the others done\)", shown), shown
    import dagster as dg

    from ct_assets.lib.context import multi_key

    for name, value in services.env().items():  # the instance's config reads them
        monkeypatch.setenv(name, value)
    instance = _instance(services)
    for asset in GRAPH_ASSETS:
        [latest] = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(asset),
                asset_partitions=[str(multi_key(MODEL, prompt_key(good)))],
            ),
            limit=1,
        ).records
        # the good prompt's graph came from its own run, the retry of the failed range
        retry = instance.get_run_by_id(latest.run_id)
        assert retry.is_success and retry.tags["ct/prompts"] == "1", asset
