"""The executor of each profile, and a Celery executor that survives the loss of a worker.

``local`` keeps the in-process executor (one process; the model and each graph load once).
``team`` runs every step as a Celery task on the workers of ``ct_assets.lib.celery_worker``:
GPU steps on the ``gpu`` queue, the others on ``cpu`` (the ``dagster-celery/queue`` op tag).
``k8s`` runs every step as a Kubernetes job (:mod:`ct_assets.lib.k8s`).

dagster-celery's own loop fails the run when the worker running a step dies: the task's
result never arrives, or arrives as ``WorkerLostError``. The executor here (``celery``, with
the same config) treats a lost worker as a failed attempt of the step, so that the step's
retry policy runs it again on a worker that is alive, as Dagster's step-delegating executors
do after a failed health check. A worker is lost when its pool reports the task's process
lost, or when it stops answering pings for :data:`LOST_AFTER_MISSES` checks in a row.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import dagster as dg

from ct_assets.lib.profiles import (
    BACKEND_ENV,
    BROKER_ENV,
    CELERY_QUEUE_TAG,
    CELERY_SETTINGS,
    current_profile,
)

# A step is retried at most twice (a lost worker, a lost connection), a few seconds later.
STEP_RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=2)

TICK_S = 0.5  # how often the loop looks at its tasks
PING_EVERY_S = 5.0  # how often the worker of each started task is pinged
PING_TIMEOUT_S = 2.0
LOST_AFTER_MISSES = 3  # unanswered pings in a row (about 15 s) before a worker counts as lost


def celery_executor_config() -> dict[str, Any]:
    """The team profile's executor config: broker and backend from the environment (never
    written into run config or metadata), the shared Celery settings, retries enabled."""
    return {
        "broker": {"env": BROKER_ENV},
        "backend": {"env": BACKEND_ENV},
        "config_source": dict(CELERY_SETTINGS),
        "retries": {"enabled": {}},
    }


def worker_app_args() -> dict[str, Any]:
    """The Celery app arguments of a worker: the executor's, read from the same environment."""
    from dagster._core.execution.retries import RetryMode
    from dagster_celery.executor import CeleryExecutor

    missing = [name for name in (BROKER_ENV, BACKEND_ENV) if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"set {' and '.join(missing)} (scripts/services.sh writes team.env)")
    executor = CeleryExecutor(
        retries=RetryMode(RetryMode.ENABLED),
        broker=os.environ[BROKER_ENV],
        backend=os.environ[BACKEND_ENV],
        config_source=dict(CELERY_SETTINGS),
    )
    return executor.app_args()


def _celery_executor_class():
    """:class:`WorkerAwareCeleryExecutor`, defined on first use: dagster-celery is an optional
    dependency (the ``team`` extra)."""
    from dagster_celery.executor import CeleryExecutor

    class WorkerAwareCeleryExecutor(CeleryExecutor):
        """dagster-celery's executor; its loop turns a lost worker into a failed attempt."""

        def execute(self, plan_context, execution_plan):
            return _execution_loop(plan_context, execution_plan)

    return WorkerAwareCeleryExecutor


def worker_aware_celery_executor() -> dg.ExecutorDefinition:
    """dagster-celery's ``celery`` executor (same config) with the worker-aware loop."""
    from dagster._core.execution.retries import RetryMode
    from dagster_celery.executor import CELERY_CONFIG

    executor_class = _celery_executor_class()

    @dg.executor(
        name="celery",
        config_schema=CELERY_CONFIG,
        requirements=dg.multiple_process_executor_requirements(),
    )
    def celery(init_context):
        config = init_context.executor_config
        return executor_class(
            broker=config.get("broker"),
            backend=config.get("backend"),
            config_source=config.get("config_source"),
            include=config.get("include"),
            retries=RetryMode.from_config(config["retries"]),
        )

    return celery


def executor_for(profile: str | None = None) -> dg.ExecutorDefinition | None:
    """The executor of ``profile`` (default: ``$CT_PROFILE``); ``None`` for ``local``, whose
    jobs choose their own."""
    profile = profile or current_profile()
    if profile == "team":
        return worker_aware_celery_executor().configured(celery_executor_config())
    if profile == "k8s":
        from ct_assets.lib.k8s import k8s_executor

        return k8s_executor()
    return None


def retry_policy_for(profile: str | None = None) -> dg.RetryPolicy | None:
    """The steps' retry policy: steps that run on other machines are retried; in one process a
    failure is not an accident of the infrastructure, so ``local`` does not retry."""
    return None if (profile or current_profile()) == "local" else STEP_RETRY_POLICY


class _WorkerWatch:
    """Pings the worker that started each task; says when one stopped answering."""

    def __init__(self, app):
        self._app = app
        self._misses: dict[str, int] = {}
        self._last: dict[str, float] = {}

    def lost(self, result) -> str | None:
        """Why the task of ``result`` (not ready) lost its worker, or None while it is fine."""
        now = time.monotonic()
        if now - self._last.get(result.id, 0.0) < PING_EVERY_S:
            return None
        self._last[result.id] = now
        if result.state != "STARTED" or not isinstance(result.info, dict):
            return None  # still queued: the broker holds it until a worker takes it
        worker = result.info.get("hostname")
        if not worker:
            return None
        answers = self._app.control.ping(destination=[worker], timeout=PING_TIMEOUT_S)
        if any(worker in answer for answer in answers):
            self._misses.pop(result.id, None)
            return None
        self._misses[result.id] = misses = self._misses.get(result.id, 0) + 1
        if misses < LOST_AFTER_MISSES:
            return None
        return f"worker {worker} (pid {result.info.get('pid')}) stopped answering pings"

    def forget(self, result) -> None:
        self._misses.pop(result.id, None)
        self._last.pop(result.id, None)


def _execution_loop(job_context, execution_plan):
    """dagster-celery's execution loop with lost workers turned into retries (see module)."""
    from billiard.exceptions import WorkerLostError
    from celery.exceptions import TaskRevokedError
    from dagster._core.errors import DagsterSubprocessError
    from dagster._core.events import DagsterEvent, EngineEventData
    from dagster._core.execution.plan.instance_concurrency_context import (
        InstanceConcurrencyContext,
    )
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import pack_value
    from dagster._utils.error import SerializableErrorInfo, serializable_error_info_from_exc_info
    from dagster_celery.core_execution_loop import DELEGATE_MARKER, _get_step_priority
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task
    from dagster_shared.serdes import deserialize_value

    executor = job_context.executor
    app = make_app(executor.app_args())
    default_priority = app.conf.task_default_priority
    default_queue = app.conf.task_default_queue
    task = create_task(app)  # once: the app registers a task name once
    watch = _WorkerWatch(app)
    in_flight: dict[str, Any] = {}  # step key -> celery AsyncResult
    errors: dict[str, SerializableErrorInfo] = {}

    def sort_key(step) -> int:
        return -_get_step_priority(job_context, step, default_priority)

    with InstanceConcurrencyContext(job_context.instance, job_context.dagster_run) as slots:
        with execution_plan.start(
            retry_mode=executor.retries, sort_key_fn=sort_key, instance_concurrency_context=slots
        ) as active:
            stopping = False
            while (not active.is_complete and not stopping) or in_flight:
                if active.check_for_interrupts():
                    yield DagsterEvent.engine_event(
                        job_context,
                        "Celery executor: termination requested, revoking the running tasks",
                        EngineEventData.interrupted(list(in_flight)),
                    )
                    stopping = True
                    active.mark_interrupted()
                    for result in in_flight.values():
                        result.revoke()
                for step_key, result in list(in_flight.items()):
                    step = active.get_step_by_key(step_key)
                    lost = None
                    if result.ready():
                        events = []
                        try:
                            events = result.get()
                        except TaskRevokedError:
                            yield DagsterEvent.engine_event(
                                job_context.for_step(step),
                                f'The Celery task of step "{step_key}" was revoked.',
                                EngineEventData(marker_end=DELEGATE_MARKER),
                            )
                        except WorkerLostError as err:
                            lost = f"its worker process died ({err})"
                        except Exception:
                            errors[step_key] = serializable_error_info_from_exc_info(sys.exc_info())
                        for serialized in events:
                            event = deserialize_value(serialized, DagsterEvent)
                            yield event
                            active.handle_event(event)
                    else:
                        lost = watch.lost(result)
                        if lost is None:
                            continue
                        # If the worker is only slow, it must not finish the step next to the
                        # retry: stop the task wherever it still runs.
                        app.control.revoke(result.id, terminate=True, signal="SIGKILL")
                    watch.forget(result)
                    del in_flight[step_key]
                    if lost is not None:  # no event of this attempt came back: still in flight
                        error = SerializableErrorInfo(
                            message=f'Step "{step_key}" lost its Celery worker: {lost}.',
                            stack=[],
                            cls_name="WorkerLostError",
                        )
                        event = executor.log_failure_or_retry_event_after_error(
                            job_context.for_step(step), error, active.get_known_state()
                        )
                        active.handle_event(event)
                        if not event.is_step_up_for_retry:
                            errors[step_key] = error
                        continue
                    active.verify_complete(job_context, step_key)

                yield from active.plan_events_iterator(job_context)
                if stopping or errors:
                    continue
                for step in active.get_steps_to_execute():
                    queue = step.tags.get(CELERY_QUEUE_TAG, default_queue)
                    yield DagsterEvent.engine_event(
                        job_context.for_step(step),
                        f'Submitting the Celery task of step "{step.key}" to queue "{queue}".',
                        EngineEventData(marker_start=DELEGATE_MARKER),
                    )
                    priority = _get_step_priority(job_context, step, default_priority)
                    args = ExecuteStepArgs(
                        job_origin=job_context.reconstructable_job.get_python_origin(),
                        run_id=job_context.dagster_run.run_id,
                        step_keys_to_execute=[step.key],
                        instance_ref=job_context.instance.get_ref(),
                        retry_mode=executor.retries.for_inner_plan(),
                        known_state=active.get_known_state(),
                        print_serialized_events=True,
                    )
                    signature = task.si(
                        execute_step_args_packed=pack_value(args),
                        executable_dict=job_context.reconstructable_job.to_dict(),
                    )
                    in_flight[step.key] = signature.apply_async(
                        priority=priority, queue=queue, routing_key=f"{queue}.execute_plan"
                    )
                time.sleep(TICK_S)

            if errors:
                listed = "\n".join(f"[{key}]: {err.to_string()}" for key, err in errors.items())
                raise DagsterSubprocessError(
                    f"Steps failed in Celery workers:\n{listed}",
                    subprocess_error_infos=list(errors.values()),
                )
