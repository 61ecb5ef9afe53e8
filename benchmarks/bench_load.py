"""How long the embedded toy world takes to load, offline (imports excluded and included).

    python benchmarks/bench_load.py [--repeats 5]

Prints and appends to benchmarks/results/load.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHILD = """
import time
t0 = time.perf_counter()
import torch
import transformer_lens.model_bridge  # imported lazily by from_pretrained: count it here
from ct_engine import ReplacementModel
t1 = time.perf_counter()
model = ReplacementModel.from_pretrained("toy-world", "toy-world-{kind}", device="cpu")
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    lines = []
    for kind in ("plt", "clt"):
        if not (Path(__file__).parents[1] / "ct_engine/toyworld/artifacts" / kind).exists():
            continue
        imports, loads = [], []
        for _ in range(args.repeats):
            out = subprocess.run(
                [sys.executable, "-c", CHILD.format(kind=kind)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            imports.append(float(out[-2]))
            loads.append(float(out[-1]))
        line = (
            f"| toy-world + toy-world-{kind} | {statistics.median(loads):.2f} s "
            f"(min {min(loads):.2f}) | {statistics.median(imports):.2f} s |"
        )
        print(line)
        lines.append(line)
    results = Path(__file__).parent / "results" / "load.md"
    header = (
        "# Loading the embedded toy world\n\n"
        "`python benchmarks/bench_load.py`: a fresh process per repeat; median of the repeats.\n"
        "`from_pretrained` is the model and transcoders; imports are torch, TransformerLens and "
        "ct_engine.\n\n"
        "| what | from_pretrained | imports |\n|---|---|---|\n"
    )
    stamp = f"\n{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores\n"
    results.write_text(header + "\n".join(lines) + "\n" + stamp)


if __name__ == "__main__":
    main()
