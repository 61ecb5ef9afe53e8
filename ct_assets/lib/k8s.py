"""The Kubernetes profile's executor: every step a Kubernetes job (``dagster-k8s``).

The run worker (a pod the chart's ``K8sRunLauncher`` starts) submits each step as a job whose
pod runs ``dagster api execute_step`` in the project's image. Every step pod gets its
environment from the ConfigMap :data:`ENV_CONFIG_MAP` (``CT_PROFILE=k8s``, the lake, the
MLflow server, the S3 endpoint: ``deploy/k8s/configmap.yaml``) and from two Secrets, referenced
by name only: :data:`S3_SECRET` (the AWS keys, every key an environment variable) and
:data:`POSTGRES_SECRET`, the chart's PostgreSQL password Secret (key ``postgresql-password``),
which dagster-k8s maps to ``DAGSTER_PG_PASSWORD`` in every run and step pod from the chart's
run launcher. No secret value passes through Dagster's config, run storage or logs.

GPU steps get a GPU request, the GPU node pool's selector and the toleration of its taint from
their op tags (:func:`ct_assets.lib.profiles.step_tags`); every other step gets the CPU
resources by default (:func:`executor_config`'s ``step_k8s_config``).

The image and the namespace are Dagster ``{"env": ...}`` config sources, read where the
config is resolved (the code server, the run worker), never when this module is imported:
``$CT_IMAGE`` and ``$CT_K8S_NAMESPACE``, both set by the ConfigMap. ``deploy/k8s/README.md``
says how to build the image and install the chart.
"""

from __future__ import annotations

import copy
from typing import Any

import dagster as dg

from ct_assets.lib.profiles import K8S_CPU_RESOURCES
from ct_lake.config import ConfigError

IMAGE_ENV = "CT_IMAGE"
NAMESPACE_ENV = "CT_K8S_NAMESPACE"

# The names the cluster holds: the ConfigMap of the environment and the two Secrets.
ENV_CONFIG_MAP = "ct-lakehouse-env"
S3_SECRET = "ct-lakehouse-s3"
POSTGRES_SECRET = "ct-lakehouse-postgres"

# Images are tagged once per build (never re-pushed under the same tag), so a node that already
# has the tag has the right image: pulling it again would only slow every step's start.
IMAGE_PULL_POLICY = "IfNotPresent"

# Step pods of one run at once: the GPU steps are bounded across runs by the "gpu" pool; this
# bounds the CPU steps of one run (one graph partition range) next to them.
MAX_CONCURRENT_STEPS = 4

# A finished step's job and pod are removed after this long: its logs are in the object store
# (the chart's compute log manager), the pod only keeps them for `kubectl logs` meanwhile.
FINISHED_JOB_TTL_S = 6 * 3600

LABELS = {"app.kubernetes.io/part-of": "ct-lakehouse"}


def executor_config() -> dict[str, Any]:
    """The config of the ``k8s`` executor (``dagster_k8s.k8s_job_executor``'s schema).

    Returns a new dict each call: ``{"job_image": {"env": "CT_IMAGE"}, "job_namespace": ...,
    "env_config_maps": [...], "env_secrets": [...], "retries": ..., "max_concurrent": int,
    "step_k8s_config": {...}, ...}``. Secrets appear only as Secret names.
    """
    return {
        "job_image": {"env": IMAGE_ENV},
        "image_pull_policy": IMAGE_PULL_POLICY,
        "job_namespace": {"env": NAMESPACE_ENV},
        "env_config_maps": [ENV_CONFIG_MAP],
        # Not POSTGRES_SECRET: its key `postgresql-password` is no environment variable name;
        # the run launcher's `postgres_password_secret` maps it to DAGSTER_PG_PASSWORD.
        "env_secrets": [S3_SECRET],
        "labels": dict(LABELS),
        # A failed step is retried as a new job by the run's retry policy; Kubernetes itself
        # never restarts it (backoff 0), or one attempt could run twice.
        "retries": {"enabled": {}},
        "max_concurrent": MAX_CONCURRENT_STEPS,
        "step_k8s_config": {
            "container_config": {"resources": copy.deepcopy(K8S_CPU_RESOURCES)},
            "job_spec_config": {
                "backoff_limit": 0,
                "ttl_seconds_after_finished": FINISHED_JOB_TTL_S,
            },
        },
    }


def k8s_executor() -> dg.ExecutorDefinition:
    """dagster-k8s's ``k8s_job_executor`` configured with :func:`executor_config`.

    Raises :class:`ConfigError` (one line) when dagster-k8s, an optional dependency of the
    ``team`` extra, is not installed.
    """
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError:
        raise ConfigError(
            "CT_PROFILE=k8s needs dagster-k8s: pip install 'ct-lakehouse[team]'"
        ) from None
    return k8s_job_executor.configured(executor_config())
