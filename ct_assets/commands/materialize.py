"""``ct materialize``: the whole asset graph for a model and a prompt set.

In the ``local`` profile the runs execute in this process, with a progress bar over asset
partitions (Dagster's own log and the engine's progress with ``--verbose``), and end with a
table of the graphs; in ``team`` they are submitted to the Dagster webserver
(``$CT_DAGSTER_URL``), queued, and their steps run on the Celery workers; the command waits
for them.
"""

from __future__ import annotations

import argparse
import sys
import time

from ct_assets.commands._common import add_config_flag, instance_for, load_config_of

NAME = "materialize"
HELP = "materialize every asset for a model and its prompts (runs show in the Dagster UI)"
# The exit status when every graph is in the lake but MLflow did not log some of them (it was
# unreachable or slow): the run is usable, its tracking is incomplete. 1 is a failed graph or
# run, 2 a mistake in the arguments or the config, 130/143 Ctrl-C/SIGTERM.
UNTRACKED = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "exit status: 0 done; 1 a graph or a run failed (each failed prompt is named); 2 a "
        f"mistake in the arguments or the config; {UNTRACKED} every graph is in the lake but "
        "MLflow did not log some (unreachable or slow); 130/143 interrupted (Ctrl-C/SIGTERM)"
    )
    p.add_argument("--model", help="a model of the config (default: the first)")
    p.add_argument(
        "--prompt-set", action="append", help="a prompt set of the config (default: all)"
    )
    p.add_argument("--prompt", action="append", help="also this prompt text (repeatable)")
    p.add_argument(
        "--prompts-file", help="also one prompt per line of this file (blank lines skipped)"
    )
    p.add_argument(
        "--golden",
        action="store_true",
        help="also the golden set's prompts of the model (so that golden_drift compares them)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show Dagster's event log and the engine's progress instead of one progress bar",
    )
    p.add_argument(
        "--partitions-per-run",
        type=int,
        default=5,
        help="team profile: prompts per graph run (runs share the workers; default 5)",
    )
    add_config_flag(p)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config_of(args, model=args.model or "")
        from ct_assets.lib.profiles import current_profile

        model = args.model or config.models[0].name
        # A prompts file replaces the config's sets, unless sets are named too.
        sets = args.prompt_set or ([] if args.prompts_file else list(config.prompt_sets))
        unknown = [s for s in sets if s not in config.prompt_sets]
        if unknown:
            raise ValueError(
                f"unknown prompt sets {unknown}; the config has {list(config.prompt_sets)}"
            )
        prompts = [t for s in sets for t in config.prompt_sets[s]]
        prompts += _read_prompts(args.prompts_file) if args.prompts_file else []
        if any(not text.strip() for text in args.prompt or []):
            raise ValueError("the prompt is empty: --prompt needs some text")
        prompts += args.prompt or []
        if args.golden:
            from ct_assets.lib.golden import load_golden

            prompts += [cell.prompt for cell in load_golden(config, model)]
        prompts = list(dict.fromkeys(prompts))
        if not prompts:
            raise ValueError("no prompts: add a prompt set to the config or pass --prompt")
        if args.partitions_per_run < 1:
            raise ValueError("--partitions-per-run must be at least 1")
        instance = instance_for(config)
        start = time.perf_counter()
        if current_profile() == "local":
            from ct_assets.lib.runner import reap_dead_runs

            for line in reap_dead_runs(instance):
                print(f"ct materialize: cleaned up {line}", flush=True)
            summary = _interruptible(
                lambda: _materialize_here(config, model, prompts, instance, verbose=args.verbose)
            )
        else:
            from ct_assets.lib.runner import materialize_on_workers

            summary = _interruptible(
                lambda: materialize_on_workers(
                    config,
                    model,
                    prompts,
                    instance,
                    dagster_url=_dagster_url(),
                    partitions_per_run=args.partitions_per_run,
                    progress=lambda line: print(line, flush=True),
                )
            )
    except ValueError as err:
        print(f"ct materialize: error: {err}", file=sys.stderr)
        return 2
    except _Interrupted as stop:
        _stop(instance, stop.signum)
    elapsed = time.perf_counter() - start
    print(graphs_table(config, model, prompts))
    print(f"\n{_status(summary, model)} in {elapsed:.1f} s")
    print(f"lake: {config.lake}")
    if current_profile() != "local":
        return exit_code(summary)
    print("\nnext:")
    print('  ct sql "SELECT * FROM graph_overview"           # query the lake')
    print('  ct sql "SELECT layer, feature, label FROM feature_cards LIMIT 20"  # what features do')
    print("  make viewer    # graphs and feature cards on http://127.0.0.1:8041")
    print("  make dagster   # Dagster UI on http://127.0.0.1:3000 (runs, assets, metadata)")
    print(
        "  make mlflow    # MLflow UI: http://127.0.0.1:5000/#/experiments?workflowType="
        "machine_learning (one run per graph)"
    )
    return exit_code(summary)


def exit_code(summary) -> int:
    """0: done; 1: a run or a graph failed; :data:`UNTRACKED`: every graph is in the lake but
    MLflow did not log some of them."""
    if not summary.success:
        return 1
    return UNTRACKED if summary.untracked else 0


class _Interrupted(BaseException):
    """SIGINT or SIGTERM reached ``ct materialize``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interruptible(work):
    """``work()`` in a thread, while this (the main) thread waits for it and answers SIGINT
    and SIGTERM by raising :class:`_Interrupted` at once. Dagster, run in the main thread,
    would take both signals for itself and act on them only between steps (never while a
    step waits for a pool slot), then go on with the next run."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only it gets signals
        return work()
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as err:  # handed to the main thread
            outcome["error"] = err

    def interrupt(signum, frame) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the cleanup
            signal.signal(sig, signal.SIG_IGN)
        raise _Interrupted(signum)

    thread = threading.Thread(target=target, name="ct-materialize", daemon=True)
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _stop(instance, signum: int):
    """Cancel the runs this process is running (freeing their pool slots), say so in one
    line and exit at once with 128 + the signal's number: no further run starts, and the
    lake keeps what was committed (every partition write is one atomic commit)."""
    import os
    import signal

    import dagster as dg

    from ct_assets.lib.profiles import current_profile
    from ct_assets.lib.runner import PID_TAG, end_run

    name = signal.Signals(signum).name
    ended = []
    if current_profile() == "local":
        mine = dg.RunsFilter(
            statuses=[
                dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
            ],
            tags={PID_TAG: str(os.getpid())},
        )
        for run in instance.get_runs(mine):
            end_run(instance, run, f"ct materialize was interrupted ({name})", canceled=True)
            ended.append(f"{run.job_name} run {run.run_id[:8]}")
        what = f"canceled {', '.join(ended)}" if ended else "no run was running"
    else:
        what = "the submitted runs go on: cancel them in the Dagster UI"
    sys.stdout.flush()
    print(
        f"\nct materialize: interrupted by {name}: {what}; the lake keeps every partition "
        "committed before",
        file=sys.stderr,
        flush=True,
    )
    os._exit(128 + signum)  # now: the run's thread is mid-step and would go on otherwise


def _materialize_here(config, model: str, prompts: list[str], instance, *, verbose: bool):
    """:func:`ct_assets.lib.runner.materialize` in this process, under a progress bar over the
    asset partitions it stores (Dagster's event log and the engine's own progress instead
    with ``verbose``)."""
    from tqdm.auto import tqdm

    from ct_assets.lib.context import model_prompt
    from ct_assets.lib.resources import EngineResource
    from ct_assets.lib.runner import materialize, planned_steps, project_definitions
    from ct_assets.lib.steps import short_prompt
    from ct_lake.keys import prompt_key

    if verbose:
        return materialize(config, model, prompts, instance, raise_on_error=False)
    _quiet_libraries()
    texts = {prompt_key(text): text for text in prompts}
    bar = tqdm(
        total=planned_steps(project_definitions(), len(texts)),
        desc=f"materialize {model}",
        unit="asset",
        file=sys.stderr,
        dynamic_ncols=True,
    )

    def stored(asset: str, partition: str | None) -> None:
        about = ""
        if partition and "|" in partition:
            about = " · " + short_prompt(texts.get(model_prompt(partition)[1], ""), 32)
        bar.set_postfix_str(asset + about, refresh=False)
        bar.update(1)

    try:
        return materialize(
            config,
            model,
            prompts,
            instance,
            raise_on_error=False,
            engine=EngineResource(verbose=False),
            on_materialized=stored,
            quiet=True,
        )
    finally:
        bar.close()


def _quiet_libraries() -> None:
    """Progress bars and INFO lines of the libraries under the assets, which would break the
    progress bar's line: the model loader's bars, MLflow's database setup notes."""
    import os

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported


def _status(summary, model: str) -> str:
    """The summary's lines before the lake's: what MLflow did not track, then done, or what
    failed (each failed prompt on a line of its own, with the step and the error)."""
    from ct_assets.lib.steps import short_prompt

    n = len(summary.partition_keys)
    untracked = ""
    if summary.untracked:
        untracked = (
            f"MLflow: {summary.untracked} asset partitions not tracked (the lake has them; "
            f"exit {UNTRACKED}): {summary.tracking_error}\n"
        )
    if summary.success:
        return f"{untracked}done: {n} graphs of {model}"
    lines = [f"failed: {short_prompt(text, 60)!r}: {why}" for text, why in summary.failed]
    lines += [f"failed: {job} of {model}: {why}" for job, why in summary.failed_jobs]
    if summary.failed:
        lines.append(f"FAILED: {len(summary.failed)} of {n} graphs of {model} (the others done)")
    else:
        lines.append(f"FAILED: {n} graphs of {model} (see the Dagster UI for the failing step)")
    return untracked + "\n".join(lines)


_COLUMNS = (
    ("prompt_text", "prompt", 44),
    ("top_target", "top target", 12),
    ("replacement_score", "replacement", 11),
    ("completeness_score", "completeness", 12),
    ("pruned_replacement_score", "pruned repl.", 12),
    ("n_nodes_kept", "nodes kept", 10),
    ("total_s", "attribution s", 13),
)


def graphs_table(config, model: str, prompts: list[str]) -> str:
    """The graphs of ``prompts`` as the lake now holds them: one line each (prompt, top
    target, scores, kept nodes, attribution time); a prompt without a graph shows a dash."""
    from ct_assets.lib.steps import short_prompt
    from ct_lake.catalog import connect
    from ct_lake.keys import prompt_key

    keys = [prompt_key(text) for text in prompts]
    columns = ", ".join(c for c, _, _ in _COLUMNS)
    try:
        query = f"SELECT prompt, {columns} FROM graph_overview WHERE model = ?"
        rows = connect(config.lake, for_query=query).execute(query, [model]).fetchall()
    except Exception as err:  # the table is a summary: a lake that cannot be read says why
        return f"(no table of the graphs: {type(err).__name__}: {err})"
    found = {row[0]: row[1:] for row in rows}
    lines = ["  ".join(f"{title:<{width}}" for _, title, width in _COLUMNS).rstrip()]
    for key, text in zip(keys, prompts, strict=True):
        values = found.get(key)
        cells = [short_prompt(text, _COLUMNS[0][2])]
        for i, (_, _, width) in enumerate(_COLUMNS[1:], start=1):
            value = None if values is None else values[i]
            cells.append(_cell(value, width))
        widths = [w for _, _, w in _COLUMNS]
        lines.append("  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cell(value, width: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)[:width]


def _read_prompts(path: str) -> list[str]:
    try:
        lines = open(path, encoding="utf-8").read().splitlines()  # noqa: SIM115
    except OSError as err:
        raise ValueError(f"cannot read the prompts file {path}: {err.strerror}") from None
    return [line.strip() for line in lines if line.strip()]


def _dagster_url() -> str:
    import os

    from ct_lake.config import DAGSTER_URL_ENV

    url = os.environ.get(DAGSTER_URL_ENV)
    if not url:
        raise ValueError(f"set {DAGSTER_URL_ENV} to the Dagster webserver (scripts/services.sh up)")
    return url
