"""Attribution benchmark: ct_engine vs circuit-tracer 0.5.0 on the same model files.

    .venv/bin/python benchmarks/make_bench_model.py          # once: benchmarks/.data
    benchmarks/setup_reference.sh                            # once: the circuit-tracer venv
    .venv/bin/python benchmarks/bench_attribution.py [--lengths 16 64 256] [--batch-size 64]
        [--max-feature-nodes N] [--capped-nodes 7500] [--skip-reference] [--repeats 1]

Model: Llama architecture, 8 layers, d_model 256, PLT JumpReLU transcoders with 2,048 features
per layer (``make_bench_model.py``). Prompts are prefixes of one deterministic token sequence;
a length counts the leading ``<bos>`` (``--lengths 64`` = ``<bos>`` + 63 tokens), and both
tools get the same ids.

Every run is a fresh subprocess (ours: ``run_ours.py`` in this venv; circuit-tracer:
``run_circuit_tracer.py`` in ``$CT_REF_VENV``, default ``/work/ct-ref-venv``), so its peak RSS
(``ru_maxrss`` from ``wait4``) is its own. Each child runs under an address-space limit
(``--mem-limit-gib``, default: available memory less 1.5 GiB, at most 20 GiB) so that a graph
too big for the machine fails with an allocator error ("OOM") instead of invoking the kernel's
OOM killer on the other work on the machine; a child killed by a signal is also recorded as OOM.

For each length the configuration is ``--max-feature-nodes`` (default: uncapped); at lengths
>= ``--capped-from`` (256) a capped configuration (``--capped-nodes``) is run as well, since an
uncapped 256-token graph does not fit in memory. Graphs are compared when both tools finish:
same active features, selected features and logit targets, adjacency ``allclose`` with
``atol=1e-4, rtol=1e-3`` (the max abs diff is reported).

Writes ``benchmarks/results/attribution.md`` and ``attribution.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = HERE / ".data"
DEFAULT_RESULTS = HERE / "results"
DEFAULT_REF_VENV = os.environ.get("CT_REF_VENV", "/work/ct-ref-venv")
ATOL, RTOL = 1e-4, 1e-3
GIB = 1024**3


def available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return 8.0


def load_average() -> float:
    return os.getloadavg()[0]


def run_child(cmd: list[str], log: Path, mem_limit: int, timeout: float) -> dict:
    """Run ``cmd`` with an address-space limit; return rc, signal, peak RSS and CPU time."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["TOKENIZERS_PARALLELISM"] = "false"
    env.pop("VIRTUAL_ENV", None)
    load_before = load_average()
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env, preexec_fn=limit
        )
        deadline = start + timeout
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.2)
        except BaseException:  # Ctrl-C or a kill of this process: do not orphan the child
            proc.kill()
            os.wait4(proc.pid, 0)
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "rc": proc.returncode,
        "timed_out": time.perf_counter() > deadline,
        "process_wall_s": time.perf_counter() - start,
        "process_cpu_s": usage.ru_utime + usage.ru_stime,
        "process_sys_s": usage.ru_stime,
        "process_minor_faults": usage.ru_minflt,
        "process_peak_rss_mib": usage.ru_maxrss / 1024,
        "load_before": load_before,
        "load_after": load_average(),
    }


def run_tool(
    tool: str, args, length: int, max_nodes: int | None, work: Path, repeat: int = 0
) -> dict:
    tag = f"{tool}_{length}_{max_nodes or 'all'}_{repeat}"
    out_json, out_st, log = work / f"{tag}.json", work / f"{tag}.safetensors", work / f"{tag}.log"
    for p in (out_json, out_st):
        p.unlink(missing_ok=True)
    if tool == "ours":
        python, script = sys.executable, HERE / "run_ours.py"
    else:
        python, script = str(Path(args.ref_venv) / "bin" / "python"), HERE / "run_circuit_tracer.py"
    cmd = [python, str(script), "--data", str(args.data), "--length", str(length)]
    cmd += ["--batch-size", str(args.batch_size), "--out-json", str(out_json)]
    cmd += ["--out-tensors", str(out_st)]
    if max_nodes is not None:
        cmd += ["--max-feature-nodes", str(max_nodes)]
    mem_limit = int(args.mem_limit_gib * GIB)
    print(f"[{dt.datetime.now():%H:%M:%S}] {tag}: running (load {load_average():.1f})", flush=True)
    proc = run_child(cmd, log, mem_limit, args.timeout)
    record = json.loads(out_json.read_text()) if out_json.exists() else {}
    record.update(proc)
    record["tool"] = "ct_engine" if tool == "ours" else "circuit-tracer"
    if not record.get("status"):
        if proc["timed_out"]:
            record["status"] = "timeout"
        elif proc["rc"] < 0 or proc["rc"] in (137, 134):
            record["status"] = "OOM"  # killed (SIGKILL from the OOM killer, or an abort)
            record["error"] = f"killed by signal {-proc['rc']}; log tail: {_tail(log)}"
        else:
            tail = _tail(log)
            memory = ("can't allocate memory", "unable to mmap", "MemoryError", "out of memory")
            record["status"] = "OOM" if any(m in tail for m in memory) else "error"
            record["error"] = tail
    elif record["status"] != "ok" and "error" not in record:
        record["error"] = _tail(log)
    record["tensors"] = str(out_st) if out_st.exists() else None
    wall = record.get("wall_s")
    print(
        f"    -> {record['status']}"
        + (f", {wall:.1f} s" if wall else "")
        + f", peak RSS {record['process_peak_rss_mib']:.0f} MiB"
        + f", cpu {record['process_cpu_s']:.0f} s, load {record['load_after']:.1f}",
        flush=True,
    )
    return record


def _tail(log: Path, n: int = 600) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else ""


def _adjacency(path: str):
    import numpy as np

    if Path(path + ".adjacency.crow.npy").exists():
        return _CsrFile(path)
    return np.load(path + ".adjacency.npy", mmap_mode="r")


class _CsrFile:
    """A CSR adjacency saved by ``runner_common.save_graph``, read memory-mapped; indexing
    by a row slice or row array gives those rows dense (all that ``_allclose_rows`` needs)."""

    def __init__(self, path: str):
        import numpy as np

        parts = ("crow", "col", "values")
        self.crow, self.col, self.values = (
            np.load(f"{path}.adjacency.{p}.npy", mmap_mode="r") for p in parts
        )
        n = len(self.crow) - 1
        self.shape = (n, n)

    def __getitem__(self, rows):
        import numpy as np

        rows = np.arange(self.shape[0])[rows] if isinstance(rows, slice) else np.asarray(rows)
        out = np.zeros((len(rows), self.shape[1]), dtype=np.float32)
        for i, r in enumerate(rows.tolist()):
            lo, hi = int(self.crow[r]), int(self.crow[r + 1])
            out[i, self.col[lo:hi]] = self.values[lo:hi]
        return out


def _allclose_rows(A, B, rows_a=None, cols_a=None) -> tuple[bool, float, float]:
    """``allclose`` and max abs diff of ``A[rows_a][:, cols_a]`` vs ``B``, in row chunks.

    ``A`` and ``B`` are (memory-mapped) numpy arrays; no N x N temporaries are made.
    """
    import numpy as np

    close, max_diff, max_abs = True, 0.0, 0.0
    n = B.shape[0]
    for start in range(0, n, 1024):
        stop = min(start + 1024, n)
        x = A[start:stop] if rows_a is None else A[rows_a[start:stop]]
        if cols_a is not None:
            x = x[:, cols_a]
        # Chunk-sized copies: memory-mapped arrays are read-only.
        x, y = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(B[start:stop]))
        max_diff = max(max_diff, float((x - y).abs().max()) if x.numel() else 0.0)
        max_abs = max(max_abs, float(x.abs().max()) if x.numel() else 0.0)
        close = close and torch.allclose(x, y, atol=ATOL, rtol=RTOL)
    return close, max_diff, max_abs


def compare(ours_path: str, ref_path: str) -> dict:
    """Graph equality: active/selected features and targets exact, adjacency allclose."""
    from safetensors.torch import load_file

    a, b = load_file(ours_path), load_file(ref_path)
    result: dict = {}
    for key in ("input_tokens", "active_features", "selected_features", "logit_targets"):
        result[f"same_{key}"] = a[key].shape == b[key].shape and torch.equal(a[key], b[key])
    if not result["same_selected_features"]:
        sa, sb = set(a["selected_features"].tolist()), set(b["selected_features"].tolist())
        result["selected_overlap"] = len(sa & sb) / max(len(sa | sb), 1)
    if result["same_active_features"]:
        diff = (a["activation_values"] - b["activation_values"]).abs().max()
        result["activation_values_max_abs_diff"] = float(diff)
    A, B = _adjacency(ours_path), _adjacency(ref_path)
    if A.shape == B.shape:
        close, max_diff, max_abs = _allclose_rows(A, B)
        result.update(
            adjacency_allclose=close, adjacency_max_abs_diff=max_diff, adjacency_max_abs=max_abs
        )
    else:
        result.update(adjacency_allclose=False, adjacency_shapes=[list(A.shape), list(B.shape)])
    result["equal"] = bool(
        result["same_input_tokens"]
        and result["same_active_features"]
        and result["same_selected_features"]
        and result["same_logit_targets"]
        and result["adjacency_allclose"]
    )
    return result


def compare_uncapped_to_capped(full_path: str, capped_path: str) -> dict:
    """An uncapped graph restricted to a capped graph's nodes must equal the capped graph.

    Capping only drops the rows and columns of unselected features (direct effects do not
    depend on which other features are nodes), so ``A_full[m][:, m] == A_capped`` with ``m``
    mapping each capped node to its uncapped index. Used where the reference can only build
    the capped graph.
    """
    from safetensors.torch import load_file

    a, b = load_file(full_path), load_file(capped_path)
    result: dict = {}
    for key in ("input_tokens", "active_features", "logit_targets"):
        result[f"same_{key}"] = a[key].shape == b[key].shape and torch.equal(a[key], b[key])
    A, B = _adjacency(full_path), _adjacency(capped_path)
    n_act, selected = a["active_features"].shape[0], b["selected_features"]
    n_rest = B.shape[0] - len(selected)  # errors, tokens, logits
    m = torch.cat([selected, n_act + torch.arange(n_rest)]).numpy()
    ok = result["same_active_features"] and A.shape[0] == n_act + n_rest
    if ok:
        close, max_diff, max_abs = _allclose_rows(A, B, rows_a=m, cols_a=m)
        result.update(
            adjacency_allclose=close, adjacency_max_abs_diff=max_diff, adjacency_max_abs=max_abs
        )
    same = all(result[f"same_{k}"] for k in ("input_tokens", "active_features", "logit_targets"))
    result["equal"] = bool(ok and same and result.get("adjacency_allclose"))
    return result


def _remove_graph(path: str | None) -> None:
    if path:
        Path(path).unlink(missing_ok=True)
        for suffix in ("", ".crow", ".col", ".values"):
            Path(f"{path}.adjacency{suffix}.npy").unlink(missing_ok=True)


def predicted_min_gib(info: dict, tool: str, length: int, max_nodes: int | None) -> float | None:
    """Lower bound on the memory a graph's dense buffers need, or ``None`` (none / unknown).

    circuit-tracer 0.5.0 holds, while packaging, its ``(rows, N)`` float32 edge matrix and a
    row-permuted copy of it (then the adjacency of the kept nodes): at least ``2 * 4 * rows * N``
    bytes, where ``N`` counts every active feature, error, token and logit node and ``rows`` is
    ``N_act`` (uncapped) or ``max_nodes`` plus the logits (capped). ct_engine keeps large
    uncapped graphs as sparse rows, so no dense bound applies to it (its own estimate is
    ``ct attribute --estimate-memory``). ``N_act`` comes from ``make_bench_model.py``'s counts;
    one logit is assumed.
    """
    n_act = info.get("active_features", {}).get(str(length))
    if n_act is None or tool == "ours":
        return None
    n = n_act + (info["spec"]["n_layers"] + 1) * length + 1
    rows = n if max_nodes is None else min(max_nodes, n_act) + 1
    return 2 * 4 * rows * n / GIB


def predicted_oom(tool: str, need: float, limit: float) -> dict:
    return {
        "tool": "ct_engine" if tool == "ours" else "circuit-tracer",
        "status": "OOM (predicted, not run)",
        "error": (
            f"its dense float32 edge buffers alone need >= {need:.1f} GiB, over the "
            f"{limit:.1f} GiB limit; run with --force-oversized to try anyway"
        ),
        "load_before": load_average(),
        "load_after": load_average(),
    }


def dense_gib(record: dict) -> float | None:
    n = record.get("n_nodes")
    return 4 * n * n / GIB if n else None


def _fmt(x, spec=".1f", none="–"):
    return none if x is None else format(x, spec)


def engine_version() -> str:
    """The repository commit, marked dirty when ct_engine/ has uncommitted changes."""

    def git(*cmd: str) -> str:
        out = subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (
        " + uncommitted ct_engine changes" if git("status", "--porcelain", "ct_engine") else ""
    )


def write_markdown(path: Path, meta: dict, rows: list[dict]) -> None:
    lines = [
        "# Attribution benchmark: ct_engine vs circuit-tracer 0.5.0",
        "",
        f"Generated {meta['date']} by `benchmarks/bench_attribution.py` on {meta['machine']}; "
        f"ct_engine at {meta.get('engine', 'unknown')}.",
        "",
        f"Model: {meta['model']}. Prompt lengths count the leading `<bos>`; both tools get the "
        f"same token ids. Batch size {meta['batch_size']}, float32, CPU, "
        f"{meta['torch_threads']} torch threads. Each run is a fresh process with an "
        f"address-space limit of {meta['mem_limit_gib']:.1f} GiB (machine: "
        f"{meta['total_ram_gib']:.0f} GiB RAM).",
        "",
        "Time = wall time of `attribute()` (model loading excluded; with repeats, the fastest "
        "run, all runs in parentheses; the other columns are the fastest run's); CPU = "
        "user+sys CPU seconds (sys in parentheses: mostly page faults of large allocations) "
        "of the whole process (incl. loading); peak RSS = `ru_maxrss` of the process. The "
        "machine is shared: the load average (1 min) before/after each run is listed; "
        "timings under load are noisy.",
        "",
        "| tokens | max feature nodes | tool | status | time (s) | CPU (sys) (s) | peak RSS (MiB) "
        "| N_act | nodes | speedup (ct / ours) | same graph (max abs diff) | load |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        cmp = row.get("comparison")
        for rec in row["runs"]:
            is_ours = rec["tool"] == "ct_engine"
            speed = _fmt(row.get("speedup"), ".2f") + "×" if is_ours and row.get("speedup") else ""
            same = ""
            if is_ours and cmp:
                same = ("yes" if cmp["equal"] else "**no**") + (
                    f" ({cmp['adjacency_max_abs_diff']:.1e})"
                    if "adjacency_max_abs_diff" in cmp
                    else ""
                )
            status = rec["status"]
            if status != "ok" and rec.get("wall_s_until_oom"):
                status += f" after {rec['wall_s_until_oom']:.0f} s"
            cells = [
                row["length"],
                row["max_feature_nodes"] or "all",
                rec["tool"],
                status,
                _fmt(rec.get("wall_s"))
                + (
                    f" ({', '.join(f'{w:.1f}' for w in rec['all_wall_s'])})"
                    if len(rec.get("all_wall_s") or []) > 1
                    else ""
                ),
                _fmt(rec.get("process_cpu_s"), ".0f")
                + (
                    f" ({rec['process_sys_s']:.0f})" if rec.get("process_sys_s") is not None else ""
                ),
                _fmt(rec.get("process_peak_rss_mib"), ".0f"),
                _fmt(rec.get("n_active"), "d"),
                _fmt(rec.get("n_nodes"), "d"),
                speed,
                same,
                f"{rec['load_before']:.1f}/{rec['load_after']:.1f}",
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "## Per-phase wall time (s)", ""]
    phases = ["precompute", "targets", "forward", "logit_rows", "feature_rows", "package"]
    lines += [
        "| tokens | max feature nodes | tool | " + " | ".join(phases) + " |",
        "|---:|---:|---|" + "---:|" * len(phases),
    ]
    for row in rows:
        for rec in row["runs"]:
            t = rec.get("timings") or {}
            if not t:
                continue
            lines.append(
                f"| {row['length']} | {row['max_feature_nodes'] or 'all'} | {rec['tool']} | "
                + " | ".join(_fmt(t.get(p), ".2f") for p in phases)
                + " |"
            )
    lines += [
        "",
        "circuit-tracer's phases come from its own log lines (rounded to 0.01 s): `targets` is "
        "its phase 2 (targets plus allocating the edge matrix), `package` is the time from its "
        "feature-attribution log line to the return of `attribute()`.",
    ]
    checks = [r for r in rows if r.get("uncapped_vs_capped")]
    if checks:
        lines += ["", "## Uncapped graph vs circuit-tracer's capped graph", ""]
        for r in checks:
            c = r["uncapped_vs_capped"]
            lines.append(
                f"- {r['length']} tokens: ct_engine's uncapped graph restricted to the nodes of "
                f"circuit-tracer's {r['max_feature_nodes']}-feature graph "
                + ("equals it" if c["equal"] else "**differs**")
                + f" (max abs diff {c.get('adjacency_max_abs_diff', float('nan')):.1e}; "
                "capping only drops unselected features' rows and columns)."
            )
    notes = [r for r in rows for rec in r["runs"] if rec["status"] != "ok"]
    if notes:
        lines += ["", "## Failures", ""]
        for row in rows:
            for rec in row["runs"]:
                if rec["status"] != "ok":
                    err = (rec.get("error") or "").replace("\n", " ").replace("|", "/")[-400:]
                    lines.append(
                        f"- {row['length']} tokens, max nodes {row['max_feature_nodes'] or 'all'}, "
                        f"{rec['tool']}: {rec['status']}: {err}"
                    )
    if meta.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in meta["notes"]]
    path.write_text("\n".join(lines) + "\n")


def run_config(tool: str, args, info: dict, length: int, max_nodes: int | None, work: Path):
    """Run one tool on one configuration ``--repeats`` times; keep the fastest run."""
    need = predicted_min_gib(info, tool, length, max_nodes)
    if need is not None and need > args.mem_limit_gib and not args.force_oversized:
        cap = "uncapped" if max_nodes is None else f"cap {max_nodes}"
        print(f"[skip] {tool} {length} tokens {cap}: needs >= {need:.1f} GiB", flush=True)
        return predicted_oom(tool, need, args.mem_limit_gib)
    best, walls = None, []
    for repeat in range(args.repeats):
        rec = run_tool(tool, args, length, max_nodes, work, repeat)
        rec.setdefault("dense_adjacency_gib", dense_gib(rec))
        if rec["status"] != "ok":
            _remove_graph(best and best.get("tensors"))
            best = rec
            break
        walls.append(round(rec["wall_s"], 2))
        if best is None or rec["wall_s"] < best["wall_s"]:
            best, rec = rec, best
        _remove_graph(rec and rec.get("tensors"))  # the slower run's graph
    best["all_wall_s"] = walls
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-feature-nodes", type=int, default=None)
    ap.add_argument("--capped-nodes", type=int, default=7500)
    ap.add_argument("--capped-from", type=int, default=256)
    ap.add_argument(
        "--force-oversized",
        action="store_true",
        help="run uncapped configurations even when their dense matrices cannot fit the limit",
    )
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--ref-venv", default=DEFAULT_REF_VENV)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    ap.add_argument("--name", default="attribution", help="results file stem")
    ap.add_argument("--repeats", type=int, default=1, help="runs per tool; the fastest is kept")
    ap.add_argument("--mem-limit-gib", type=float, default=None)
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    ap.add_argument("--keep-tensors", action="store_true")
    ap.add_argument("--note", action="append", default=[], help="free-text note for the report")
    ap.add_argument(
        "--render", action="store_true", help="only re-write the markdown from the results JSON"
    )
    args = ap.parse_args(argv)
    if args.render:
        stem = args.results / args.name
        saved = json.loads(stem.with_suffix(".json").read_text())
        write_markdown(stem.with_suffix(".md"), saved["meta"], saved["rows"])
        return 0
    # SIGTERM raises SystemExit, so run_child kills the running child instead of orphaning it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.mem_limit_gib is None:
        args.mem_limit_gib = min(20.0, available_gib() - 1.5)
    if not (args.data / "bench_model.json").exists():
        print(
            f"no benchmark model in {args.data}; run benchmarks/make_bench_model.py",
            file=sys.stderr,
        )
        return 2
    if not args.skip_reference and not (Path(args.ref_venv) / "bin" / "python").exists():
        print(
            f"no circuit-tracer venv at {args.ref_venv}; run benchmarks/setup_reference.sh "
            "or pass --skip-reference",
            file=sys.stderr,
        )
        return 2
    info = json.loads((args.data / "bench_model.json").read_text())
    spec = info["spec"]
    engine = engine_version()  # the code the runs use: taken before they start, not after
    work = args.data / "runs"
    work.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)

    configs: list[tuple[int, int | None]] = []
    for length in args.lengths:
        configs.append((length, args.max_feature_nodes))
        if length >= args.capped_from and args.max_feature_nodes is None:
            configs.append((length, args.capped_nodes))

    tools = ["ours"] if args.skip_reference else ["ours", "reference"]
    rows: list[dict] = []
    for i, (length, max_nodes) in enumerate(configs):
        row: dict = {"length": length, "max_feature_nodes": max_nodes, "runs": []}
        for tool in tools:
            row["runs"].append(run_config(tool, args, info, length, max_nodes, work))
        ours, ref = row["runs"][0], (row["runs"][1] if len(row["runs"]) > 1 else None)
        if ref and ours["status"] == "ok" and ref["status"] == "ok":
            row["speedup"] = ref["wall_s"] / ours["wall_s"]
            row["comparison"] = compare(ours["tensors"], ref["tensors"])
            print(f"    speedup {row['speedup']:.2f}x, graph {row['comparison']}", flush=True)
        # An uncapped graph only ours could build: check it against the reference's capped one.
        full = next(
            (r for r in rows if r["length"] == length and r["max_feature_nodes"] is None), None
        )
        if max_nodes is not None and ref and ref.get("tensors") and full:
            if full["runs"][0].get("tensors"):
                row["uncapped_vs_capped"] = compare_uncapped_to_capped(
                    full["runs"][0]["tensors"], ref["tensors"]
                )
                print(f"    uncapped ours vs capped reference: {row['uncapped_vs_capped']}")
        rows.append(row)
        if not args.keep_tensors:
            # Keep only ours' uncapped graph of this length while its capped config is next.
            later = configs[i + 1 :]
            keep = max_nodes is None and any(n == length and c is not None for n, c in later)
            for r in rows:
                for j, rec in enumerate(r["runs"]):
                    if rec.get("tensors") and not (keep and r is row and j == 0):
                        _remove_graph(rec["tensors"])
                        rec["tensors"] = None

    meta = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "engine": engine,
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs, Linux {platform.release()})",
        "total_ram_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
        "model": (
            f"{spec['family']} {spec['n_layers']} layers, d_model {spec['d_model']}, "
            f"{spec['n_heads']} heads ({spec['n_kv_heads']} KV), d_mlp {spec['d_mlp']}, "
            f"vocab {info['vocab_size']}; PLT JumpReLU transcoders, {info['d_transcoder']} "
            f"features/layer on `{info['feature_input_hook']}` → `{info['feature_output_hook']}`, "
            f"threshold scale {info['threshold_scale']}"
        ),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "mem_limit_gib": args.mem_limit_gib,
        "repeats": args.repeats,
        "notes": args.note,
    }
    stem = args.results / args.name
    (stem.with_suffix(".json")).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    write_markdown(stem.with_suffix(".md"), meta, rows)
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')}")
    if not args.keep_tensors:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
