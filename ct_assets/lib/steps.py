"""What every partitioned asset does around its science: loop, track, report.

A run may cover one partition or a range of them (a single-run backfill: one process, one
model load). For each partition key the asset computes a :class:`PartitionOutcome`; this
module logs each to MLflow (one MLflow run per asset partition) and folds them into one
``MaterializeResult`` whose metadata shows every partition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import dagster as dg

from ct_assets.lib.tracking import TRACKING_CHECK, MlflowTracker, TrackingOutcome

try:
    CODE_VERSION = version("ct-lakehouse")
except PackageNotFoundError:  # running from a checkout without installing
    CODE_VERSION = "0+unknown"


@dataclass
class PartitionOutcome:
    """One partition's result: lake paths, user-facing metadata and what MLflow gets."""

    key: str
    metadata: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)
    # check name -> (passed, metadata) or (passed, metadata, severity): the severity a failure
    # gets (default ERROR; with several partitions the worst failing one wins)
    checks: dict[str, tuple] = field(default_factory=dict)
    tracking: TrackingOutcome | None = None


def tracking_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        TRACKING_CHECK, asset=asset, description="the partition's MLflow run was logged"
    )


def finish(
    context: dg.AssetExecutionContext,
    tracker: MlflowTracker,
    outcomes: list[PartitionOutcome],
    *,
    check_names: tuple[str, ...] = (),
) -> dg.MaterializeResult:
    """Log every outcome to MLflow and build the asset's ``MaterializeResult``.

    Checks (``check_names`` plus the tracking check) pass only if they pass for every
    partition of the run; their metadata names the failing partitions. A failing check has
    the worst severity its failing partitions ask for (``PartitionOutcome.checks`` entries
    of three items), ERROR for entries of two, WARN for the tracking check.
    """
    asset = context.asset_key.to_user_string()
    for outcome in outcomes:
        outcome.tracking = tracker.log_partition(
            asset=asset,
            partition=outcome.key,
            dagster_run_id=context.run_id,
            code_version=CODE_VERSION,
            params=outcome.params,
            metrics=outcome.metrics,
            artifacts=outcome.artifacts,
        )
        if not outcome.tracking.ok:
            context.log.warning(f"{asset} {outcome.key}: {outcome.tracking.error}")
    if len(outcomes) == 1:
        metadata = dict(outcomes[0].metadata) | outcomes[0].tracking.metadata()
    else:
        metadata = {"partitions": len(outcomes), "summary": _summary_table(outcomes)}
    checks = []
    for name in (*check_names, TRACKING_CHECK):
        failing = [
            o.key
            for o in outcomes
            if not (o.tracking.ok if name == TRACKING_CHECK else o.checks[name][0])
        ]
        details: dict[str, Any] = {"failing_partitions": failing}
        if len(outcomes) == 1:
            details |= (
                outcomes[0].tracking.metadata()
                if name == TRACKING_CHECK
                else outcomes[0].checks[name][1]
            )
        severity = (
            dg.AssetCheckSeverity.WARN
            if name == TRACKING_CHECK
            else _worst([_severity(o.checks[name]) for o in outcomes if o.key in failing])
        )
        if name != TRACKING_CHECK and len(outcomes) > 1:
            explicit = {
                o.key: _severity(o.checks[name]).value
                for o in outcomes
                if o.key in failing and len(o.checks[name]) > 2
            }
            if explicit:
                details["severities"] = dg.MetadataValue.json(explicit)
        checks.append(
            dg.AssetCheckResult(
                check_name=name, passed=not failing, severity=severity, metadata=details
            )
        )
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


def _severity(check: tuple) -> dg.AssetCheckSeverity:
    return check[2] if len(check) > 2 and check[2] is not None else dg.AssetCheckSeverity.ERROR


def _worst(severities: list[dg.AssetCheckSeverity]) -> dg.AssetCheckSeverity:
    if not severities or dg.AssetCheckSeverity.ERROR in severities:
        return dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckSeverity.WARN


def _summary_table(outcomes: list[PartitionOutcome]) -> dg.MetadataValue:
    columns = [k for k, v in outcomes[0].metadata.items() if isinstance(v, (int, float, str))]
    lines = ["| partition | " + " | ".join(columns) + " | mlflow |"]
    lines.append("|" + "---|" * (len(columns) + 2))
    for o in outcomes:
        cells = [_cell(o.metadata.get(c)) for c in columns]
        status = o.tracking.run_id if o.tracking.ok else "FAILED"
        lines.append(f"| {o.key} | " + " | ".join(cells) + f" | {status} |")
    return dg.MetadataValue.md("\n".join(lines))


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
