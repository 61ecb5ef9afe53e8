"""Profiles: ``CT_PROFILE`` chooses the jobs' executor; the team profile's Celery settings are
the same on both sides; the local profile is unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ct_assets.lib.profiles import (
    CELERY_SETTINGS,
    CPU_QUEUE,
    GPU_QUEUE,
    current_profile,
    profile_home,
)

GPU_ASSETS = {
    "attribution_graph",
    "intervention_results",
    "transcoder_quality",
    "feature_dashboards",
}
CPU_ASSETS = {"pruned_graph", "graph_scores", "graph_files", "transcoder_cache", "feature_census"}

_DESCRIBE = """
import json
from ct_assets.lib.runner import project_definitions
defs = project_definitions()
out = {}
for name in ("graph_job", "model_job", "census_job"):
    job = defs.resolve_job_def(name)
    out[name] = {
        "executor": job.executor_def.name,
        "retry": None if job.op_retry_policy is None else job.op_retry_policy.max_retries,
        "queues": {n.name: n.tags.get("dagster-celery/queue") for n in job.graph.node_defs},
        "pools": {n.name: n.pool for n in job.graph.node_defs},
    }
print(json.dumps(out))
"""


def _describe(profile: str | None, **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != "CT_PROFILE"} | env
    if profile:
        environment["CT_PROFILE"] = profile
    done = subprocess.run(
        [sys.executable, "-c", _DESCRIBE], env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_local_profile_runs_in_one_process_without_retries():
    jobs = _describe(None)
    assert jobs["graph_job"]["executor"] == "in_process"
    assert jobs["model_job"]["executor"] == "in_process"
    assert all(job["retry"] is None for job in jobs.values())


def test_team_profile_sends_gpu_steps_to_gpu_workers_and_retries_them():
    jobs = _describe("team")
    assert {job["executor"] for job in jobs.values()} == {"celery"}
    assert {job["retry"] for job in jobs.values()} == {2}
    queues = {k: v for job in jobs.values() for k, v in job["queues"].items()}
    assert {k for k, q in queues.items() if q == GPU_QUEUE} == GPU_ASSETS
    assert {k for k, q in queues.items() if q == CPU_QUEUE} == CPU_ASSETS
    # the GPU steps also take a slot of the "gpu" pool; the others none
    pools = {k: v for job in jobs.values() for k, v in job["pools"].items()}
    assert {k for k, p in pools.items() if p == "gpu"} == GPU_ASSETS


def test_the_executor_config_validates_with_dagster(monkeypatch):
    """The team executor's config, broker and backend from the environment, passes Dagster's
    own validation; a wrong key is refused (the check can fail)."""
    from dagster._config import process_config

    from ct_assets.lib.executors import celery_executor_config, worker_aware_celery_executor

    executor = worker_aware_celery_executor()
    monkeypatch.setenv("CT_CELERY_BROKER", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CT_CELERY_BACKEND", "redis://127.0.0.1:1/1")
    result = process_config(executor.config_schema.config_type, celery_executor_config())
    assert result.success, result.errors
    assert result.value["broker"] == "redis://127.0.0.1:1/0"
    assert result.value["config_source"]["task_acks_late"] is False
    bad = process_config(executor.config_schema.config_type, {"brokr": "redis://x"})
    assert not bad.success


def test_workers_and_executor_build_the_same_celery_app(monkeypatch):
    from dagster_celery.make_app import make_app

    from ct_assets.lib.executors import worker_app_args

    monkeypatch.setenv("CT_CELERY_BROKER", "redis://127.0.0.1:6390/0")
    monkeypatch.setenv("CT_CELERY_BACKEND", "redis://127.0.0.1:6390/1")
    app = make_app(worker_app_args())
    assert app.conf.broker_url == "redis://127.0.0.1:6390/0"
    assert app.conf.result_backend == "redis://127.0.0.1:6390/1"
    for name, value in CELERY_SETTINGS.items():
        assert app.conf[name] == value, name
    monkeypatch.delenv("CT_CELERY_BROKER")
    with pytest.raises(RuntimeError, match="CT_CELERY_BROKER"):
        worker_app_args()


def test_profile_names_and_homes(monkeypatch):
    from ct_lake.config import ConfigError

    monkeypatch.delenv("CT_PROFILE", raising=False)
    assert current_profile() == "local"
    monkeypatch.setenv("CT_PROFILE", "team")
    assert current_profile() == "team"
    assert (profile_home("team") / "dagster.yaml").is_file()
    assert (profile_home("local") / "dagster.yaml").is_file()
    monkeypatch.setenv("CT_PROFILE", "tema")
    with pytest.raises(ConfigError, match="CT_PROFILE='tema' is not a profile"):
        current_profile()


def test_a_wrong_profile_is_one_line_from_the_command(tmp_path):
    env = {k: v for k, v in os.environ.items()} | {"CT_PROFILE": "tema"}
    ct = os.path.join(os.path.dirname(sys.executable), "ct")
    done = subprocess.run(
        [ct, "materialize", "--prompt", "x"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "ct materialize: error: CT_PROFILE='tema' is not a profile: use one of local, team, k8s"
    ]


def test_the_team_instance_config_reads_secrets_from_the_environment():
    """deploy/team/dagster.yaml names environment variables, never a password."""
    import yaml

    text = (profile_home("team") / "dagster.yaml").read_text()
    config = yaml.safe_load(text)
    pg = config["storage"]["postgres"]["postgres_db"]
    assert pg["password"] == {"env": "CT_PG_PASSWORD"}
    assert all(isinstance(v, dict) and set(v) == {"env"} for v in pg.values())
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"]["granularity"] == "op"
