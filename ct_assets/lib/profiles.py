"""Deployment profiles: where Dagster keeps its state and how steps execute.

One setting chooses the profile: ``$CT_PROFILE`` (default ``local``).

- ``local``: the embedded default. Dagster's instance is sqlite under ``dagster_home/``; every
  run executes in one process; MLflow is a sqlite file. No service is needed.
- ``team``: Dagster's instance on PostgreSQL (``deploy/team/dagster.yaml``), steps on Celery
  workers through a Redis broker (GPU steps on the ``gpu`` queue, the rest on ``cpu``), MLflow
  as a tracking server, the lake on S3. ``scripts/services.sh up`` starts all of it.
- ``k8s``: every step a Kubernetes job (``dagster-k8s``), GPU steps with a GPU request and a
  node selector; the instance comes from Dagster's Helm chart (``deploy/k8s/values.yaml``).

The Celery settings below are the one place both sides read: the executor that submits steps
and the workers that run them (``ct_assets.lib.celery_worker``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ct_lake.config import ConfigError

PROFILE_ENV = "CT_PROFILE"
PROFILES = ("local", "team", "k8s")
REPO = Path(__file__).resolve().parents[2]

# The Celery queues: GPU steps (attribution, interventions, transcoder quality) and CPU steps.
GPU_QUEUE = "gpu"
CPU_QUEUE = "cpu"
CELERY_QUEUE_TAG = "dagster-celery/queue"
K8S_CONFIG_TAG = "dagster-k8s/config"

# The environment variables the team profile reads (``scripts/services.sh`` writes them).
BROKER_ENV = "CT_CELERY_BROKER"
BACKEND_ENV = "CT_CELERY_BACKEND"

# Celery settings shared by the executor and the workers. A worker takes a task only when it
# has a free process (no prefetch), acknowledges it as it starts (a task whose worker dies is
# not redelivered by the broker later: the executor sees the worker gone and Dagster's retry
# policy runs the step again) and reports STARTED with its hostname, which the executor pings.
CELERY_SETTINGS: dict[str, Any] = {
    "task_track_started": True,
    "task_acks_late": False,
    "worker_prefetch_multiplier": 1,
    "worker_disable_prefetch": True,
    "result_expires": 7 * 24 * 3600,
    "broker_connection_retry_on_startup": True,
    "redis_socket_connect_timeout": 5,
}

# The Kubernetes resources of a GPU step and of a CPU step (requests = limits for the GPU).
K8S_GPU_NODE_SELECTOR = {"ct-lakehouse/node-pool": "gpu"}
K8S_GPU_RESOURCES = {
    "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "1"},
    "limits": {"memory": "48Gi", "nvidia.com/gpu": "1"},
}
K8S_CPU_RESOURCES = {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}
K8S_GPU_TOLERATIONS = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
]


def current_profile() -> str:
    """``$CT_PROFILE`` (default ``local``); an unknown name raises one clear line."""
    name = os.environ.get(PROFILE_ENV, "local").strip() or "local"
    if name not in PROFILES:
        raise ConfigError(
            f"{PROFILE_ENV}={name!r} is not a profile: use one of {', '.join(PROFILES)}"
        )
    return name


def profile_home(profile: str) -> Path:
    """The repo's Dagster home of ``profile`` (its ``dagster.yaml``)."""
    return REPO / "dagster_home" if profile == "local" else REPO / "deploy" / profile


def step_tags(queue: str) -> dict[str, Any]:
    """The op tags of a step on ``queue`` (``gpu`` or ``cpu``): its Celery queue and, for the
    Kubernetes profile, its pod's resources (a GPU, the GPU node pool and its taint)."""
    if queue == GPU_QUEUE:
        pod = {
            "container_config": {"resources": K8S_GPU_RESOURCES},
            "pod_spec_config": {
                "node_selector": K8S_GPU_NODE_SELECTOR,
                "tolerations": K8S_GPU_TOLERATIONS,
            },
        }
    else:
        pod = {"container_config": {"resources": K8S_CPU_RESOURCES}}
    return {CELERY_QUEUE_TAG: queue, K8S_CONFIG_TAG: pod}
