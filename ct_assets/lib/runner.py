"""Materialize the lakehouse for a model and some prompts, in this process.

``ct materialize`` and the tests use this: it registers the prompts, then runs the project's
own jobs (``ct_assets/defs/jobs.py``): ``model_job`` for the model, ``graph_job`` once per
contiguous range of the prompt partitions (one run over a partition range: the model loads
once) and ``census_job``. Every run is recorded in the Dagster instance (it shows in the UI,
tagged with the model and its prompts: :func:`run_tags`, and with the process running it:
:func:`owner_tags`) and gets the same engine resource, so the model loads once per process. A
watcher reads each run's materializations from the instance as they are stored, for a
progress bar.

A step over a partition range fails for every partition of the range, so a range run that
fails is run again one partition per run: one bad prompt fails only its own graph, and the
summary names it with the error its step raised. A run whose process died without ending it
(SIGKILL) would hold its pool slots forever: :func:`reap_dead_runs` ends such runs.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from ct_assets.lib.context import multi_key
from ct_assets.lib.resources import EngineResource, lakehouse_resources
from ct_lake.config import LakehouseConfig
from ct_lake.keys import PROMPTS_PARTITIONS
from ct_lake.prompts import register_prompts

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# Run tags that say what a run is about in the Dagster UI's runs list (keys stay p_<hash>).
MODEL_TAG = "ct/model"
PROMPTS_TAG = "ct/prompts"  # how many prompts the run covers
PROMPT_TAG = "ct/prompt"  # the first prompt's text, shortened
# Quiet runs (ct materialize without --verbose) show nothing of Dagster's console log: its
# error events are stack dumps, and the summary names every failure on one line instead.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# Which process runs an in-process run: its host, pid and the pid's start time (a pid that was
# reused by another process after ours died has another start time).
HOST_TAG, PID_TAG, PID_START_TAG = "ct/host", "ct/pid", "ct/pid_start"
_UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

# (asset key, partition key) of each materialization, as the watcher hears of it
OnMaterialized = Callable[[str, str | None], None]


@dataclass
class MaterializeSummary:
    model: str
    partition_keys: list[dg.MultiPartitionKey]
    run_ids: list[str]
    success: bool
    # (prompt text, why) of each prompt whose graph failed: "step: error" of its run
    failed: list[tuple[str, str]] = field(default_factory=list)
    # (job, why) of each failed run of a model-level job (model_job, census_job)
    failed_jobs: list[tuple[str, str]] = field(default_factory=list)
    # asset partitions stored in the lake but not logged to MLflow, and the first error
    untracked: int = 0
    tracking_error: str | None = None


def tracking_failures(instance: dg.DagsterInstance, run_ids: list[str]) -> tuple[int, str | None]:
    """How many asset partitions of the runs ``run_ids`` were stored but not logged to MLflow
    (their materialization carries ``mlflow_error``), and the first such error."""
    count, first = 0, None
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            metadata = entry.dagster_event.event_specific_data.materialization.metadata
            if "mlflow_error" in metadata:
                count += 1
                first = first or str(metadata["mlflow_error"].value)
    return count, first


def failure_of(instance: dg.DagsterInstance, run_id: str) -> str:
    """Why run ``run_id`` failed, on one line: ``step: ExceptionType: message`` of its first
    failed step (the exception the asset raised, not Dagster's wrapper), else the run's own
    failure message."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.step_failure_data.error
        while error is not None and error.cause is not None:
            error = error.cause
        message = (error.message if error is not None else "").strip().splitlines()
        return f"{entry.step_key}: {message[0] if message else 'failed'}"
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
        return (entry.message or "the run failed").splitlines()[0]
    return "the run failed"


def contiguous_ranges(selected: list[str], order: list[str]) -> list[tuple[str, str]]:
    """Split ``selected`` keys into runs that are contiguous in ``order``: ``(first, last)``."""
    index = sorted(order.index(k) for k in set(selected))
    ranges, start = [], None
    for i, position in enumerate(index):
        if start is None:
            start = position
        if i + 1 == len(index) or index[i + 1] != position + 1:
            ranges.append((order[start], order[position]))
            start = None
    return ranges


def project_definitions() -> dg.Definitions:
    """The project's definitions (``ct_assets/defs/``), as ``dagster dev`` loads them."""
    from ct_assets.definitions import defs

    return defs()


def run_tags(model: str, texts: list[str]) -> dict[str, str]:
    """The tags of a run over ``texts`` (prompt texts) of ``model``; none for the prompts of a
    model-level run (``texts`` empty)."""
    tags = {MODEL_TAG: model}
    if texts:
        first = " ".join(texts[0].split())
        more = f" (+{len(texts) - 1} more)" if len(texts) > 1 else ""
        tags |= {PROMPTS_TAG: str(len(texts)), PROMPT_TAG: first[:200] + more}
    return tags


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), "" where the system does
    not say, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        return None
    except OSError:  # no /proc: ask the process itself
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""


def owner_tags() -> dict[str, str]:
    """The tags that name this process as the one running a run."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PID_START_TAG: _process_start(pid)}


def _owner_gone(run: dg.DagsterRun) -> bool:
    """Whether ``run`` was run in process by a process of this host that no longer exists."""
    tags = run.tags
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    started = _process_start(int(tags[PID_TAG]))
    return started is None or started not in ("", tags.get(PID_START_TAG, ""))


def end_run(
    instance: dg.DagsterInstance, run: dg.DagsterRun, why: str, *, canceled: bool
) -> list[str]:
    """Mark ``run`` canceled (or failed) with ``why`` and free the pool slots its steps held
    or waited for; returns the pools of the slots it held."""
    storage = instance.event_log_storage
    try:
        infos = [storage.get_concurrency_info(key) for key in storage.get_concurrency_keys()]
    except NotImplementedError:  # a storage without pools
        infos = []
    held = [i.concurrency_key for i in infos for c in i.claimed_slots if c.run_id == run.run_id]
    if canceled:
        instance.report_run_canceled(run, message=why)
    else:
        instance.report_run_failed(run, message=why)
    if infos:
        storage.free_concurrency_slots_for_run(run.run_id)
    return held


def reap_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """End the in-process runs whose process is gone (killed, say by the out-of-memory killer,
    before it could end them): each is marked failed and its pool slots are freed, so that later
    runs do not wait for them forever. Returns one line per run ended."""
    lines = []
    for run in instance.get_runs(dg.RunsFilter(statuses=_UNFINISHED)):
        if not _owner_gone(run):
            continue
        why = f"its process (pid {run.tags[PID_TAG]}) is gone"
        held = end_run(instance, run, f"{run.job_name}: {why}", canceled=False)
        freed = f", freed its slot in pool {', '.join(held)}" if held else ""
        lines.append(f"{run.job_name} run {run.run_id[:8]}: {why}: marked failed{freed}")
    return lines


def job_steps(definitions: dg.Definitions, job: str) -> int:
    """How many assets ``job`` materializes per partition."""
    return len(definitions.resolve_job_def(job).asset_layer.executable_asset_keys)


def planned_steps(
    definitions: dg.Definitions, n_prompts: int, *, with_model_assets: bool = True
) -> int:
    """How many asset partitions :func:`materialize` stores for ``n_prompts`` prompts."""
    model = job_steps(definitions, "model_job") if with_model_assets else 0
    return (
        model
        + n_prompts * job_steps(definitions, "graph_job")
        + job_steps(definitions, "census_job")
    )


class _Watcher:
    """Reads a run's materializations from the instance as they are stored and hands each to
    ``on_materialized``, from a thread, until :meth:`stop`."""

    def __init__(
        self, instance: dg.DagsterInstance, run_id: str, on_materialized: OnMaterialized
    ) -> None:
        self.instance, self.run_id, self.on_materialized = instance, run_id, on_materialized
        self.cursor: str | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.done.wait(0.5):
            self._read()

    def _read(self) -> None:
        try:
            found = self.instance.get_records_for_run(
                self.run_id, cursor=self.cursor, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            )
        except Exception:  # the run is not stored yet; the next poll reads it
            return
        self.cursor = found.cursor
        for record in found.records:
            event = record.event_log_entry.dagster_event
            if event is not None and event.asset_key is not None:
                self.on_materialized(event.asset_key.to_user_string(), event.partition)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self._read()  # whatever was stored after the last poll


def materialize(
    config: LakehouseConfig,
    model: str,
    prompts: list[str],
    instance: dg.DagsterInstance,
    *,
    with_model_assets: bool = True,
    raise_on_error: bool = True,
    engine: EngineResource | None = None,
    on_materialized: OnMaterialized | None = None,
    quiet: bool = False,
) -> MaterializeSummary:
    """Register ``prompts`` for ``model`` and run ``model_job`` (unless
    ``with_model_assets`` is False), ``graph_job`` over the prompts' partition ranges and
    ``census_job``, with the lakehouse of ``config`` and ``engine`` (default: a new one,
    shared by these runs). ``on_materialized`` hears of each asset partition stored;
    ``quiet``: Dagster's console log shows warnings and errors only. With ``raise_on_error``
    False, a failed range of ``graph_job`` is run again one partition per run, and the
    summary lists each prompt that failed (:attr:`MaterializeSummary.failed`)."""
    resources = lakehouse_resources(str(config.path), engine or EngineResource())
    registered = register_prompts(config, prompts, [model], instance)
    order = instance.get_dynamic_partitions(PROMPTS_PARTITIONS)
    definitions = project_definitions()
    results = []

    def run(job: str, tags: dict[str, str], **kwargs):
        run_id = str(uuid.uuid4())  # known before the run starts, for the watcher
        watcher = _Watcher(instance, run_id, on_materialized) if on_materialized else None
        try:
            result = definitions.resolve_job_def(job).execute_in_process(
                run_config=QUIET if quiet else None,
                instance=instance,
                resources=resources,
                raise_on_error=raise_on_error,
                run_id=run_id,
                tags=tags | owner_tags(),
                **kwargs,
            )
        finally:
            if watcher is not None:
                watcher.stop()
        results.append(result)
        return result

    def graph_run(keys: list[str]):
        texts = [registered.prompts[k] for k in keys]
        tags = {RANGE_START: multi_key(model, keys[0]), RANGE_END: multi_key(model, keys[-1])}
        return run("graph_job", tags | run_tags(model, texts))

    failed: list[tuple[str, str]] = []
    failed_jobs: list[tuple[str, str]] = []

    def model_run(job: str) -> bool:
        result = run(job, run_tags(model, []), partition_key=model)
        if not result.success:
            failed_jobs.append((job, failure_of(instance, result.run_id)))
        return result.success

    ok = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.BetaWarning)
        warnings.simplefilter("ignore", category=dg.PreviewWarning)
        if with_model_assets:
            ok &= model_run("model_job")
        for first, last in contiguous_ranges(list(registered.prompts), order):
            keys = order[order.index(first) : order.index(last) + 1]
            result = graph_run(keys)
            if result.success:
                continue
            # A step over a range fails for every partition of it: run each partition on its
            # own, so that one bad prompt fails only its graph (the model stays loaded).
            alone = [(k, graph_run([k]) if len(keys) > 1 else result) for k in keys]
            failed += [
                (registered.prompts[k], failure_of(instance, r.run_id))
                for k, r in alone
                if not r.success
            ]
        ok &= model_run("census_job")
    run_ids = [r.run_id for r in results]
    untracked, tracking_error = tracking_failures(instance, run_ids)
    return MaterializeSummary(
        model=model,
        partition_keys=[multi_key(m, p) for m, p in registered.partitions],
        run_ids=run_ids,
        success=ok and not failed,
        failed=failed,
        failed_jobs=failed_jobs,
        untracked=untracked,
        tracking_error=tracking_error,
    )


def chunks(ranges: list[tuple[str, str]], order: list[str], size: int) -> list[tuple[str, str]]:
    """Split each contiguous ``(first, last)`` range of ``order`` into ranges of at most
    ``size`` keys."""
    out = []
    for first, last in ranges:
        keys = order[order.index(first) : order.index(last) + 1]
        out.extend(
            (part[0], part[-1]) for part in (keys[i : i + size] for i in range(0, len(keys), size))
        )
    return out


def materialize_on_workers(
    config: LakehouseConfig,
    model: str,
    prompts: list[str],
    instance: dg.DagsterInstance,
    *,
    dagster_url: str,
    partitions_per_run: int = 5,
    with_model_assets: bool = True,
    poll_s: float = 2.0,
    progress=None,
) -> MaterializeSummary:
    """The team profile's :func:`materialize`: the same jobs, submitted to the Dagster
    webserver at ``dagster_url`` (as the UI's launch button does), queued by the instance's run
    coordinator and started by the daemon; their steps run on the Celery workers. Graph runs
    cover at most ``partitions_per_run`` prompts each, so that the workers share the graphs;
    they all wait in the queue together; a failed one is run again one partition per run (as
    :func:`materialize` does). Returns when every run has finished; ``progress``
    (a callable taking one line) hears of each run's end."""
    from urllib.parse import urlsplit

    from dagster_graphql import DagsterGraphQLClient

    url = urlsplit(dagster_url)
    client = DagsterGraphQLClient(url.hostname or "127.0.0.1", port_number=url.port, timeout=60)
    registered = register_prompts(config, prompts, [model], instance)
    order = instance.get_dynamic_partitions(PROMPTS_PARTITIONS)
    run_ids: list[str] = []
    say = progress or (lambda line: None)

    def submit(job: str, tags: dict[str, str]) -> str:
        run_id = client.submit_job_execution(job, tags=tags)
        run_ids.append(run_id)
        return run_id

    def wait(pending: list[str]) -> None:
        pending = list(pending)
        while pending:
            for run_id in list(pending):
                run = instance.get_run_by_id(run_id)
                if run is not None and run.is_finished:
                    pending.remove(run_id)
                    say(f"{run.job_name} {run_id[:8]}: {run.status.value.lower()}")
            if pending:
                time.sleep(poll_s)

    def graph_run(first: str, last: str) -> str:
        keys = order[order.index(first) : order.index(last) + 1]
        tags = {RANGE_START: multi_key(model, first), RANGE_END: multi_key(model, last)}
        return submit("graph_job", tags | run_tags(model, [registered.prompts[k] for k in keys]))

    def succeeded(run_id: str) -> bool:
        return instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS

    model_runs = []
    if with_model_assets:
        model_runs.append(submit("model_job", {"dagster/partition": model} | run_tags(model, [])))
        wait(model_runs)
    ranges = chunks(contiguous_ranges(list(registered.prompts), order), order, partitions_per_run)
    range_runs = [(graph_run(a, b), a, b) for a, b in ranges]
    wait([run_id for run_id, _, _ in range_runs])
    # As in materialize(): a failed range is run again one partition per run, so that one bad
    # prompt fails only its own graph.
    last_try: dict[str, str] = {}  # prompt key -> the run that materialized it last
    for run_id, first, last in range_runs:
        keys = order[order.index(first) : order.index(last) + 1]
        if succeeded(run_id) or len(keys) == 1:
            last_try |= dict.fromkeys(keys, run_id)
        else:
            last_try |= {k: graph_run(k, k) for k in keys}
    wait([r for r in set(last_try.values()) if r not in {i for i, _, _ in range_runs}])
    model_runs.append(submit("census_job", {"dagster/partition": model} | run_tags(model, [])))
    wait(model_runs[-1:])
    failed = [
        (registered.prompts[k], failure_of(instance, r))
        for k, r in last_try.items()
        if not succeeded(r)
    ]
    untracked, tracking_error = tracking_failures(instance, run_ids)
    return MaterializeSummary(
        model=model,
        partition_keys=[multi_key(m, p) for m, p in registered.partitions],
        run_ids=run_ids,
        success=not failed and all(succeeded(r) for r in model_runs),
        failed=failed,
        failed_jobs=[
            (instance.get_run_by_id(r).job_name, failure_of(instance, r))
            for r in model_runs
            if not succeeded(r)
        ],
        untracked=untracked,
        tracking_error=tracking_error,
    )
