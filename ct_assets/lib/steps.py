"""What every partitioned asset does around its science: describe, track, report.

A run may cover one partition or a range of them (a single-run backfill: one process, one
model load). For each partition the asset stores one :class:`ct_lake.records.Record`;
:func:`describe` turns a record into Dagster metadata, MLflow params, metrics and artifacts
(the one place that does), and :func:`report` logs each to its graph's MLflow run
(:func:`tracked_run`) and gives each partition's materialization its own metadata.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa

from ct_assets.lib.plots import markdown_image
from ct_assets.lib.resources import LakehouseResource
from ct_assets.lib.tracking import (
    TRACKING_CHECK,
    MlflowTracker,
    TrackedRun,
    TrackingOutcome,
    run_key,
)
from ct_lake.config import LakehouseConfig
from ct_lake.records import Record
from ct_lake.tables import METRIC, PARAM, PREVIEWS, role

try:
    CODE_VERSION = version("ct-lakehouse")
except PackageNotFoundError:  # running from a checkout without installing
    CODE_VERSION = "0+unknown"


@dataclass
class Result:
    """One partition's result: its lake record and its checks.

    ``checks``: check name -> ``(passed, metadata)`` or ``(passed, metadata, severity)``: the
    severity a failure gets (default ERROR; with several partitions the worst failing one
    wins). A check left out was not run for this partition."""

    key: str
    record: Record
    checks: dict[str, tuple] = field(default_factory=dict)
    text: str | None = None  # the prompt's text, for a model × prompt partition
    described: Described | None = None  # set by report()
    tracking: TrackingOutcome | None = None


@dataclass
class Described:
    """What a record shows: Dagster metadata, MLflow params, metrics and artifact files."""

    metadata: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, float]
    artifacts: list[Path]


def describe(record: Record, lake) -> Described:
    """Dagster metadata, MLflow params, metrics and artifacts of ``record``, by the roles of
    ``ct_lake.tables.ROLES``: a param or a metric shows in both Dagster and MLflow, metadata
    in Dagster only, other facts stay in the lake. A mapping fact is JSON in Dagster and one
    MLflow entry per key; a list is JSON in Dagster and a comma-separated param. Files show
    their location in the lake, images inline; the tables of ``ct_lake.tables.PREVIEWS``
    show their first rows."""
    metadata: dict[str, Any] = {}
    params: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    for fact, value in record.facts.items():
        r = role(fact)
        if r is None or value is None:
            continue
        name = r.name if r.name and "{}" not in r.name else fact
        if isinstance(value, Mapping) or _is_pairs(value):
            mapping = {str(k): v for k, v in dict(value).items()}
            metadata[name] = dg.MetadataValue.json(mapping)
            pattern = r.name or f"{fact}_{{}}"
            for key, v in mapping.items():
                if r.kind == METRIC:
                    metrics[pattern.format(key)] = float(v)
                elif r.kind == PARAM:
                    params[pattern.format(key)] = v
            continue
        if isinstance(value, list | tuple):
            metadata[name] = dg.MetadataValue.json(list(value))
            if r.kind == PARAM:
                params[name] = ", ".join(map(str, value))
            continue
        metadata[name] = value.isoformat() if isinstance(value, datetime) else value
        if r.kind == PARAM:
            params[name] = value
        elif r.kind == METRIC:
            metrics[name] = float(value)
    artifacts = []
    for out in record.files:
        keys = record.keys if out.keys is None else out.keys
        metadata[out.label] = dg.MetadataValue.path(lake.file_uri(out.kind, out.name, **keys))
        if out.image or out.artifact:
            local = lake.local_file(out.kind, out.name, **keys)
            if out.image:
                metadata[out.image] = dg.MetadataValue.md(markdown_image(local, out.image))
            if out.artifact:
                artifacts.append(local)
    for out in record.tables:
        if out.name in PREVIEWS:
            label, columns, n = PREVIEWS[out.name]
            metadata[label] = dg.MetadataValue.md(_preview(out.rows, columns, n))
    return Described(metadata, params, metrics, artifacts)


def _is_pairs(value) -> bool:
    """An Arrow map as Python: a list of ``(key, value)`` tuples."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, tuple) and len(v) == 2 for v in value)
    )


def _preview(rows, columns: tuple[str, ...], n: int) -> str:
    """The first ``n`` rows of ``rows`` (dicts or an Arrow table) as a Markdown table."""
    if isinstance(rows, pa.Table):
        rows = rows.slice(0, n).select(list(columns)).to_pylist()
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in list(rows)[:n]:
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def tracking_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        TRACKING_CHECK, asset=asset, description="the partition's MLflow run was logged"
    )


def tracked_run(
    context: dg.AssetExecutionContext, config: LakehouseConfig, result: Result
) -> TrackedRun:
    """The MLflow run that ``result``'s partition logs into in this Dagster run: one per graph
    (model × prompt), named by the model and the prompt's text, or one per model for a
    model-level partition, named by the model and the job."""
    from ct_assets.lib.context import model_prompt

    partition = str(result.key)
    tags = {
        "dagster.run_id": context.run.run_id,
        "dagster.run_url": f"{config.dagster_url}/runs/{context.run.run_id}",
        "dagster.job": context.job_name,
        "dagster.partition_key": partition,
        "dagster.code_version": CODE_VERSION,
    }
    if isinstance(result.key, dg.MultiPartitionKey):
        model, prompt = model_prompt(result.key)
        entry = config.model(model)
        text = result.text or ""
        tags |= {"ct.model": model, "ct.prompt_key": prompt, "ct.prompt": text[:_TAG_LENGTH]}
        params = {"model": entry.model, "transcoders": entry.transcoders, "prompt_text": text}
        name = f"{model} · {short_prompt(text)}"
    else:
        model = partition
        entry = config.model(model)
        tags |= {"ct.model": model}
        params = {"model": entry.model, "transcoders": entry.transcoders}
        name = f"{model} · {context.job_name}"
    return TrackedRun(run_key(context.run.run_id, partition), name, tags, params)


_TAG_LENGTH = 250  # MLflow's UI shows a tag's value on one line


def short_prompt(text: str, width: int = 48) -> str:
    """``text`` on one line, cut at a word to at most ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    cut = flat[: width - 1].rsplit(" ", 1)[0] if " " in flat[: width - 1] else flat[: width - 1]
    return cut + "…"


def report(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    tracker: MlflowTracker,
    results: list[Result],
    *,
    check_names: tuple[str, ...] = (),
) -> Iterator[dg.MaterializeResult]:
    """Describe every stored record, log it to its graph's MLflow run and yield the asset's
    ``MaterializeResult``. Each partition's materialization carries that partition's own
    metadata (its facts, the prompt's text, the link to its MLflow run), also when the run
    covers a range of partitions.

    A check runs over the partitions its ``Result.checks`` entry covers: it passes only if it
    passes for each of them, its metadata names the failing ones and a failing check has the
    worst severity they ask for (entries of three items; ERROR for two, WARN for the tracking
    check). A check no partition of the run has an entry for is not reported: Dagster shows
    it skipped.
    """
    asset = context.asset_key.to_user_string()
    config = lakehouse.config
    for result in results:
        result.described = describe(result.record, lakehouse.lake)
        result.tracking = tracker.log_partition(
            config,
            tracked_run(context, config, result),
            asset=asset,
            params=result.described.params,
            metrics=result.described.metrics,
            artifacts=result.described.artifacts,
        )
        if not result.tracking.ok:
            context.log.warning(f"{asset} {result.key}: {result.tracking.error}")
        metadata = result.described.metadata | result.tracking.metadata()
        if result.text is not None:
            metadata["prompt_text"] = dg.MetadataValue.text(result.text)
        context.add_asset_metadata(metadata, partition_key=str(result.key))
    checks = []
    for name in (*check_names, TRACKING_CHECK):
        if name == TRACKING_CHECK:
            outcomes = {str(r.key): (r.tracking.ok, r.tracking.metadata()) for r in results}
        else:
            outcomes = {str(r.key): r.checks[name] for r in results if name in r.checks}
        if not outcomes:
            continue
        failing = [key for key, outcome in outcomes.items() if not outcome[0]]
        details: dict[str, Any] = {"failing_partitions": failing}
        if len(outcomes) == 1:
            details |= next(iter(outcomes.values()))[1]
        else:
            details["partitions"] = len(outcomes)
        if len(outcomes) < len(results):
            details["not_checked"] = dg.MetadataValue.json(
                [str(r.key) for r in results if str(r.key) not in outcomes]
            )
        if name == TRACKING_CHECK:
            severity = dg.AssetCheckSeverity.WARN
        else:
            severity = _worst([_severity(outcomes[key]) for key in failing])
            explicit = {
                key: _severity(outcomes[key]).value
                for key in failing
                if len(outcomes[key]) > 2 and len(outcomes) > 1
            }
            if explicit:
                details["severities"] = dg.MetadataValue.json(explicit)
        checks.append(
            dg.AssetCheckResult(
                check_name=name, passed=not failing, severity=severity, metadata=details
            )
        )
    yield dg.MaterializeResult(check_results=checks)


def _severity(check: tuple) -> dg.AssetCheckSeverity:
    return check[2] if len(check) > 2 and check[2] is not None else dg.AssetCheckSeverity.ERROR


def _worst(severities: list[dg.AssetCheckSeverity]) -> dg.AssetCheckSeverity:
    if not severities or dg.AssetCheckSeverity.ERROR in severities:
        return dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckSeverity.WARN


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(map(str, value[:5])) + (" ..." if len(value) > 5 else "")
    return str(value).replace("|", "\\|")
