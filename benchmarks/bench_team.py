"""The team profile against the local one: 20 toy-world prompts with 1 and 2 Celery workers.

Starts the team profile's services with ``scripts/services.sh`` in a temporary folder on free
ports, materializes the same 20 prompts (``ct materialize --prompts-file``) in the local
profile (one process, in-process executor), then in the team profile with one worker and
with two, and writes ``benchmarks/results/team.md``: wall times, and per step the time from
the executor's submission to the step's start on a worker (Celery's dispatch) and each asset's
step time in both executors, read from Dagster's event logs. The machine's load is recorded
next to the numbers. Run: ``.venv/bin/python benchmarks/bench_team.py`` (about 10 minutes).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' services helper
CT = str(Path(sys.executable).with_name("ct"))
RESULTS = REPO / "benchmarks" / "results" / "team.md"
SUBMIT_PREFIX = "Submitting the Celery task of step"


def prompts(n: int = 20) -> list[str]:
    from ct_engine.toyworld.default_model import load_world
    from ct_engine.toyworld.ground_truth import sample_prompt_texts

    return sample_prompt_texts(load_world(), n)


def timed_materialize(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([CT, "materialize", *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ct materialize failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def step_stats(instance, since: float) -> dict:
    """Per step of the graph runs created after ``since``: dispatch (submit -> start) and, by
    asset, the step's duration (start -> success) per graph it materialized."""
    import dagster as dg

    dispatch, duration = [], defaultdict(list)
    runs = [
        r
        for r in instance.get_runs(filters=dg.RunsFilter(created_after=_dt(since)))
        if r.job_name == "graph_job"
    ]
    for run in runs:
        submitted, started, graphs = {}, {}, defaultdict(int)
        for record in instance.all_logs(run.run_id):
            event, t = record.dagster_event, record.timestamp
            message = record.user_message or ""
            if message.startswith(SUBMIT_PREFIX) and record.step_key:
                submitted[record.step_key] = t
            if event is None or not event.step_key:
                continue
            if event.event_type_value in ("STEP_START", "STEP_RESTARTED"):
                started[event.step_key] = t
                if event.step_key in submitted:
                    dispatch.append(t - submitted.pop(event.step_key))
            elif event.event_type_value == "ASSET_MATERIALIZATION":
                graphs[event.step_key] += 1
            elif event.event_type_value == "STEP_SUCCESS":
                per_graph = (t - started[event.step_key]) / max(1, graphs[event.step_key])
                duration[event.step_key].append(per_graph)
    return {
        "runs": len(runs),
        "dispatch": dispatch,
        "duration": dict(duration),
    }


def _dt(timestamp: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC)


def _mean(xs) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--partitions-per-run", type=int, default=5)
    args = parser.parse_args()
    texts = prompts(args.prompts)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-team-"))
    prompts_file = work / "prompts.txt"
    prompts_file.write_text("\n".join(texts) + "\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CT_", "MLFLOW_"))}
    base.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true")

    # The local profile: one process, a local lake, sqlite MLflow.
    local_env = dict(
        base,
        DAGSTER_HOME=str(work / "local-dagster"),
        CT_LAKE=str(work / "local-lake"),
        CT_MLFLOW_TRACKING_URI=f"sqlite:///{work / 'local-mlflow.db'}",
    )
    Path(local_env["DAGSTER_HOME"]).mkdir()
    since = time.time()
    local_s = timed_materialize(["--prompts-file", str(prompts_file)], local_env)
    import dagster as dg

    with dg.DagsterInstance.from_config(local_env["DAGSTER_HOME"]) as instance:
        local_stats = step_stats(instance, since)

    # The team profile: services on free ports in a temporary folder (the tests' helper).
    from tests.services import TeamServices

    svc = TeamServices.fresh(workers=1)
    team = {}
    try:
        svc.up()
        team_env = dict(base, **svc.env())
        # A first command registers the model's assets and the experiment for both timings.
        timed_materialize(["--prompt", texts[0], "--prompt-set", "demo"], team_env)
        for workers in (1, 2):
            if workers == 2:
                svc.run("down", "workers")
                svc.workers = 2
                svc.up("workers")
            since = time.time()
            wall = timed_materialize(
                [
                    "--prompts-file",
                    str(prompts_file),
                    "--partitions-per-run",
                    str(args.partitions_per_run),
                ],
                team_env,
            )
            for name, value in team_env.items():
                os.environ[name] = value
            with dg.DagsterInstance.from_config(team_env["DAGSTER_HOME"]) as instance:
                team[workers] = {"wall": wall, **step_stats(instance, since)}
    finally:
        svc.close()
    load_after = os.getloadavg()
    write(texts, args.partitions_per_run, local_s, local_stats, team, load_before, load_after)


def write(texts, per_run, local_s, local_stats, team, load_before, load_after) -> None:
    assets = sorted(local_stats["duration"])
    n = len(texts)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    local_runs = local_stats["runs"]
    lines = [
        "# The team profile: Celery workers against the in-process executor",
        "",
        f"Generated by `benchmarks/bench_team.py` on {when}: {n} toy-world prompts, "
        f"`ct materialize --prompts-file` (graph runs of {per_run} prompts in the team "
        "profile), services from `scripts/services.sh` on this machine "
        f"({os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}). Load average (1, 5, 15 min) before: "
        f"{', '.join(f'{x:.2f}' for x in load_before)}; after: "
        f"{', '.join(f'{x:.2f}' for x in load_after)}.",
        "",
        "| profile | workers | wall s | graphs/min | graph runs | dispatch s |",
        "|---|---:|---:|---:|---:|---:|",
        f"| local (in-process) | – | {local_s:.1f} | {60 * n / local_s:.1f} | {local_runs} | – |",
    ]
    for workers, stats in sorted(team.items()):
        lines.append(
            f"| team (Celery) | {workers} | {stats['wall']:.1f} | {60 * n / stats['wall']:.1f} "
            f"| {stats['runs']} | {_mean(stats['dispatch']):.2f} |"
        )
    lines += [
        "",
        "Dispatch, per step (mean): from the executor's submission of the step's Celery task "
        "to the step's start on a worker: waiting for a free worker, then the worker's setup "
        "(the job's code and execution plan, resources, the step's first events).",
        "",
        "Step time per graph, by asset (s: STEP_START → STEP_SUCCESS divided by the graphs the "
        "step materialized; mean over the steps):",
        "",
        "| asset | local | team, 1 worker | team, 2 workers |",
        "|---|---:|---:|---:|",
    ]
    for asset in assets:
        row = [f"{_mean(local_stats['duration'][asset]):.2f}"]
        row += [f"{_mean(team[w]['duration'].get(asset, [])):.2f}" for w in sorted(team)]
        lines.append(f"| {asset} | " + " | ".join(row) + " |")
    RESULTS.write_text("\n".join(lines) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
