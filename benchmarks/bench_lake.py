"""The lake on Delta: 1,000 graphs through ``ct_lake.lake.Lake.write_table``, the census query,
a large partition write, and the previous hive-Parquet writer on the same graphs.

Graphs are the synthetic, seeded graphs of ``bench_table_formats.py`` (about 2,000 nodes and
50,000 edges each, features drawn from a Zipf-like pool so they recur across graphs). For each
graph the five tables the attribution asset writes (``graphs``, ``nodes``, ``edges``,
``logit_targets``, ``active_features``) are written

* **new**: ``Lake(root).write_table(name, rows, model=.., prompt=..)``: one Delta commit per
  table and partition;
* **old**: the previous writer (``git show 42118ab:ct_assets/lib/lake.py``), re-implemented
  inline: one ``data.parquet`` per hive partition, zstd, written to a temporary file and renamed.

The two writers alternate graph by graph, so both see the same machine load. Then:

(a) total write time, files and bytes on disk, against circuit-tracer's ``.pt`` for the same
    graphs (``ct_engine.graph.Graph.to_pt``: dense adjacency); the ``.pt`` is written for a
    sample of graphs and its mean size extrapolated (all graphs have the same node count);
(b) the census: ``recurring_features`` over all graphs, from ``ct_lake.catalog.connect`` (new)
    and from hive-glob views with the same view SQL (old), cold (first query of a connection)
    and warm (median of the next ones);
(c) one partition write of a 5,000-node graph (125,000 edges: the same 25 edges per node) into
    the grown lake, per table and for the five tables;
(d) old versus new: write time and query time, side by side.

    nice -n 10 .venv/bin/python benchmarks/bench_lake.py [--graphs 1000]

Results: ``benchmarks/results/lake.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_table_formats import (  # noqa: E402
    MODEL,
    N_LAYERS,
    SyntheticGraph,
    folder_stats,
    machine_line,
    prompt_key,
    synthetic_graph,
)

RESULTS = ROOT / "benchmarks" / "results" / "lake.md"
LAKE_TABLES = ("graphs", "nodes", "edges", "logit_targets", "active_features")
VIEWS = ROOT / "sql" / "views"
CENSUS_QUERY = ROOT / "sql" / "queries" / "recurring_features.sql"
GOALS = {"pt_ratio": 0.25, "census_warm_s": 1.0, "big_write_s": 0.2}


class OldLake:
    """The previous writer: ``<root>/<table>/model=<m>/prompt=<p>/data.parquet``, each file
    written to a temporary name in its folder and renamed into place (atomic replace)."""

    def __init__(self, root: Path):
        self.root = root

    def write_table(self, name: str, data: pa.Table, **keys: str) -> tuple[Path, int]:
        folder = self.root / name
        for column in ("model", "prompt"):
            folder = folder / f"{column}={keys[column]}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "data.parquet"
        fd, tmp = tempfile.mkstemp(prefix=".data.parquet.", suffix=".tmp", dir=folder)
        os.close(fd)
        try:
            pq.write_table(data, tmp, compression="zstd")
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return path, data.num_rows

    def connect(self) -> duckdb.DuckDBPyConnection:
        """The old base views (hive globs) for the census's tables, then the derived view."""
        con = duckdb.connect()
        for name in ("nodes", "graphs"):
            con.execute(
                f"CREATE VIEW {name} AS SELECT * FROM read_parquet("
                f"'{self.root}/{name}/model=*/prompt=*/data.parquet', hive_partitioning = true, "
                "hive_types_autocast = false, union_by_name = true)"
            )
        con.execute((VIEWS / "recurring_features.sql").read_text())
        return con


def to_engine_graph(g: SyntheticGraph):
    """The same graph as a ``ct_engine.graph.Graph`` (sparse COO adjacency)."""
    import torch

    from ct_engine.graph import Graph
    from ct_engine.graph.config import LogitTarget, ModelConfig

    N = g.n_nodes
    adjacency = torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([g.targets, g.sources]).astype(np.int64)),
        torch.from_numpy(g.weights),
        (N, N),
        check_invariants=True,
    ).coalesce()
    cfg = ModelConfig(
        n_layers=N_LAYERS,
        d_model=2048,
        d_head=128,
        n_heads=16,
        d_mlp=8192,
        d_vocab=32_000,
        tokenizer_name="synthetic",
        model_name="synthetic/bench-model",
        original_architecture="LlamaForCausalLM",
    )
    return Graph(
        input_string=" ".join(f"tok{t}" for t in g.tokens),
        input_tokens=torch.from_numpy(g.tokens.astype(np.int64)),
        active_features=torch.from_numpy(g.active.astype(np.int64)),
        activation_values=torch.from_numpy(g.active_values),
        selected_features=torch.from_numpy(g.selected.astype(np.int64)),
        adjacency_matrix=adjacency,
        logit_targets=[LogitTarget(f"tok{v}", int(v)) for v in g.logit_vocab],
        logit_probabilities=torch.from_numpy(g.logit_probs.astype(np.float32)),
        vocab_size=32_000,
        cfg=cfg,
        scan="synthetic-scan",
    )


def pt_bytes(graphs: list[SyntheticGraph], folder: Path) -> list[int]:
    folder.mkdir(parents=True, exist_ok=True)
    sizes = []
    for g in graphs:
        path = folder / f"{prompt_key(g.index)}.pt"
        to_engine_graph(g).to_pt(path)
        sizes.append(path.stat().st_size)
        path.unlink()
    return sizes


def lake_disk(root: Path) -> dict[str, int]:
    """Files and bytes of the tables under ``root``: Parquet data versus Delta logs."""
    out = {"data_files": 0, "data_bytes": 0, "log_files": 0, "log_bytes": 0}
    for name in LAKE_TABLES:
        files, size = folder_stats(root / name)
        log_files, log_size = folder_stats(root / name / "_delta_log")
        out["data_files"] += files - log_files
        out["data_bytes"] += size - log_size
        out["log_files"] += log_files
        out["log_bytes"] += log_size
    return out


def time_census(connect, repeats: int) -> dict[str, float]:
    """Cold (first query on a new connection) and warm (median of ``repeats``) seconds."""
    top20 = CENSUS_QUERY.read_text()
    t0 = time.perf_counter()
    con = connect()
    t_connect = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = con.execute("SELECT * FROM recurring_features").to_arrow_table().num_rows
    cold = time.perf_counter() - t0
    warm_all, warm_top = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        con.execute("SELECT * FROM recurring_features").to_arrow_table()
        warm_all.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        con.execute(top20).fetchall()
        warm_top.append(time.perf_counter() - t0)
    con.close()
    return {
        "connect_s": t_connect,
        "cold_s": cold,
        "warm_s": statistics.median(warm_all),
        "warm_top20_s": statistics.median(warm_top),
        "rows": rows,
    }


CENSUS_PARTS = {
    "scan: `count(*), sum(influence)` of the feature nodes": (
        "SELECT count(*), sum(influence) FROM nodes WHERE kind = 'feature'"
    ),
    "group by feature, no lists, no join": (
        "SELECT model, layer, feature, count(DISTINCT prompt), count(*), avg(influence), "
        "max(influence) FROM nodes WHERE kind = 'feature' GROUP BY ALL "
        "HAVING count(DISTINCT prompt) > 1"
    ),
    "the whole view (lists of prompts and tokens, join with graphs)": (
        "SELECT * FROM recurring_features"
    ),
}


def census_breakdown(connect, repeats: int) -> dict[str, float]:
    """Warm seconds (median) of the census's parts: what dominates the query."""
    con = connect()
    out = {}
    for label, sql in CENSUS_PARTS.items():
        con.execute(sql).to_arrow_table()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            con.execute(sql).to_arrow_table()
            times.append(time.perf_counter() - t0)
        out[label] = statistics.median(times)
    out["threads"] = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.close()
    return out


def commit_breakdown(lake, g: SyntheticGraph, repeats: int) -> dict[str, float]:
    """Where one small commit's time goes in a table with ~1,000 commits: ``Lake.write_table``
    versus deltalake alone (open the table; predicate overwrite through the URI)."""
    from deltalake import DeltaTable, write_deltalake

    uri = lake.table_uri("graphs")
    rows = g.tables["graphs"]
    parts = {"lake": [], "refresh": [], "open": [], "raw": [], "version": DeltaTable(uri).version()}
    for r in range(repeats):
        prompt = prompt_key(2_000_000 + r)
        t0 = time.perf_counter()
        lake.write_table("graphs", rows, model=MODEL, prompt=prompt)
        parts["lake"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        DeltaTable(uri)
        parts["open"].append(time.perf_counter() - t0)
        full = rows.append_column("model", pa.array([MODEL], pa.string()))
        full = full.append_column("prompt", pa.array([prompt], pa.string()))
        t0 = time.perf_counter()
        write_deltalake(
            uri,
            full,
            mode="overwrite",
            predicate=f"model = '{MODEL}' AND prompt = '{prompt}'",
            partition_by=["model", "prompt"],
            schema_mode="merge",
        )
        parts["raw"].append(time.perf_counter() - t0)
        # the lake's own handle of the table (reloaded from the newest checkpoint every few
        # commits), now one commit behind: its refresh is what every write_table starts with
        t0 = time.perf_counter()
        lake._handles["graphs"][0].update_incremental()
        parts["refresh"].append(time.perf_counter() - t0)
    return {k: statistics.median(v) if isinstance(v, list) else v for k, v in parts.items()}


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", type=int, default=1000)
    parser.add_argument("--pt-sample", type=int, default=5, help="graphs written as .pt")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep")
    args = parser.parse_args()

    from ct_lake.catalog import connect
    from ct_lake.lake import Lake

    t_all = time.perf_counter()
    load_start = machine_line()
    print(load_start, flush=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_lake_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        lake, old = Lake(work / "lake"), OldLake(work / "old")
        new_s = {name: 0.0 for name in LAKE_TABLES}
        old_s = {name: 0.0 for name in LAKE_TABLES}
        make_s = 0.0
        sample: list[SyntheticGraph] = []
        for i in range(args.graphs):
            t0 = time.perf_counter()
            g = synthetic_graph(i)
            make_s += time.perf_counter() - t0
            if len(sample) < args.pt_sample:
                sample.append(g)
            keys = {"model": MODEL, "prompt": prompt_key(i)}
            for name in LAKE_TABLES:
                t0 = time.perf_counter()
                lake.write_table(name, g.tables[name], **keys)
                new_s[name] += time.perf_counter() - t0
                t0 = time.perf_counter()
                old.write_table(name, g.tables[name], **keys)
                old_s[name] += time.perf_counter() - t0
            if (i + 1) % 100 == 0:
                print(
                    f"  {i + 1}/{args.graphs} graphs: new {sum(new_s.values()):.0f} s, "
                    f"old {sum(old_s.values()):.0f} s",
                    flush=True,
                )
        load_after_writes = machine_line()
        new_disk = lake_disk(work / "lake")
        old_files, old_bytes = folder_stats(work / "old")
        lake_files, lake_bytes = folder_stats(work / "lake")
        print("pt sample ...", flush=True)
        pt_sizes = pt_bytes(sample, work / "pt")
        pt_total = statistics.mean(pt_sizes) * args.graphs

        print("census ...", flush=True)
        census_new = time_census(lambda: connect(lake), args.repeats)
        census_old = time_census(old.connect, args.repeats)

        print("5,000-node partition writes ...", flush=True)
        big = synthetic_graph(1_000_000, n_nodes=5000, n_edges=125_000)
        big_new: dict[str, list[float]] = {name: [] for name in LAKE_TABLES}
        big_old: dict[str, list[float]] = {name: [] for name in LAKE_TABLES}
        for r in range(args.repeats):
            keys = {"model": MODEL, "prompt": prompt_key(1_000_000 + r)}
            for name in LAKE_TABLES:
                t0 = time.perf_counter()
                lake.write_table(name, big.tables[name], **keys)
                big_new[name].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                old.write_table(name, big.tables[name], **keys)
                big_old[name].append(time.perf_counter() - t0)
        print("breakdowns ...", flush=True)
        commits = commit_breakdown(lake, big, args.repeats)
        parts_new = census_breakdown(lambda: connect(lake), args.repeats)
        parts_old = census_breakdown(old.connect, args.repeats)
        big_new_total = [sum(big_new[n][r] for n in LAKE_TABLES) for r in range(args.repeats)]
        big_old_total = [sum(big_old[n][r] for n in LAKE_TABLES) for r in range(args.repeats)]
        load_end = machine_line()

        text = report(
            args,
            loads=(load_start, load_after_writes, load_end),
            make_s=make_s,
            new_s=new_s,
            old_s=old_s,
            new_disk=new_disk,
            lake_totals=(lake_files, lake_bytes),
            old_totals=(old_files, old_bytes),
            pt_sizes=pt_sizes,
            pt_total=pt_total,
            census=(census_new, census_old),
            big=(big, big_new, big_old, big_new_total, big_old_total),
            breakdown=(commits, parts_new, parts_old),
            total_s=time.perf_counter() - t_all,
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(text)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def report(args, *, loads, make_s, new_s, old_s, new_disk, lake_totals, old_totals, pt_sizes,
           pt_total, census, big, breakdown, total_s) -> str:  # fmt: skip
    n = args.graphs
    lake_files, lake_bytes = lake_totals
    old_files, old_bytes = old_totals
    census_new, census_old = census
    g_big, big_new, big_old, big_new_total, big_old_total = big
    from ct_lake.lake import HANDLE_REFRESH_COMMITS

    commits, parts_new, parts_old = breakdown
    ratio = lake_bytes / pt_total
    new_total, old_total = sum(new_s.values()), sum(old_s.values())
    big_edges = statistics.median(big_new["edges"])
    big_all = statistics.median(big_new_total)
    lines = [
        "# The lake on Delta: 1,000 graphs, the census, a large write, old versus new writer",
        "",
        f"Command: `nice -n 10 .venv/bin/python benchmarks/bench_lake.py --graphs {n}` "
        f"({total_s:.0f} s in all).",
        "",
        "| setting | value |",
        "|---|---|",
        f"| machine at start | {loads[0]} |",
        f"| machine after the {n}-graph writes | {loads[1]} |",
        f"| machine at end | {loads[2]} |",
        f"| graphs | {n} synthetic, seeded graphs (`bench_table_formats.synthetic_graph`): "
        f"~2,000 nodes (16 layers x 24 positions), 50,000 edges; 5 tables each |",
        "| new writer | `ct_lake.lake.Lake.write_table`: one Delta commit per table and "
        "partition |",
        "| old writer | hive Parquet, one `data.parquet` per partition, temp file + rename "
        "(the writer of commit 42118ab, inline) |",
        "| queries | DuckDB 2.0.1; new: `ct_lake.catalog.connect(lake)`; old: hive-glob views + "
        "the same `sql/views/recurring_features.sql` |",
        "",
        "## Goals",
        "",
        "| goal | measured | |",
        "|---|---|---|",
        f"| (a) lake bytes <= 1/4 of circuit-tracer `.pt` for the same graphs | "
        f"{mib(lake_bytes)} vs {mib(pt_total)} = 1/{1 / ratio:.0f} | "
        f"{verdict(ratio <= GOALS['pt_ratio'])} |",
        f"| (b) census (`SELECT * FROM recurring_features`, {n} graphs) warm < 1 s | "
        f"{census_new['warm_s']:.2f} s ({census_new['rows']:,} rows) | "
        f"{verdict(census_new['warm_s'] < GOALS['census_warm_s'])} |",
        f"| (c) one partition write of a 5,000-node graph < 0.2 s: the largest table (`edges`, "
        f"{g_big.tables['edges'].num_rows:,} rows) | {big_edges:.3f} s | "
        f"{verdict(big_edges < GOALS['big_write_s'])} |",
        f"| (c) the same graph's five tables (five commits) | {big_all:.3f} s | "
        f"{verdict(big_all < GOALS['big_write_s'])} |",
        "",
        f"## (a) {n} graphs through `Lake.write_table`",
        "",
        "| | new (Delta) | old (hive Parquet) |",
        "|---|---|---|",
        f"| write time, all {n} graphs x 5 tables | {new_total:.1f} s "
        f"({1000 * new_total / n:.0f} ms/graph) | {old_total:.1f} s "
        f"({1000 * old_total / n:.0f} ms/graph) |",
    ]
    for name in LAKE_TABLES:
        lines.append(
            f"| of which `{name}` | {new_s[name]:.1f} s ({1000 * new_s[name] / n:.1f} ms/commit) "
            f"| {old_s[name]:.1f} s ({1000 * old_s[name] / n:.1f} ms/file) |"
        )
    lines += [
        f"| files on disk | {lake_files:,} ({new_disk['data_files']:,} Parquet + "
        f"{new_disk['log_files']:,} in `_delta_log`) | {old_files:,} |",
        f"| bytes on disk | {mib(lake_bytes)} (Parquet {mib(new_disk['data_bytes'])}, logs "
        f"{mib(new_disk['log_bytes'])}) | {mib(old_bytes)} |",
        f"| bytes per graph | {lake_bytes / n / 1024:,.0f} KiB | {old_bytes / n / 1024:,.0f} KiB |",
        f"| circuit-tracer `.pt` (`Graph.to_pt`) | {mib(pt_total)}: mean of {len(pt_sizes)} "
        f"written ({statistics.mean(pt_sizes) / 2**20:.1f} MiB each) x {n}, extrapolated | |",
        f"| lake / `.pt` | 1/{pt_total / lake_bytes:.0f} | 1/{pt_total / old_bytes:.0f} |",
        "",
        f"Building the synthetic graphs took {make_s:.1f} s (not counted above). The `.pt` holds "
        "the dense N x N float32 adjacency (~2,000^2 x 4 bytes); the lake stores only the nonzero "
        "edges.",
        "",
        "## (b) and (d): the census query, new versus old",
        "",
        "| | new (Delta, `catalog.connect`) | old (hive globs) |",
        "|---|---|---|",
        f"| connect (create every view) | {census_new['connect_s']:.2f} s | "
        f"{census_old['connect_s']:.2f} s |",
        f"| `SELECT * FROM recurring_features`, cold | {census_new['cold_s']:.2f} s | "
        f"{census_old['cold_s']:.2f} s |",
        f"| same, warm (median of {args.repeats}) | {census_new['warm_s']:.2f} s | "
        f"{census_old['warm_s']:.2f} s |",
        f"| `sql/queries/recurring_features.sql` (top 20), warm | "
        f"{census_new['warm_top20_s']:.2f} s | {census_old['warm_top20_s']:.2f} s |",
        f"| rows | {census_new['rows']:,} | {census_old['rows']:,} |",
        "",
        "## (c) and (d): one partition of a 5,000-node graph",
        "",
        f"Written {args.repeats} times into new partitions of the grown lake; medians.",
        "",
        "| table | rows | new (Delta) | old (hive Parquet) |",
        "|---|---|---|---|",
    ]
    for name in LAKE_TABLES:
        lines.append(
            f"| `{name}` | {g_big.tables[name].num_rows:,} | "
            f"{1000 * statistics.median(big_new[name]):.0f} ms | "
            f"{1000 * statistics.median(big_old[name]):.0f} ms |"
        )
    lines += [
        f"| all five | | {1000 * big_all:.0f} ms | "
        f"{1000 * statistics.median(big_old_total):.0f} ms |",
        "",
        "## What dominates",
        "",
        f"One 1-row commit to `graphs` (table version {commits['version']}), medians of "
        f"{args.repeats}:",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| `Lake.write_table` | {commits['lake']:.3f} |",
        f"| its cached table handle (reloaded from the newest checkpoint every "
        f"{HANDLE_REFRESH_COMMITS} commits), one commit behind: `update_incremental()` | "
        f"{commits['refresh']:.3f} |",
        f"| deltalake alone: `DeltaTable(uri)` (open, replay the log from its checkpoint) | "
        f"{commits['open']:.3f} |",
        f"| deltalake alone: `write_deltalake(uri, mode='overwrite', predicate=...)` | "
        f"{commits['raw']:.3f} |",
        "",
        f"The census's parts, warm medians (DuckDB threads: {parts_new['threads']}):",
        "",
        "| part | new (Delta) | old (hive globs) |",
        "|---|---|---|",
    ]
    for label in CENSUS_PARTS:
        lines.append(f"| {label} | {parts_new[label]:.2f} s | {parts_old[label]:.2f} s |")
    whole, grouped = (parts_new[label] for label in list(CENSUS_PARTS)[::-1][:2])
    lines += [
        "",
        "Reading these numbers:",
        "",
        f"- Writes: a `Lake.write_table` at this table version takes {commits['lake']:.3f} s, "
        f"of which refreshing the lake's cached table handle is "
        f"{commits['refresh'] / commits['lake']:.0%}; deltalake alone (open the table afresh, "
        f"then overwrite) takes about {commits['open'] + commits['raw']:.3f} s.",
        f"- Census: without the lists of prompts and tokens and the join with `graphs`, the "
        f"query takes {grouped:.2f} s of its {whole:.2f} s; the same view SQL over the old "
        f"hive files takes {parts_old[list(CENSUS_PARTS)[-1]]:.2f} s: the view's list "
        "aggregations, not the table format, dominate.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
