"""``ct materialize`` stopped from outside: Ctrl-C and SIGTERM end it within seconds with one
line and exit 130/143, without starting another run; SIGKILL (as the out-of-memory killer
sends) leaves a run that the next ``ct materialize`` finds dead, ends and frees the pool slot
of, then completes.

Each case starts the real command on the tiny lakehouse model and signals it once a step holds
the ``gpu`` pool's slot (read from the Dagster instance, as the UI's pool page shows it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.assets.conftest import write_config
from tests.bad_inputs.harness import ct_env

START_TIMEOUT_S = 180  # interpreter start, imports and the first step on a loaded machine


def start(folder: Path, config: Path, name: str) -> tuple[subprocess.Popen, Path, Path]:
    out, err = folder / f"{name}.out", folder / f"{name}.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ct_cli", "materialize", "--config", str(config)],
            cwd=folder,
            env=ct_env(folder),
            stdout=stdout,
            stderr=stderr,
        )
    return proc, out, err


def instance(folder: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(folder / "dagster_home"))


def gpu_holder(folder: Path) -> str | None:
    """The run id holding the ``gpu`` pool's slot, if any."""
    if not (folder / "dagster_home" / "dagster.yaml").exists():
        return None
    try:
        with instance(folder) as found:
            claimed = found.event_log_storage.get_concurrency_info("gpu").claimed_slots
    except Exception:  # the storage is being created
        return None
    return claimed[0].run_id if claimed else None


def wait_for_gpu_step(folder: Path, proc: subprocess.Popen, err: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while (run_id := gpu_holder(folder)) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no step took the gpu slot (exit {proc.poll()}):\n{err.read_text()}")
        time.sleep(0.3)
    return run_id


@pytest.fixture
def config(tmp_path, tiny_lakehouse_files) -> Path:
    # MLflow's first use (its sqlite tables) is slow on a loaded machine: a rerun that timed
    # out on it would exit 3 (not tracked), which is not what these tests look at
    mlflow = {"tracking_uri": "sqlite:///mlflow.db", "experiment": "test", "timeout_s": 120}
    return write_config(tmp_path, tiny_lakehouse_files, mlflow=mlflow)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_materialize_within_seconds(tmp_path, config, sig):
    proc, out, err = start(tmp_path, config, "run")
    run_id = wait_for_gpu_step(tmp_path, proc, err)
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running 15 s after {sig.name}:\n{err.read_text()}")
    assert time.monotonic() - sent < 10
    assert code == 128 + sig, err.read_text()
    shown = out.read_text() + err.read_text()
    assert "Traceback" not in shown, shown
    last = [line for line in err.read_text().splitlines() if line.strip()][-1]
    assert re.fullmatch(
        rf"ct materialize: interrupted by {sig.name}: canceled \w+_job run {run_id[:8]}; "
        r"the lake keeps every partition committed before",
        last,
    ), shown
    with instance(tmp_path) as found:
        assert found.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
        assert found.event_log_storage.get_concurrency_info("gpu").claimed_slots == []
        # no run started after the signal (census_job would build feature_census from a
        # partial lake)
        assert [r.run_id for r in found.get_runs()][0] == run_id
    assert not (tmp_path / "lake" / "feature_census").exists()


@pytest.mark.slow
def test_a_killed_materialize_is_cleaned_up_by_the_next(tmp_path, config):
    proc, _, err = start(tmp_path, config, "killed")
    run_id = wait_for_gpu_step(tmp_path, proc, err)
    killed = proc.pid
    os.kill(killed, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    with instance(tmp_path) as found:
        left = found.get_run_by_id(run_id)
        assert left.status == dg.DagsterRunStatus.STARTED  # left behind, holding the slot

    proc, out, err = start(tmp_path, config, "rerun")
    try:
        code = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the rerun did not finish (blocked by the dead run?):\n{err.read_text()}")
    shown = out.read_text() + err.read_text()
    assert code == 0, shown
    cleaned = [line for line in out.read_text().splitlines() if "cleaned up" in line]
    assert cleaned == [
        f"ct materialize: cleaned up {left.job_name} run {run_id[:8]}: its process "
        f"(pid {killed}) is gone: marked failed, freed its slot in pool gpu"
    ], shown
    assert "done: 2 graphs of tiny" in shown
    with instance(tmp_path) as found:
        assert found.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        assert found.event_log_storage.get_concurrency_info("gpu").claimed_slots == []
