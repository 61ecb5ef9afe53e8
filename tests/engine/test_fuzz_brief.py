"""A brief run of the readers' coverage-guided fuzzer (``fuzz/fuzz_readers.py``): each target
replays its committed corpus (valid files, damaged ones and every input a longer run found) and
then mutates for a few hundred runs with a fixed seed. Any exception but the documented user
errors fails the test with the fuzzer's report."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "fuzz" / "fuzz_readers.py"
TARGETS = ("pt", "transcoder")


def _rss_limit_mb(allowance_mb: int = 2048) -> int:
    """libFuzzer's memory limit for a child of this process: ``allowance_mb`` above the peak
    RSS the child inherits. Linux carries a process's peak RSS across ``execve``, so a fuzzer
    started from a long pytest session reports that session's peak before its first input and
    libFuzzer's default 2 GB limit would fire on no input at all."""
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return inherited_mb + allowance_mb


def test_the_readers_survive_a_brief_fuzz_run(tmp_path):
    runs = {}
    for target in TARGETS:  # both at once: most of each run is importing torch
        scratch = tmp_path / target
        scratch.mkdir()
        argv = [
            sys.executable,
            str(SCRIPT),
            target,
            str(scratch),
            str(SCRIPT.parent / "corpus" / target),
        ]
        argv += [
            "-runs=300",
            "-max_total_time=8",
            "-seed=1",
            f"-rss_limit_mb={_rss_limit_mb()}",
            "-malloc_limit_mb=2048",
            f"-artifact_prefix={tmp_path}/{target}-",
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        runs[target] = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    for target, process in runs.items():
        output, _ = process.communicate(timeout=240)
        report = "\n".join(line for line in output.splitlines() if "Instrumenting" not in line)
        assert process.returncode == 0, f"fuzz target {target} failed:\n{report[-6000:]}"
        assert "Done" in report, report[-2000:]  # libFuzzer's last line: the runs were made


def test_a_memo_slot_past_the_pickle_is_refused_before_unpickling(tmp_path):
    """Six bytes of pickle asking CPython's unpickler for a memo of 2**30 slots (8 GB)."""
    import zipfile

    from ct_engine.graph._pt_pickle import UnsafePickleError
    from ct_engine.graph.pt_exchange import read_pt

    path = tmp_path / "memo.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("g/data.pkl", b"\x80\x02N" + b"r" + (1 << 30).to_bytes(4, "little") + b".")
    with pytest.raises(UnsafePickleError, match=r"memo\.pt: memo slot 1073741824 is past the"):
        read_pt(path)
