"""MLflow tracking: one MLflow run per graph, never blocking the lake.

A graph (model × prompt) materialized by a Dagster run gets one MLflow run that every asset of
that graph logs into (attribution, pruning, scores, interventions, viewer files), so its
scores sit next to the settings that made them and the runs table filters them by model,
transcoders and thresholds. A model-level partition gets one run per model and Dagster run
the same way. :class:`TrackedRun` names the run; each run carries the graph's identity params
(model, transcoders, prompt text), the Dagster run id and a link back to it, and the experiment
is marked as a classic machine-learning one, so MLflow's UI opens its runs table.

A thin resource around ``MlflowClient`` (``dagster-mlflow`` is a legacy beta resource that
leaves runs open). Tracking runs after the lake is written; if MLflow is unreachable or slow
the call gives up after ``timeout_s`` and returns the error, which the asset reports in its
metadata and in a failing check. Nothing hangs and nothing is lost silently.

The assets of one graph may run in separate processes (one step each, on Celery workers), and
a step that Dagster retries runs again under the same Dagster run id, so each MLflow run
carries the tag ``ct.run_key``, a digest of (Dagster run id, partition key): every step of the
graph, and every retry, finds the run that the first one created and logs into it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from ct_lake.config import LakehouseConfig

TRACKING_CHECK = "mlflow_logged"
RUN_KEY_TAG = "ct.run_key"
# Set on a run when an asset or a retried step logs a param the run already holds with another
# value (MLflow params are immutable: the first values stay, this tag says which and how).
PARAM_CONFLICTS_TAG = "ct.param_conflicts"
_PARAM_LENGTH = 6000  # MLflow's limit on a param value


# MLflow's UI shows an experiment of this kind as a runs table with params and metrics (its
# classic machine-learning view) rather than as traces of a GenAI application.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# MLflow 3's UI chooses between its GenAI and its machine-learning ("Model training") pages by
# a switch that defaults to GenAI and that a link's query overrides: links to runs carry it.
ML_VIEW_QUERY = "workflowType=machine_learning"


def run_key(dagster_run_id: str, partition: str | None) -> str:
    """The ``ct.run_key`` tag of the MLflow run of ``partition`` in a Dagster run: 32 hex
    characters of the SHA-256 of the two, the same for every asset and attempt."""
    text = json.dumps([dagster_run_id, partition or ""])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class TrackedRun:
    """The MLflow run of one partition of a Dagster run, which each of its assets logs into.

    ``tags``: set when the run is created (the Dagster run id and link, the partition);
    ``params``: what identifies the graph (model, transcoders, prompt text), logged with every
    asset's own params so that a run made by any one asset carries them."""

    key: str
    name: str
    tags: dict[str, str]
    params: dict[str, Any]


@dataclass(frozen=True)
class TrackingOutcome:
    """What happened to one MLflow log call. ``warning``: logged, but something the user
    should see (params the run already held with other values)."""

    ok: bool
    run_id: str | None = None
    url: str | None = None
    error: str | None = None
    warning: str | None = None

    def metadata(self) -> dict[str, Any]:
        if self.ok:
            found: dict[str, Any] = {
                "mlflow_run": dg.MetadataValue.url(self.url or ""),
                "mlflow_run_id": self.run_id,
            }
            if self.warning:
                found["mlflow_warning"] = dg.MetadataValue.text(self.warning)
            return found
        return {"mlflow_error": dg.MetadataValue.text(self.error or "unknown error")}

    def check(self, asset_key) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=TRACKING_CHECK,
            passed=self.ok,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=self.metadata(),
        )


class MlflowTracker(dg.ConfigurableResource):
    """Logs to MLflow. ``tracking_uri``, ``experiment`` and ``timeout_s`` override the
    lakehouse config's ``mlflow:`` settings (the config the run's lakehouse resource read)."""

    tracking_uri: str | None = None
    experiment: str | None = None
    timeout_s: float | None = None

    def _settings(self, config: LakehouseConfig) -> tuple[str, str, float, Path]:
        uri = self.tracking_uri or config.tracking_uri
        experiment = self.experiment or config.mlflow.experiment
        timeout = self.timeout_s or config.mlflow.timeout_s
        artifacts = config.base / "dagster_home" / "mlartifacts"
        return uri, experiment, timeout, artifacts

    def ui_url(self, config: LakehouseConfig) -> str:
        """Where MLflow's UI shows the runs of this resource's tracking URI."""
        return config.mlflow_ui_url_for(self._settings(config)[0])

    def log_partition(
        self,
        config: LakehouseConfig,
        run: TrackedRun,
        *,
        asset: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        artifacts: list[Path] = (),
    ) -> TrackingOutcome:
        """Log ``asset``'s params, metrics and artifacts into ``run`` (created by the first
        asset of the partition to log, found by its key by the others) and leave it finished.
        Never raises and never waits past the timeout."""
        uri, experiment, timeout, artifact_root = self._settings(config)
        tags = {**run.tags, RUN_KEY_TAG: run.key, f"ct.asset.{asset}": "logged"}
        params = {**run.params, **params}
        down = (run.tags.get("dagster.run_id", ""), uri)
        if down in _UNREACHABLE:  # waited for once in this Dagster run: not again
            return TrackingOutcome(ok=False, error=f"{_UNREACHABLE[down]} (not tried again)")
        # Imported before the clock starts: slow on a loaded machine, but it never hangs.
        import mlflow.tracking  # noqa: F401

        future: concurrent.futures.Future = concurrent.futures.Future()
        opened = threading.Event()

        def call() -> None:
            try:
                future.set_result(
                    _log(
                        uri,
                        experiment,
                        artifact_root,
                        timeout,
                        run.name,
                        tags,
                        params,
                        metrics,
                        artifacts,
                        opened,
                    )
                )
            except BaseException as err:  # handed to the waiting thread
                future.set_exception(err)

        # A daemon thread: one that hangs on a silent server never holds up the process's exit.
        threading.Thread(target=call, name="mlflow-log", daemon=True).start()
        if uri.startswith("sqlite:"):
            # A local file, no server that could hang: its first open creates MLflow's tables,
            # which takes long on a loaded machine and is not counted in the timeout.
            deadline = time.monotonic() + _LOCAL_OPEN_S
            while not (opened.wait(0.1) or future.done()) and time.monotonic() < deadline:
                pass
        try:
            experiment_id, run_id, warning = future.result(timeout=timeout)
            url = f"{self.ui_url(config)}/#/experiments/{experiment_id}/runs/{run_id}"
            url += f"?{ML_VIEW_QUERY}"
            return TrackingOutcome(ok=True, run_id=run_id, url=url, warning=warning)
        except concurrent.futures.TimeoutError:
            error = f"MLflow at {uri} did not answer in {timeout:g}s"
            if down[0]:
                _UNREACHABLE[down] = error
            return TrackingOutcome(ok=False, error=error)
        except Exception as err:  # any tracking failure is reported, not raised
            error = f"MLflow at {uri}: {type(err).__name__}: {err}"
            if down[0] and _is_unreachable(err):
                _UNREACHABLE[down] = error
            return TrackingOutcome(ok=False, error=error)


_LOCAL_OPEN_S = 600  # the most a sqlite store's first open (its migrations) may take

# (Dagster run id, tracking URI) -> the error of a call that found MLflow unreachable: the
# later calls of that run fail at once, so that a run waits for a silent server once, not
# once per asset and partition.
_UNREACHABLE: dict[tuple[str, str], str] = {}


def _is_unreachable(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) says the server could not be reached."""
    import requests

    seen = err
    while seen is not None:
        if isinstance(seen, OSError | requests.exceptions.RequestException):
            return True
        if "Max retries exceeded" in str(seen) or "Connection refused" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def _first_use_lock(uri: str):
    """For a sqlite store, an exclusive lock on ``<database>.lock`` while the store is opened
    and the experiment found or made: a new store's tables are created then, and two processes
    doing it at once would collide (one of them losing its run). Other stores are servers,
    which serialize this themselves."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    database = Path(uri[len("sqlite:///") :])
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _log(
    uri, experiment, artifact_root, timeout, run_name, tags, params, metrics, artifacts, opened
) -> tuple[str, str, str | None]:
    """Log to the run tagged ``tags[RUN_KEY_TAG]`` (created when none exists) and finish it;
    returns ``(experiment_id, run_id, warning)``, the warning naming params that the run
    already holds with other values (MLflow params are immutable: the first values stay)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, int(timeout)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    with _first_use_lock(uri):
        client = MlflowClient(tracking_uri=uri)  # opens the store: creates a new one's tables
        found = client.get_experiment_by_name(experiment)
        if found is None:
            location = artifact_root.as_uri() if uri.startswith("sqlite") else None
            try:
                experiment_id = client.create_experiment(
                    experiment,
                    artifact_location=location,
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
                )
            except MlflowException:  # created meanwhile by a parallel step
                experiment_id = client.get_experiment_by_name(experiment).experiment_id
    opened.set()
    if found is not None:
        experiment_id = found.experiment_id
        if EXPERIMENT_KIND_TAG not in found.tags:  # an experiment made before runs were tracked
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    wanted = {k: str(v)[:_PARAM_LENGTH] for k, v in params.items()}
    earlier = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{tags[RUN_KEY_TAG]}'",
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    new_tags, warning = [], None
    if earlier:  # another asset of the partition, or an earlier attempt of this step
        run = earlier[0]
        run_id, logged = run.info.run_id, run.data.params
        changed = {k: (logged[k], v) for k, v in wanted.items() if k in logged and logged[k] != v}
        wanted = {k: v for k, v in wanted.items() if k not in logged}
        new_tags = [RunTag(k, v) for k, v in tags.items() if run.data.tags.get(k) != v]
        if run.info.run_name != run_name:  # made by hand, or by an attempt of another version
            new_tags.append(RunTag("mlflow.runName", run_name))
        if changed:
            warning = "params already logged with other values, kept the first: " + (
                "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            )
            new_tags.append(RunTag(PARAM_CONFLICTS_TAG, warning[:_PARAM_LENGTH]))
    else:
        run_id = client.create_run(experiment_id, tags=tags, run_name=run_name).info.run_id
    now_ms = int(time.time() * 1000)
    try:
        client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in wanted.items()],
            metrics=[
                Metric(k, float(v), now_ms, 0)
                for k, v in metrics.items()
                if v is not None and math.isfinite(float(v))
            ],
            tags=new_tags,
        )
        for path in artifacts:
            client.log_artifact(run_id, str(path))
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return experiment_id, run_id, warning
