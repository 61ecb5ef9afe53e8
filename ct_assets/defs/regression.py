"""Nightly regression runs on the golden set (``ct_assets/golden/``).

``golden_partitions_sensor`` registers every golden cell (the lake's ``prompts`` table and
the ``models`` / ``prompts`` dynamic partitions), so the cells show in the UI before the first
nightly run. ``golden_regression_schedule`` requests one ``graph_job`` run per cell every
night; ``graph_scores`` then evaluates its ``golden_drift`` check against the cell's
baseline.

Registration: a schedule cannot return ``dynamic_partitions_requests`` (only ``RunRequest``
and ``SkipReason``; dagster#14921, still so in 1.13), and Dagster validates the requested
partition keys against the instance *after* the schedule function returns. Both the sensor
and the schedule therefore register directly through ``register_prompts`` (idempotent: it
adds only what is missing), the same path as ``ct prompts add`` and ``prompt_file_sensor``.
The schedule does it too so that a nightly tick never requests an unknown partition, even
with the sensor stopped.

Both start STOPPED, like the other automation of the project: turn them on in the UI
(Automation) or with ``dagster schedule start golden_regression_schedule``.
"""

import hashlib
from datetime import UTC, datetime

import dagster as dg

from ct_assets.defs.jobs import graph_job
from ct_assets.lib.golden import load_golden
from ct_assets.lib.resources import LakehouseResource
from ct_lake.prompts import register_prompts

GOLDEN_TAGS = {"ct/suite": "golden"}


def _register_golden(config, instance) -> tuple[list, list[str]]:
    """Register every golden cell; return ``(cells, prompt keys that were new)``."""
    cells = load_golden(config)
    new: list[str] = []
    for model in dict.fromkeys(c.model for c in cells):
        texts = [c.prompt for c in cells if c.model == model]
        new += register_prompts(config, texts, [model], instance).new_prompts
    return cells, new


@dg.sensor(
    minimum_interval_seconds=300,
    description="Registers the golden set's model × prompt cells as partitions (and their "
    "prompts in the lake) so the nightly golden_regression_schedule can run them.",
)
def golden_partitions_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource):
    config = lakehouse.config
    cells, new = _register_golden(config, context.instance)
    if not cells:
        return dg.SkipReason(f"no golden set (config `golden:` {config.golden})")
    digest = hashlib.sha256("\n".join(c.partition_key for c in cells).encode()).hexdigest()
    if context.cursor == digest and not new:
        return dg.SkipReason(f"{len(cells)} golden partitions already registered")
    context.update_cursor(digest)
    context.log.info(f"golden partitions: {', '.join(c.partition_key for c in cells)}")
    return dg.SensorResult()


@dg.schedule(
    job=graph_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    description="Every night at 03:00 UTC: one graph_job run per golden cell; graph_scores "
    "compares each graph with its baseline (check golden_drift).",
)
def golden_regression_schedule(context: dg.ScheduleEvaluationContext, lakehouse: LakehouseResource):
    cells, _ = _register_golden(lakehouse.config, context.instance)
    if not cells:
        yield dg.SkipReason("no golden set")
        return
    day = (context.scheduled_execution_time or datetime.now(UTC)).date().isoformat()
    for cell in cells:
        yield dg.RunRequest(
            run_key=f"golden|{day}|{cell.partition_key}",  # one run per cell and night
            partition_key=cell.partition_key,
            tags={**GOLDEN_TAGS, "ct/golden_date": day},
        )
