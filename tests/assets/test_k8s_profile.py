"""The Kubernetes profile, without a cluster.

The executor's config goes through Dagster's own config validation, and the project's jobs,
loaded in a process with the ConfigMap's environment, use it. The step jobs are rendered
by dagster-k8s's real step handler for steps of the project's ``graph_job``: the handler runs
in an instance whose run launcher is the one the Helm chart writes from
``deploy/k8s/values.yaml``, for a code location configured as the chart configures it, and
posts each job to a local HTTP endpoint standing in for the Kubernetes API, which keeps the
bodies. The JSON checked is what a cluster would receive. The chart's values, the ConfigMap
and the Dockerfile are checked against the executor and ``ct_assets.lib.profiles``.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
import uuid
import warnings
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import create_context_free_log_manager
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.init import InitExecutorContext
from dagster._core.executor.step_delegating import StepHandlerContext
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._grpc.types import ExecuteStepArgs
from dagster_k8s import k8s_job_executor
from dagster_shared.serdes import deserialize_value

from ct_assets.lib import k8s, profiles
from ct_lake.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "k8s"
RELEASE = "ct"  # the Helm release name the README installs
GPU_STEP, CPU_STEP = "attribution_graph", "pruned_graph"
# Secret values planted in the rendering process's environment: none may reach a job spec.
PLANTED = {
    "AWS_ACCESS_KEY_ID": f"AKIA{uuid.uuid4().hex[:16].upper()}",
    "AWS_SECRET_ACCESS_KEY": f"planted-secret-{uuid.uuid4().hex}",
    "DAGSTER_PG_PASSWORD": f"planted-pg-{uuid.uuid4().hex}",
    "CT_PG_PASSWORD": f"planted-pg-{uuid.uuid4().hex}",
}


def _load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return _load("values.yaml")


@pytest.fixture(scope="module")
def env_map() -> dict[str, Any]:
    return _load("configmap.yaml")


def _names(refs: list[dict[str, str]]) -> list[str]:
    return [ref["name"] for ref in refs]


def _validate(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` processed by Dagster against the k8s executor's schema (env sources
    resolved); raises ``DagsterInvalidConfigError`` naming the bad key."""
    executor = k8s_job_executor.configured(config)

    @dg.job(executor_def=executor)
    def probe():
        pass

    return dg.validate_run_config(probe, {})["execution"][executor.name]


# ---- (1) the executor's config, through Dagster's config validation ----------------------


def test_executor_config_validates(monkeypatch, env_map):
    monkeypatch.setenv(k8s.IMAGE_ENV, env_map["data"]["CT_IMAGE"])
    monkeypatch.setenv(k8s.NAMESPACE_ENV, "team-a")
    resolved = _validate(k8s.executor_config())
    assert resolved["job_image"] == env_map["data"]["CT_IMAGE"]
    assert resolved["job_namespace"] == "team-a"
    assert resolved["env_config_maps"] == ["ct-lakehouse-env"]
    assert resolved["env_secrets"] == ["ct-lakehouse-s3"]
    assert resolved["retries"] == {"enabled": {}}
    assert resolved["max_concurrent"] == k8s.MAX_CONCURRENT_STEPS
    # The raw schema agrees (no run config around it).
    schema = resolve_to_config_type(k8s_job_executor.config_schema.config_type)
    assert process_config(schema, k8s.executor_config()).success
    # k8s_executor() is this config on dagster-k8s's executor.
    assert k8s.k8s_executor().name == k8s_job_executor.name


def test_executor_reads_image_and_namespace_only_when_resolved(monkeypatch):
    monkeypatch.delenv(k8s.IMAGE_ENV, raising=False)
    monkeypatch.setenv(k8s.NAMESPACE_ENV, "ct-lakehouse")
    executor = k8s.k8s_executor()  # definitions load without the pod's environment
    assert executor.name == "k8s"
    with pytest.raises(DagsterInvalidConfigError, match=k8s.IMAGE_ENV):
        _validate(k8s.executor_config())


def test_executor_without_dagster_k8s_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "dagster_k8s", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"^CT_PROFILE=k8s needs dagster-k8s: pip install"):
        k8s.k8s_executor()


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda c: c.update(job_imagee="x"), "job_imagee"),
        (lambda c: c.update(max_concurrent="four"), "max_concurrent"),
        (lambda c: c.update(retries={"enabled": {}, "disabled": {}}), "retries"),
        (lambda c: c["step_k8s_config"].update(container_confg={}), "container_confg"),
    ],
)
def test_executor_config_rejects_a_wrong_key_or_value(monkeypatch, change, fragment):
    monkeypatch.setenv(k8s.IMAGE_ENV, "img:1")
    monkeypatch.setenv(k8s.NAMESPACE_ENV, "ct-lakehouse")
    config = k8s.executor_config()
    change(config)
    with pytest.raises(DagsterInvalidConfigError, match=fragment):
        _validate(config)


def test_step_tags_are_valid_dagster_k8s_config():
    from dagster_k8s.job import get_user_defined_k8s_config

    for queue, resources in [
        (profiles.GPU_QUEUE, profiles.K8S_GPU_RESOURCES),
        (profiles.CPU_QUEUE, profiles.K8S_CPU_RESOURCES),
    ]:
        tags = profiles.step_tags(queue)
        # Dagster stores a dict-valued op tag as JSON, which is what dagster-k8s parses.
        config = get_user_defined_k8s_config(
            {
                key: value if isinstance(value, str) else json.dumps(value)
                for key, value in tags.items()
            }
        )
        assert config.container_config["resources"] == resources
    with pytest.raises(DagsterInvalidConfigError):
        get_user_defined_k8s_config({profiles.K8S_CONFIG_TAG: json.dumps({"container": {}})})


# ---- (2) step jobs rendered by dagster-k8s's step handler ---------------------------------


class _KubeApi(BaseHTTPRequestHandler):
    """Accepts ``POST .../namespaces/{ns}/jobs`` as the Kubernetes API does (201 and the body
    back) and keeps each body, by job name, in ``server.jobs``."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        job = json.loads(body)
        self.server.jobs[job["metadata"]["name"]] = {"path": self.path, "body": job}
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory):
    """A kubeconfig pointing at a local endpoint that records the jobs posted to it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KubeApi)
    server.jobs = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "t", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                ],
                "users": [{"name": "t", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
                "current-context": "t",
            }
        )
    )
    yield kubeconfig, server.jobs
    server.shutdown()
    server.server_close()


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def chart_run_launcher(values: dict[str, Any], namespace: str, kubeconfig: Path) -> dict:
    """The ``run_launcher`` the chart writes into the instance's ``dagster.yaml`` from
    ``values`` (its ``k8sRunLauncher`` block), pointed at ``kubeconfig`` instead of the
    cluster it runs in."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    run_k8s = {_snake(key): value for key, value in launcher.get("runK8sConfig", {}).items()}
    return {
        "module": "dagster_k8s",
        "class": "K8sRunLauncher",
        "config": {
            "load_incluster_config": False,
            "kubeconfig_file": str(kubeconfig),
            "job_namespace": launcher.get("jobNamespace") or namespace,
            "image_pull_policy": launcher["imagePullPolicy"],
            "service_account_name": f"{RELEASE}-dagster",
            "dagster_home": "/opt/dagster/dagster_home",
            "instance_config_map": f"{RELEASE}-dagster-instance",
            "postgres_password_secret": values["global"]["postgresqlSecretName"],
            "env_config_maps": _names(launcher.get("envConfigMaps", [])),
            "env_secrets": _names(launcher.get("envSecrets", [])),
            "labels": launcher.get("labels", {}),
            "run_k8s_config": run_k8s,
        },
    }


def chart_code_location_context(values: dict[str, Any], namespace: str) -> dict:
    """The container context the chart gives runs of the code location
    (``includeConfigInLaunchedRuns``): its pull policy, ConfigMaps and Secrets."""
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]
    return {
        "k8s": {
            "image_pull_policy": deployment["image"]["pullPolicy"],
            "env_config_maps": [
                f"{RELEASE}-dagster-user-deployments-{deployment['name']}-user-env",
                *_names(deployment.get("envConfigMaps", [])),
            ],
            "env_secrets": _names(deployment.get("envSecrets", [])),
            "namespace": namespace,
            "service_account_name": f"{RELEASE}-dagster-user-deployments-user-deployments",
            "run_k8s_config": {"pod_spec_config": {"automount_service_account_token": True}},
        }
    }


def render_step_jobs(
    values: dict[str, Any],
    env_map: dict[str, Any],
    kube_api,
    step_keys: list[str],
    executor_config: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The Kubernetes jobs dagster-k8s's step handler posts for ``step_keys`` of the real
    ``graph_job``, with the executor of :func:`k8s.executor_config` (or ``executor_config``),
    with the image and namespace of the ConfigMap and planted secrets in the environment:
    ``{step_key: {"path": the API path posted to, "body": the job as JSON}}``."""
    kubeconfig, posted = kube_api
    namespace = env_map["metadata"]["namespace"]
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The executor's two variables and the planted secrets; not CT_PROFILE: the project's
        # modules load once per test process, and the other tests expect the local profile.
        pod_env = {name: env_map["data"][name] for name in (k8s.IMAGE_ENV, k8s.NAMESPACE_ENV)}
        for name, value in {**pod_env, **PLANTED}.items():
            mp.setenv(name, value)
        repo = ReconstructableRepository.for_module(
            "ct_assets.definitions",
            "defs",
            working_directory=str(REPO),
            container_context=chart_code_location_context(values, namespace),
        )
        recon_job = repo.get_reconstructable_job("graph_job")
        job_def = recon_job.get_definition()
        executor_def = k8s_job_executor.configured(executor_config or k8s.executor_config())
        resolved = ResolvedRunConfig.build(job_def.with_executor_def(executor_def), {})
        overrides = {"run_launcher": chart_run_launcher(values, namespace, kubeconfig)}
        with dg.instance_for_test(overrides=overrides) as instance:
            executor = executor_def.executor_creation_fn(
                InitExecutorContext(
                    job=recon_job,
                    executor_def=executor_def,
                    executor_config=resolved.execution.execution_engine_config,
                    instance=instance,
                )
            )
            plan = create_execution_plan(recon_job)
            run = instance.create_run_for_job(
                job_def, execution_plan=plan, job_code_origin=recon_job.get_python_origin()
            )
            plan_context = PlanOrchestrationContext(
                plan_data=PlanData(
                    job=recon_job,
                    dagster_run=run,
                    instance=instance,
                    execution_plan=plan,
                    raise_on_error=True,
                    retry_mode=RetryMode.DISABLED,
                ),
                log_manager=create_context_free_log_manager(instance, run),
                executor=executor,
                output_capture=None,
            )
            jobs = {}
            for key in step_keys:
                args = ExecuteStepArgs(
                    recon_job.get_python_origin(), run.run_id, [key], print_serialized_events=False
                )
                context = StepHandlerContext(instance, plan_context, plan.steps, args, run)
                events = list(executor._step_handler.launch_step(context))
                assert events and events[0].event_type_value == "STEP_WORKER_STARTING"
                name = events[0].event_specific_data.metadata["Kubernetes Job name"].value
                jobs[key] = posted.pop(name)
            return jobs


@pytest.fixture(scope="module")
def step_jobs(values, env_map, kube_api) -> dict[str, dict[str, Any]]:
    return render_step_jobs(values, env_map, kube_api, [GPU_STEP, CPU_STEP])


def _container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["body"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    return job["body"]["spec"]["template"]["spec"]


def test_step_jobs_are_posted_to_the_configured_namespace(step_jobs, env_map):
    namespace = env_map["data"]["CT_K8S_NAMESPACE"]
    for job in step_jobs.values():
        assert job["path"] == f"/apis/batch/v1/namespaces/{namespace}/jobs"
        assert job["body"]["kind"] == "Job"
        assert job["body"]["spec"]["backoffLimit"] == 0
        assert job["body"]["spec"]["ttlSecondsAfterFinished"] == k8s.FINISHED_JOB_TTL_S


def test_gpu_step_requests_a_gpu_on_the_gpu_pool(step_jobs):
    resources = _container(step_jobs[GPU_STEP])["resources"]
    assert resources == profiles.K8S_GPU_RESOURCES
    assert resources["requests"]["nvidia.com/gpu"] == "1"
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    pod = _pod(step_jobs[GPU_STEP])
    assert pod["nodeSelector"] == profiles.K8S_GPU_NODE_SELECTOR
    assert pod["tolerations"] == profiles.K8S_GPU_TOLERATIONS


def test_cpu_step_has_no_gpu_and_no_gpu_pool(step_jobs):
    resources = _container(step_jobs[CPU_STEP])["resources"]
    assert resources == profiles.K8S_CPU_RESOURCES
    assert "nvidia.com/gpu" not in json.dumps(resources)
    pod = _pod(step_jobs[CPU_STEP])
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod


def test_step_pods_run_the_step_in_the_image_with_the_environment(step_jobs, env_map, values):
    image = values["dagster-user-deployments"]["deployments"][0]["image"]
    for key, job in step_jobs.items():
        container = _container(job)
        assert container["image"] == env_map["data"]["CT_IMAGE"]
        assert container["image"] == f"{image['repository']}:{image['tag']}"
        assert container["imagePullPolicy"] == k8s.IMAGE_PULL_POLICY
        assert container["args"] == ["dagster", "api", "execute_step"]
        env = {e["name"]: e for e in container["env"]}
        # The step to run travels compressed in the environment: this step of graph_job, from
        # the code location's module.
        step_args = deserialize_value(
            _decompress(env["DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS"]["value"]), ExecuteStepArgs
        )
        assert step_args.step_keys_to_execute == [key]
        assert step_args.job_origin.job_name == "graph_job"
        assert step_args.job_origin.repository_origin.code_pointer.module == "ct_assets.definitions"
        assert env["DAGSTER_RUN_STEP_KEY"]["value"] == key
        # The PostgreSQL password: a reference to the chart's Secret, never a value.
        assert "value" not in env["DAGSTER_PG_PASSWORD"]
        assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": k8s.POSTGRES_SECRET,
            "key": "postgresql-password",
        }
        env_from = container["envFrom"]
        config_maps = [s["configMapRef"]["name"] for s in env_from if "configMapRef" in s]
        secrets = [s["secretRef"]["name"] for s in env_from if "secretRef" in s]
        assert k8s.ENV_CONFIG_MAP in config_maps
        assert secrets == [k8s.S3_SECRET]
        assert env_map["metadata"]["name"] == k8s.ENV_CONFIG_MAP
        assert env_map["data"]["CT_PROFILE"] == "k8s"
        assert job["body"]["spec"]["template"]["metadata"]["labels"]["dagster/op"] == key


def _decompress(value: str) -> str:
    """The value of ``DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS`` as ``dagster api execute_step``
    reads it: base64 of zlib of the serialized arguments."""
    return zlib.decompress(base64.b64decode(value.encode())).decode()


def test_no_secret_value_in_step_jobs(step_jobs):
    rendered = json.dumps(step_jobs)
    for name, value in PLANTED.items():
        assert value not in rendered, f"{name}'s value is in a rendered step job"


def test_secret_check_catches_a_leak(values, env_map, kube_api):
    # Negative control: env_vars with a bare name copies the submitting process's value into
    # the job spec; the check above would see it.
    leaky = k8s.executor_config()
    leaky["env_vars"] = ["AWS_SECRET_ACCESS_KEY"]
    jobs = render_step_jobs(values, env_map, kube_api, [CPU_STEP], executor_config=leaky)
    assert PLANTED["AWS_SECRET_ACCESS_KEY"] in json.dumps(jobs)


_PROFILE_JOBS = """
import json, warnings
warnings.simplefilter("ignore")
import dagster as dg
from ct_assets.lib.runner import project_definitions
defs = project_definitions()
jobs = {}
for name in ("graph_job", "model_job", "census_job"):
    job = defs.resolve_job_def(name)
    jobs[name] = {
        "executor": job.executor_def.name,
        "execution": dg.validate_run_config(job, {})["execution"],
    }
print(json.dumps(jobs))
"""


def test_k8s_profile_jobs_run_their_steps_as_kubernetes_jobs(env_map, tmp_path):
    # A fresh process with only the ConfigMap's environment, as a code server pod has it: the
    # profile is chosen when the definitions load.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CT_", "DAGSTER_"))}
    env.update(env_map["data"], DAGSTER_HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", _PROFILE_JOBS],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(jobs) == {"graph_job", "model_job", "census_job"}
    for name, job in jobs.items():
        assert job["executor"] == k8s_job_executor.name, name
        config = job["execution"][k8s_job_executor.name]
        assert config["job_image"] == env_map["data"]["CT_IMAGE"]
        assert config["job_namespace"] == env_map["data"]["CT_K8S_NAMESPACE"]
        assert config["env_secrets"] == [k8s.S3_SECRET]


# ---- (3) the chart's values, the ConfigMap and the Dockerfile agree with the executor ------


def test_values_use_the_k8s_run_launcher_and_external_postgres(values):
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert launcher["loadInclusterConfig"] is True
    assert launcher["imagePullPolicy"] == k8s.IMAGE_PULL_POLICY
    assert _names(launcher["envConfigMaps"]) == [k8s.ENV_CONFIG_MAP]
    assert _names(launcher["envSecrets"]) == [k8s.S3_SECRET]
    # Run pods' resources hand every key over to the steps' own (steps inherit them).
    run_resources = launcher["runK8sConfig"]["containerConfig"]["resources"]
    for step_resources in (profiles.K8S_CPU_RESOURCES, profiles.K8S_GPU_RESOURCES):
        for kind, amounts in run_resources.items():
            assert set(amounts) <= set(step_resources[kind])
    pg = values["postgresql"]
    assert pg["enabled"] is False
    assert pg["postgresqlHost"] and pg["postgresqlUsername"] and pg["postgresqlDatabase"]
    assert "postgresqlPassword" not in pg  # the password comes from the Secret only
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"] == k8s.POSTGRES_SECRET
    assert values["telemetry"]["enabled"] is False


def test_values_user_code_deployment_serves_the_project(values, env_map):
    user = values["dagster-user-deployments"]
    assert user["enabled"] is True
    (deployment,) = user["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "ct_assets.definitions"]
    assert deployment["image"]["pullPolicy"] == k8s.IMAGE_PULL_POLICY
    assert (
        f"{deployment['image']['repository']}:{deployment['image']['tag']}"
        == (env_map["data"]["CT_IMAGE"])
    )
    assert _names(deployment["envConfigMaps"]) == [k8s.ENV_CONFIG_MAP]
    assert _names(deployment["envSecrets"]) == [k8s.S3_SECRET]
    for key in ("resources", "nodeSelector", "tolerations"):
        assert key not in deployment  # the chart would pass them on to every step pod
    for service in ("dagsterWebserver", "dagsterDaemon"):
        assert _names(values[service]["envConfigMaps"]) == [k8s.ENV_CONFIG_MAP]
        assert _names(values[service]["envSecrets"]) == [k8s.S3_SECRET]


def _asset_pools() -> set[str]:
    """The ``pool=`` of every asset in ``ct_assets/defs`` (read from the source)."""
    pools = set()
    for path in (REPO / "ct_assets" / "defs").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "pool":
                pools.add(ast.literal_eval(node.value))
    return pools


def test_values_run_queue_and_gpu_pool(values):
    daemon = values["dagsterDaemon"]
    assert daemon["enabled"] is True
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"
    assert coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] >= 1
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    # The chart fails when both set the run limit.
    assert "maxConcurrentRuns" not in concurrency.get("runs", {})
    pools = concurrency["pools"]
    assert pools["granularity"] == "op"
    # The GPU pool is the only pool, so the default limit is the GPU pool's limit.
    assert _asset_pools() == {profiles.GPU_QUEUE}
    assert pools["defaultLimit"] >= 1


def test_values_compute_logs_on_the_lake_bucket(values, env_map):
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    s3 = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    assert s3["bucket"] == {"env": "CT_S3_BUCKET"}
    assert s3["endpointUrl"] == {"env": "AWS_ENDPOINT_URL"}
    assert s3["region"] == env_map["data"]["AWS_REGION"]
    assert env_map["data"]["CT_LAKE"].startswith(f"s3://{env_map['data']['CT_S3_BUCKET']}/")


def test_configmap_holds_no_secret(env_map):
    data = env_map["data"]
    assert all(isinstance(value, str) for value in data.values())
    for name in data:
        assert not re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", name), name
    assert data["CT_K8S_NAMESPACE"] == env_map["metadata"]["namespace"]


def test_dockerfile_installs_the_project_with_the_pinned_torch():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "\nFROM python:3.11-slim\n" in dockerfile
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    torch_pin = next(d for d in project["dependencies"] if d.startswith("torch=="))
    assert f"ARG TORCH_VERSION={torch_pin.split('==')[1]}\n" in dockerfile
    assert "team" in project["optional-dependencies"]
    assert '".[team]"' in dockerfile
    for source in re.findall(r"^COPY (?!--)(.+) \S+$", dockerfile, flags=re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"COPY {path}: not in the repository"
