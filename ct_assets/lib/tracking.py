"""MLflow tracking: one MLflow run per asset partition, never blocking the lake.

A thin resource around ``MlflowClient`` (``dagster-mlflow`` is a legacy beta resource that
leaves runs open). Each call leaves one finished run tagged with the Dagster run id, asset key,
partition key and code version, and logs params, metrics and artifact files. Tracking runs
after the lake is written; if MLflow is unreachable or slow the call gives up after
``timeout_s`` and returns the error, which the asset reports in its metadata and in a failing
check. Nothing hangs and nothing is lost silently.

A step that Dagster retries (its worker killed mid-step, say) runs again under the same Dagster
run id, so each MLflow run carries the tag ``ct.run_key``, a digest of (Dagster run id, asset
key, partition key): a retry finds the run its earlier attempt created, RUNNING or FAILED, and
finishes that one instead of creating a second.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from ct_lake.config import LakehouseConfig

TRACKING_CHECK = "mlflow_logged"
RUN_KEY_TAG = "ct.run_key"
# Set on a reused run whose params differ from its earlier attempt's (MLflow params are
# immutable: the first values stay, this tag says which changed and how).
PARAM_CONFLICTS_TAG = "ct.param_conflicts"
_PARAM_LENGTH = 6000  # MLflow's limit on a param value


def run_key(dagster_run_id: str, asset: str, partition: str | None) -> str:
    """The ``ct.run_key`` tag of the MLflow run of ``asset``'s ``partition`` in a Dagster run:
    32 hex characters of the SHA-256 of the three, the same in every attempt of the step."""
    text = json.dumps([dagster_run_id, asset, partition or ""])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class TrackingOutcome:
    """What happened to one MLflow log call. ``warning``: logged, but something the user
    should see (params that changed since an earlier attempt of the step)."""

    ok: bool
    run_id: str | None = None
    error: str | None = None
    warning: str | None = None

    def metadata(self) -> dict[str, Any]:
        if self.ok:
            found: dict[str, Any] = {"mlflow_run_id": self.run_id}
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

    def log_partition(
        self,
        config: LakehouseConfig,
        *,
        asset: str,
        partition: str | None,
        dagster_run_id: str,
        code_version: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        artifacts: list[Path] = (),
    ) -> TrackingOutcome:
        """Leave one finished MLflow run for (``dagster_run_id``, ``asset``, ``partition``):
        the run an earlier attempt of the step created, else a new one. Never raises and never
        waits past the timeout."""
        uri, experiment, timeout, artifact_root = self._settings(config)
        tags = {
            "dagster.run_id": dagster_run_id,
            "dagster.asset_key": asset,
            "dagster.partition_key": partition or "",
            "dagster.code_version": code_version,
            RUN_KEY_TAG: run_key(dagster_run_id, asset, partition),
        }
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        future = pool.submit(
            _log, uri, experiment, artifact_root, timeout, tags, params, metrics, artifacts
        )
        try:
            run_id, warning = future.result(timeout=timeout)
            return TrackingOutcome(ok=True, run_id=run_id, warning=warning)
        except concurrent.futures.TimeoutError:
            return TrackingOutcome(ok=False, error=f"MLflow at {uri} did not answer in {timeout}s")
        except Exception as err:  # any tracking failure is reported, not raised
            return TrackingOutcome(ok=False, error=f"MLflow at {uri}: {type(err).__name__}: {err}")
        finally:
            pool.shutdown(wait=False)


def _log(
    uri, experiment, artifact_root, timeout, tags, params, metrics, artifacts
) -> tuple[str, str | None]:
    """Log to the run tagged ``tags[RUN_KEY_TAG]`` (created when none exists) and finish it;
    returns ``(run_id, warning)``, the warning naming params an earlier attempt set
    differently."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, int(timeout)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = artifact_root.as_uri() if uri.startswith("sqlite") else None
        try:
            experiment_id = client.create_experiment(experiment, artifact_location=location)
        except MlflowException:  # created meanwhile by a parallel step
            experiment_id = client.get_experiment_by_name(experiment).experiment_id
    else:
        experiment_id = found.experiment_id
    wanted = {k: str(v)[:_PARAM_LENGTH] for k, v in params.items()}
    earlier = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{tags[RUN_KEY_TAG]}'",
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    new_tags, warning = [], None
    if earlier:  # an earlier attempt of this step: finish its run
        run = earlier[0]
        run_id, logged = run.info.run_id, run.data.params
        changed = {k: (logged[k], v) for k, v in wanted.items() if k in logged and logged[k] != v}
        wanted = {k: v for k, v in wanted.items() if k not in logged}
        new_tags = [RunTag(k, v) for k, v in tags.items() if run.data.tags.get(k) != v]
        if changed:
            warning = "params changed since an earlier attempt, kept the first values: " + (
                "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            )
            new_tags.append(RunTag(PARAM_CONFLICTS_TAG, warning[:_PARAM_LENGTH]))
    else:
        run_name = tags["dagster.asset_key"] + (
            f" {tags['dagster.partition_key']}" if tags["dagster.partition_key"] else ""
        )
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
    return run_id, warning
