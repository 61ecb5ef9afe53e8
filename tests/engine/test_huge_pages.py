"""Importing ct_engine puts PyTorch's large CPU tensors on transparent huge pages.

Checked in fresh interpreters, since PyTorch reads ``THP_MEM_ALLOC_ENABLE`` once, at its first
allocation: after ``import ct_engine`` a large tensor is backed by huge pages (where the kernel
offers them), and a value the user set is left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import os, ct_engine, torch
x = torch.ones(64 * 2**20 // 4)  # 64 MiB
huge = 0
for line in open("/proc/self/smaps_rollup"):
    if line.startswith("AnonHugePages:"):
        huge = int(line.split()[1])
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), huge)
"""
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _probe(**env) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    value, huge = out.stdout.split()
    return value, int(huge)


@pytest.mark.skipif(not THP_MODE.exists(), reason="no transparent huge pages on this OS")
def test_large_tensors_on_huge_pages():
    value, huge_kib = _probe()
    assert value == "1"
    if "[never]" not in THP_MODE.read_text():
        assert huge_kib >= 32 * 1024  # most of the 64 MiB tensor


@pytest.mark.skipif(not THP_MODE.exists(), reason="no transparent huge pages on this OS")
def test_the_users_setting_wins():
    value, huge_kib = _probe(THP_MEM_ALLOC_ENABLE="0")
    assert value == "0"
    if "[always]" not in THP_MODE.read_text():
        assert huge_kib == 0
