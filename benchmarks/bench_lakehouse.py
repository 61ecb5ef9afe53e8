"""Dagster overhead: the lakehouse's graph assets versus the same science in a plain loop.

Both sides run in this process on one tiny model (4 layers, d_model 64, random PLT transcoders)
and the same prompts (~20 tokens each):

* **direct**: one ``ReplacementModel`` load, then per prompt ``attribute``, node influence,
  ``prune_graph``, ``compute_graph_scores`` + ``compute_pruned_graph_scores``, the ablations
  of ``ct_assets/defs/assets/interventions.py`` and ``create_graph_files``;
* **dagster**: ``ct_assets.lib.runner.materialize`` (registration, one partition-range run of
  the graph assets, the census run) on a temporary sqlite Dagster instance, lake and MLflow
  store; the model assets (transcoder cache and quality) are skipped, as the loop has none.

A warm-up attribution runs first so that neither side pays for imports or first-call costs.
Lake writes, reads, graph files, plots and MLflow calls are timed by wrapping the functions the
assets call (in this process only), so the report can say where Dagster's extra time goes.

    nice -n 10 .venv/bin/python benchmarks/bench_lakehouse.py [--prompts 20]
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "lakehouse.md"
SETTINGS = {
    "n_layers": 4,
    "d_model": 64,
    "d_mlp": 128,
    "d_transcoder": 256,
    "prompt_words": 19,  # + <bos> = 20 tokens
    "max_n_logits": 5,
    "desired_logit_prob": 0.9,
    "max_feature_nodes": 500,
    "batch_size": 64,
    "top_features": 3,
    "top_targets": 2,
    "node_threshold": 0.8,
    "edge_threshold": 0.98,
}

# Once per graph on both sides: the node table's computation is kept with the graph and
# pruning and the full graph's scores reuse it (ct_engine.graph.graph_node_influence).
INFLUENCE = "node influence (once per graph, shared with pruning and scores)"
# Every computation of it in the Dagster run, by any asset (part of the science or of the
# node table above, so not counted again as time around the science): a graph read again
# from its file takes the influence its nodes table stored instead.
COMPUTED = "node influence computations (all assets; inside the rows above)"
TIMES: dict[str, float] = collections.defaultdict(float)
CPU: dict[str, float] = collections.defaultdict(float)
COUNTS: dict[str, int] = collections.defaultdict(int)


def build_model(root: Path) -> tuple[Path, Path]:
    from ct_engine.tiny import (
        FAMILY_HOOKS,
        TinyModelSpec,
        build_random_transcoders,
        build_tiny_model,
    )

    s = SETTINGS
    spec = TinyModelSpec(
        family="llama",
        n_layers=s["n_layers"],
        d_model=s["d_model"],
        n_heads=4,
        n_kv_heads=2,
        d_mlp=s["d_mlp"],
    )
    model = build_tiny_model(root / "model", spec)
    hooks = FAMILY_HOOKS["llama"]
    transcoders = build_random_transcoders(
        root / "plt",
        n_layers=s["n_layers"],
        d_model=s["d_model"],
        d_transcoder=s["d_transcoder"],
        kind="plt",
        activation="jump_relu",
        feature_input_hook=hooks[0],
        feature_output_hook=hooks[1],
        threshold_scale=1.5,
        model_name=str(model),
    )
    return model, transcoders


def make_prompts(n: int) -> list[str]:
    from ct_engine.tiny import _WORDS

    words = [w for w in dict.fromkeys(_WORDS) if w.isalpha()]
    rng = random.Random(0)
    prompts = []
    while len(prompts) < n:
        text = " ".join(rng.choice(words) for _ in range(SETTINGS["prompt_words"]))
        if text not in prompts:
            prompts.append(text)
    return prompts


def write_config(folder: Path, model: Path, transcoders: Path) -> Path:
    s = SETTINGS
    config = {
        "lake": "lake",
        "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "experiment": "bench", "timeout_s": 60},
        "models": [
            {
                "name": "bench",
                "model": str(model),
                "transcoders": str(transcoders),
                "batch_size": s["batch_size"],
            }
        ],
        "attribution": {
            "max_n_logits": s["max_n_logits"],
            "desired_logit_prob": s["desired_logit_prob"],
            "max_feature_nodes": s["max_feature_nodes"],
        },
        "pruning": {"node_threshold": s["node_threshold"], "edge_threshold": s["edge_threshold"]},
        "interventions": {"top_features": s["top_features"], "top_targets": s["top_targets"]},
    }
    path = folder / "ct_lakehouse.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# -- the direct loop ------------------------------------------------------------------------


def interventions(model, graph, influence, node_mask, top_features, top_targets) -> int:
    """The ablations of ``intervention_results`` (same selection, same forward passes)."""
    from ct_assets.defs.assets.interventions import _demeaned, _row

    features = [i for i in range(graph.n_features) if bool(node_mask[i])]
    features.sort(key=lambda i: float(influence[i]), reverse=True)
    features = features[:top_features]
    real = [k for k, t in enumerate(graph.logit_targets) if t.vocab_idx < model.d_vocab]
    real.sort(key=lambda k: float(graph.logit_probabilities[k]), reverse=True)
    targets = real[:top_targets]
    ids = torch.tensor([graph.logit_targets[k].vocab_idx for k in targets])
    adjacency_rows = {k: _row(graph, graph.logit_node(k)) for k in targets}
    tokens = graph.input_tokens.to(model.device)
    selected = graph.active_features[graph.selected_features].cpu()
    with model.zero_softcap():
        base_direct = _demeaned(model.get_activations(tokens)[0], ids)
    base_logits, _ = model.get_activations(tokens)
    base_total = _demeaned(base_logits, ids)
    torch.softmax(base_logits[0, -1].double(), -1)[ids]
    n = 0
    for node in features:
        layer, pos, feat = (int(v) for v in selected[node])
        ablate = [(layer, pos, feat, 0.0)]
        with model.zero_softcap():
            direct, _ = model.feature_intervention(
                tokens, ablate, constrained_layers=range(model.n_layers), return_activations=False
            )
        total, _ = model.feature_intervention(
            tokens, ablate, freeze_attention=False, return_activations=False
        )
        direct_delta = _demeaned(direct, ids) - base_direct
        _demeaned(total, ids) - base_total
        torch.softmax(total[0, -1].double(), -1)[ids]
        for k in targets:
            float(adjacency_rows[k][node]), float(direct_delta[targets.index(k)])
            n += 1
    return n


def run_direct(model_dir: Path, transcoders: Path, prompts: list[str], out: Path) -> dict:
    from ct_engine import ReplacementModel, attribute
    from ct_engine.graph import (
        compute_graph_scores,
        compute_pruned_graph_scores,
        graph_node_influence,
        prune_graph,
    )
    from ct_engine.graph.files import create_graph_files

    s = SETTINGS
    start, cpu = time.perf_counter(), time.process_time()
    model = ReplacementModel.from_pretrained(str(model_dir), str(transcoders))
    load_s = time.perf_counter() - start
    phases = collections.defaultdict(float)
    for i, prompt in enumerate(prompts):
        t0 = time.perf_counter()
        graph = attribute(
            prompt,
            model,
            max_n_logits=s["max_n_logits"],
            desired_logit_prob=s["desired_logit_prob"],
            batch_size=s["batch_size"],
            max_feature_nodes=s["max_feature_nodes"],
        )
        t1 = time.perf_counter()
        influence = graph_node_influence(graph)  # what the lake's node table stores
        result = prune_graph(graph, s["node_threshold"], s["edge_threshold"])
        t2 = time.perf_counter()
        compute_graph_scores(graph)
        compute_pruned_graph_scores(graph, result.node_mask)
        t3 = time.perf_counter()
        interventions(
            model, graph, influence, result.node_mask, s["top_features"], s["top_targets"]
        )
        t4 = time.perf_counter()
        create_graph_files(
            graph,
            f"bench__{i}",
            out,
            scan=graph.scan if graph.scan is not None else str(transcoders),
            node_threshold=s["node_threshold"],
            edge_threshold=s["edge_threshold"],
            tokenizer=model.tokenizer,
        )
        t5 = time.perf_counter()
        for name, dt in [
            ("attribute", t1 - t0),
            ("influence + prune", t2 - t1),
            ("scores", t3 - t2),
            ("interventions", t4 - t3),
            ("graph files", t5 - t4),
        ]:
            phases[name] += dt
    return {
        "wall_s": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu,
        "load_s": load_s,
        "phases": dict(phases),
    }


# -- the Dagster side -----------------------------------------------------------------------


def _timed(category: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[category] += time.perf_counter() - t0
            CPU[category] += time.process_time() - c0
            COUNTS[category] += 1

    return wrapper


def instrument() -> None:
    """Wrap what the assets call around their science (this process only)."""
    import transformers

    import ct_assets.defs.assets.graphs as graphs_module
    import ct_assets.lib.tracking as tracking
    import ct_engine.graph.pruning as pruning
    import ct_lake.records as records
    from ct_engine.graph import Graph
    from ct_lake.lake import Lake

    Lake.write_table = _timed("lake writes (Arrow + Parquet)", Lake.write_table)
    Lake.read_table = _timed("lake reads", Lake.read_table)
    for name in ("nodes_table", "edges_table", "logit_targets_rows", "active_features_table"):
        setattr(records, name, _timed("lake rows from graph", getattr(records, name)))
    records.node_influence = _timed(INFLUENCE, records.node_influence)
    pruning.node_influence = _timed(COMPUTED, pruning.node_influence)
    Graph.save = _timed("graph .safetensors save", Graph.save)
    Graph.load = staticmethod(_timed("graph .safetensors load", Graph.load))
    graphs_module.plot_pruned_graph = _timed("pruned-graph plot", graphs_module.plot_pruned_graph)
    tracking._log = _timed("MLflow logging", tracking._log)
    tok = transformers.AutoTokenizer.from_pretrained.__func__
    transformers.AutoTokenizer.from_pretrained = classmethod(
        _timed("tokenizer load (graph_files)", tok)
    )


def run_dagster(config_path: Path, prompts: list[str], home: Path) -> dict:
    import dagster as dg
    from mlflow.tracking import MlflowClient

    from ct_assets.lib.resources import EngineResource
    from ct_assets.lib.runner import materialize
    from ct_lake.config import load_config

    config = load_config(config_path)
    # Steady state: the MLflow store and experiment exist (their creation takes seconds once).
    client = MlflowClient(tracking_uri=config.tracking_uri)
    client.create_experiment("bench", artifact_location=(home / "mlartifacts").as_uri())
    engine = EngineResource()  # its model cache: the loads of this materialization only
    for counter in (TIMES, CPU, COUNTS):
        counter.clear()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        start, cpu = time.perf_counter(), time.process_time()
        summary = materialize(
            config, "bench", prompts, instance, with_model_assets=False, engine=engine
        )
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert summary.success, "the Dagster materialization failed"
        runs = []
        for run_id in summary.run_ids:
            stats = instance.get_run_stats(run_id)
            steps = instance.get_run_step_stats(run_id)
            run = instance.get_run_by_id(run_id)
            runs.append(
                {
                    "run_id": run_id,
                    "job": run.job_name,
                    "run_s": stats.end_time - stats.start_time,
                    "steps_s": sum(s.end_time - s.start_time for s in steps),
                    "steps": {s.step_key: s.end_time - s.start_time for s in steps},
                    "events": len(instance.all_logs(run_id)),
                }
            )
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "loads": [name for name, _ in engine.models.load_events],
        "load_s": sum(dt for _, dt in engine.models.load_events),
        "runs": runs,
        "times": dict(TIMES),
        "cpu": dict(CPU),
        "counts": dict(COUNTS),
    }


# -- report ---------------------------------------------------------------------------------


def _pct(value: float, base: float) -> str:
    return f"{100 * (value - base) / base:+.1f}%"


def report(n: int, direct: dict, dagster: dict, warmup_s: float) -> str:
    graph_run = max(dagster["runs"], key=lambda r: r["run_s"])

    def extra(values: dict[str, float]) -> float:
        return sum(v / 2 if k == INFLUENCE else v for k, v in values.items() if k != COMPUTED)

    accounted, accounted_cpu = extra(dagster["times"]), extra(dagster["cpu"])
    load = os.getloadavg()
    lines = [
        f"## max_feature_nodes {SETTINGS['max_feature_nodes']}",
        "",
        "| setting | value |",
        "|---|---|",
        f"| machine | {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs "
        f"(load average {load[0]:.1f} at the end), Python {platform.python_version()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} torch thread(s) |",
        f"| model | tiny llama, {SETTINGS['n_layers']} layers, d_model {SETTINGS['d_model']}, "
        f"random PLT transcoders, d_transcoder {SETTINGS['d_transcoder']} |",
        f"| prompts | {n}, {SETTINGS['prompt_words'] + 1} tokens each |",
        f"| attribution | max_feature_nodes {SETTINGS['max_feature_nodes']}, max_n_logits "
        f"{SETTINGS['max_n_logits']}, batch_size {SETTINGS['batch_size']} |",
        f"| interventions | top {SETTINGS['top_features']} features x top "
        f"{SETTINGS['top_targets']} targets |",
        "| Dagster | `runner.materialize(..., with_model_assets=False)`: sqlite instance, "
        "in-process executor, one partition-range run; MLflow on sqlite (store created "
        "beforehand) |",
        "",
        "| measurement | wall s | CPU s | overhead (wall) | overhead (CPU) |",
        "|---|---|---|---|---|",
        f"| warm-up (imports, one attribution; not counted) | {warmup_s:.1f} | | | |",
        f"| direct loop (1 model load + {n} prompts) | {direct['wall_s']:.1f} | "
        f"{direct['cpu_s']:.1f} | | |",
        f"| Dagster graph run (range run; run stats) | {graph_run['run_s']:.1f} | | "
        f"{_pct(graph_run['run_s'], direct['wall_s'])} | |",
        f"| Dagster `materialize` in all (register + graph run + census run) | "
        f"{dagster['wall_s']:.1f} | {dagster['cpu_s']:.1f} | "
        f"{_pct(dagster['wall_s'], direct['wall_s'])} | "
        f"{_pct(dagster['cpu_s'], direct['cpu_s'])} |",
        "",
        "Model loads in the Dagster run (the engine resource's `load_events`): "
        f"**{len(dagster['loads'])}** "
        f"({', '.join(dagster['loads'])}, {dagster['load_s']:.2f} s); direct loop: 1 "
        f"({direct['load_s']:.2f} s).",
        "",
        "Direct loop by phase (wall): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in direct["phases"].items())
        + ".",
        "",
        "Where the Dagster side's time around the science goes (functions the assets call, "
        "wrapped in this process):",
        "",
        "| category | wall s | CPU s | calls |",
        "|---|---|---|---|",
    ]
    for name, dt in sorted(dagster["times"].items(), key=lambda kv: -kv[1]):
        lines.append(
            f"| {name} | {dt:.2f} | {dagster['cpu'][name]:.2f} | {dagster['counts'][name]} |"
        )
    rest = dagster["wall_s"] - direct["wall_s"] - accounted
    rest_cpu = dagster["cpu_s"] - direct["cpu_s"] - accounted_cpu
    lines += [
        f"| rest: Dagster (events, storage, run and step setup), differences and noise | "
        f"{rest:.2f} | {rest_cpu:.2f} | |",
        "",
        "Dagster runs:",
        "",
        "| run | wall s | sum of steps s | events |",
        "|---|---|---|---|",
    ]
    for r in dagster["runs"]:
        what = "graph assets" if r is graph_run else "census"
        lines.append(f"| {what} | {r['run_s']:.1f} | {r['steps_s']:.1f} | {r['events']} |")
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in graph_run["steps"].items())
    lines += ["", f"Graph run steps (wall): {steps}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--max-feature-nodes",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[500, 7500],
        help="comma-separated settings to compare (7500 is the config default)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared machine, spinning OpenMP threads distort timings)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sections = []
    with tempfile.TemporaryDirectory(prefix="bench-lakehouse-") as tmp:
        tmp = Path(tmp)
        model_dir, transcoders = build_model(tmp / "files")
        prompts = make_prompts(args.prompts)
        t0 = time.perf_counter()
        run_direct(model_dir, transcoders, prompts[:1], tmp / "warmup")
        import dagster  # noqa: F401
        import mlflow  # noqa: F401

        import ct_assets.definitions  # noqa: F401

        warmup_s = time.perf_counter() - t0
        print(f"warm-up {warmup_s:.1f} s", file=sys.stderr)
        instrument()
        for max_nodes in args.max_feature_nodes:
            SETTINGS["max_feature_nodes"] = max_nodes
            folder = tmp / f"nodes{max_nodes}"
            (folder / "dagster_home").mkdir(parents=True)
            config_path = write_config(folder, model_dir, transcoders)
            os.environ["CT_CONFIG"] = str(config_path)
            os.environ["DAGSTER_HOME"] = str(folder / "dagster_home")
            direct = run_direct(model_dir, transcoders, prompts, folder / "direct")
            print(f"direct {direct['wall_s']:.1f} s {direct['phases']}", file=sys.stderr)
            dagster_result = run_dagster(config_path, prompts, folder / "dagster_home")
            print(f"dagster {dagster_result['wall_s']:.1f} s", file=sys.stderr)
            sections.append(report(args.prompts, direct, dagster_result, warmup_s))
    flags = "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    text = "\n".join(
        [
            "# Lakehouse overhead: Dagster in process versus a plain ct_engine loop",
            "",
            f"Command: `nice -n 10 .venv/bin/python benchmarks/bench_lakehouse.py{flags}`",
            "",
            "CPU time (`time.process_time`, all threads of the process) is the robust number "
            "on a shared machine; wall time depends on what else runs.",
            "",
            *sections,
        ]
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
