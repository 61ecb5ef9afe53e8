"""The graph cache's memory budget: a quarter of the machine by default, or CT_GRAPH_CACHE_MB."""

from __future__ import annotations

from pathlib import Path

from ct_engine.graph import cache


def _mem_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def _cgroup_limit() -> int | None:
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def test_the_default_budget_is_a_quarter_of_the_machine(monkeypatch):
    monkeypatch.delenv("CT_GRAPH_CACHE_MB", raising=False)
    machine = _mem_total_bytes()
    limit = _cgroup_limit()
    expected = max(1 << 30, min(machine, limit or machine) // 4)
    # MemTotal and the page count can differ by the kernel's rounding: within one page each.
    assert abs(cache._budget_bytes() - expected) <= 4096


def test_the_environment_sets_the_budget_in_mib(monkeypatch):
    monkeypatch.setenv("CT_GRAPH_CACHE_MB", "300")
    assert cache._budget_bytes() == 300 * 2**20
