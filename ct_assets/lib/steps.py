"""What every partitioned asset does around its science: describe, track, report.

A run may cover one partition or a range of them (a single-run backfill: one process, one
model load). For each partition the asset stores one :class:`ct_lake.records.Record`;
:func:`describe` turns a record into Dagster metadata, MLflow params, metrics and artifacts
(the one place that does), and :func:`report` logs each to MLflow (one MLflow run per asset
partition) and folds them into one ``MaterializeResult`` whose metadata shows every partition.
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
from ct_assets.lib.tracking import TRACKING_CHECK, MlflowTracker, TrackingOutcome
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
    wins)."""

    key: str
    record: Record
    checks: dict[str, tuple] = field(default_factory=dict)
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


def report(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    tracker: MlflowTracker,
    results: list[Result],
    *,
    check_names: tuple[str, ...] = (),
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization]:
    """Describe every stored record, log it to MLflow (one run per partition) and yield the
    asset's ``MaterializeResult``. A run over several partitions then yields one
    ``AssetMaterialization`` per partition with that partition's own metadata, so that each
    partition's latest materialization shows its own facts (the result's metadata is a
    table of every partition).

    Checks (``check_names`` plus the tracking check) pass only if they pass for every
    partition of the run; their metadata names the failing partitions. A failing check has
    the worst severity its failing partitions ask for (``Result.checks`` entries of three
    items), ERROR for entries of two, WARN for the tracking check.
    """
    asset = context.asset_key.to_user_string()
    for result in results:
        result.described = describe(result.record, lakehouse.lake)
        result.tracking = tracker.log_partition(
            lakehouse.config,
            asset=asset,
            partition=str(result.key),
            dagster_run_id=context.run_id,
            code_version=CODE_VERSION,
            params=result.described.params,
            metrics=result.described.metrics,
            artifacts=result.described.artifacts,
        )
        if not result.tracking.ok:
            context.log.warning(f"{asset} {result.key}: {result.tracking.error}")
    if len(results) == 1:
        metadata = dict(results[0].described.metadata) | results[0].tracking.metadata()
    else:
        metadata = {"partitions": len(results), "summary": _summary_table(results)}
    checks = []
    for name in (*check_names, TRACKING_CHECK):
        failing = [
            str(r.key)
            for r in results
            if not (r.tracking.ok if name == TRACKING_CHECK else r.checks[name][0])
        ]
        details: dict[str, Any] = {"failing_partitions": failing}
        if len(results) == 1:
            details |= (
                results[0].tracking.metadata()
                if name == TRACKING_CHECK
                else results[0].checks[name][1]
            )
        severity = (
            dg.AssetCheckSeverity.WARN
            if name == TRACKING_CHECK
            else _worst([_severity(r.checks[name]) for r in results if str(r.key) in failing])
        )
        if name != TRACKING_CHECK and len(results) > 1:
            explicit = {
                str(r.key): _severity(r.checks[name]).value
                for r in results
                if str(r.key) in failing and len(r.checks[name]) > 2
            }
            if explicit:
                details["severities"] = dg.MetadataValue.json(explicit)
        checks.append(
            dg.AssetCheckResult(
                check_name=name, passed=not failing, severity=severity, metadata=details
            )
        )
    yield dg.MaterializeResult(metadata=metadata, check_results=checks)
    if len(results) > 1:
        for r in results:
            yield dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=str(r.key),
                metadata=r.described.metadata | r.tracking.metadata(),
            )


def _severity(check: tuple) -> dg.AssetCheckSeverity:
    return check[2] if len(check) > 2 and check[2] is not None else dg.AssetCheckSeverity.ERROR


def _worst(severities: list[dg.AssetCheckSeverity]) -> dg.AssetCheckSeverity:
    if not severities or dg.AssetCheckSeverity.ERROR in severities:
        return dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckSeverity.WARN


def _summary_table(results: list[Result]) -> dg.MetadataValue:
    """One row per partition with its scalar metadata and its MLflow run."""
    first = results[0].described.metadata
    columns = [k for k, v in first.items() if isinstance(v, int | float | str)]
    lines = ["| partition | " + " | ".join(columns) + " | mlflow |"]
    lines.append("|" + "---|" * (len(columns) + 2))
    for r in results:
        cells = [_cell(r.described.metadata.get(c)) for c in columns]
        status = r.tracking.run_id if r.tracking.ok else "FAILED"
        lines.append(f"| {r.key} | " + " | ".join(cells) + f" | {status} |")
    return dg.MetadataValue.md("\n".join(lines))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(map(str, value[:5])) + (" ..." if len(value) > 5 else "")
    return str(value).replace("|", "\\|")
