"""``ct demo`` (the embedded toy world) and ``ct attribute`` from the command line."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from ct_cli.main import main
from ct_engine.graph import Graph, compute_graph_scores, prune_graph


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``ct demo`` at its defaults: ``(printed summary, saved graph)``."""
    workdir = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--workdir", str(workdir), "--batch_size", "64"]) == 0
    return printed.getvalue(), Graph.load(workdir / "graph.safetensors")


def test_demo_prints_summary_and_saves_graph(demo):
    out, graph = demo
    for line in ("prompt:", "targets:", "nodes:", "pruned", "scores: replacement", "timings:"):
        assert line in out
    assert "top features (layer, pos, feature)" in out
    assert graph.n_features > 0 and graph.input_string.startswith("<bos>")
    # The salient-logit rule: the targets cover 95% of the probability, or hit the cap of 10.
    assert graph.logit_probabilities.sum() >= 0.95 or graph.n_logits == 10
    # The toy world's answer: Mosho lives in Soubathia, whose capital is Ludus.
    assert graph.logit_targets[0].token_str == "Ludus" and "'Ludus' p=" in out


def strongest_path(graph: Graph, edges: torch.Tensor, source: int, target: int) -> list[int]:
    """The path from ``source`` to ``target`` over ``edges`` (``(N, N)`` bool, kept edges)
    whose product of edge shares is largest, as node indices. An edge's share is its |weight|
    over all of its target's |incoming weights| (the normalisation of node influence), so a
    path's product is the share of the target's attribution that flows along it."""
    weights = graph.dense_adjacency().abs().double()
    shares = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-30)
    log_share = torch.where(edges, shares.log(), torch.tensor(-torch.inf, dtype=torch.float64))
    best = torch.full((graph.n_nodes,), -torch.inf, dtype=torch.float64)
    best[source] = 0.0
    previous = torch.full((graph.n_nodes,), -1, dtype=torch.long)
    for _ in range(graph.n_nodes):  # longest-path relaxation; the graph is acyclic
        value, via = (log_share + best[None, :]).max(dim=1)
        better = value > best
        if not bool(better.any()):
            break
        best = torch.where(better, value, best)
        previous = torch.where(better, via, previous)
    assert torch.isfinite(best[target]), "no kept path from the source to the target"
    path = [target]
    while path[-1] != source:
        path.append(int(previous[path[-1]]))
    return path[::-1]


def test_demo_shows_the_two_hop_circuit(demo):
    """Mosho (the prompt's subject) -> a Soubathia feature at the last position (Mosho's
    country, never named in the prompt) -> Ludus (Soubathia's capital), kept by the default
    pruning and carrying the strongest path; the graph explains most of the logit."""
    from ct_engine import ReplacementModel
    from ct_engine.features.labels import toy_world_labels
    from ct_engine.presets import TOY_WORLD_TRANSCODERS

    _, graph = demo
    model = ReplacementModel.from_pretrained("toy-world", TOY_WORLD_TRANSCODERS, device="cpu")
    labels = toy_world_labels(model)  # the feature dashboards' ground-truth labels
    pruned = prune_graph(graph)  # the default thresholds, 0.8 / 0.98
    kept = pruned.node_mask
    words = [model.tokenizer.decode([int(t)]).strip() for t in graph.input_tokens]
    mosho = graph.token_node(words.index("Mosho"))
    ludus = graph.logit_node([t.token_str for t in graph.logit_targets].index("Ludus"))
    assert kept[mosho] and kept[ludus]
    features = graph.active_features[graph.selected_features].tolist()
    soubathia = {
        i
        for i, (layer, pos, feature) in enumerate(features)
        if kept[i] and pos == graph.n_pos - 1 and labels.get((layer, feature)) == "Soubathia"
    }
    assert soubathia, "no Soubathia feature at the last position survives pruning"
    path = strongest_path(graph, pruned.edge_mask.dense(), mosho, ludus)
    assert soubathia & set(path[1:-1]), [graph.node_info(i) for i in path]
    replacement, _ = compute_graph_scores(graph)
    assert replacement >= 0.7


MODEL_ARGS = ["-t", "toy-world-plt", "-m", "toy-world"]
PROMPT = ["-p", "The capital of the country where Mosho lives is"]


def test_attribute_cli_reports_bad_input(tmp_path, capsys):
    model_args = MODEL_ARGS
    out = ["-o", str(tmp_path / "g.pt")]
    assert main(["attribute", "-p", "   ", *model_args, *out]) == 2
    assert "the prompt is empty" in capsys.readouterr().err
    assert main(["attribute", "-p", "the capital", *model_args]) == 2
    assert "give -o/--graph_output_path" in capsys.readouterr().err
    bad_target = ["--target", "capital city", *out]
    assert main(["attribute", "-p", "the capital of", *model_args, *bad_target]) == 2
    assert "not exactly one" in capsys.readouterr().err


def test_attribute_cli_targets_and_graph_files(tmp_path, capsys, monkeypatch):
    files = ["--slug", "mosho", "--graph_file_dir", str(tmp_path / "files")]
    common = [*MODEL_ARGS, *PROMPT, "--max_feature_nodes", "40", "--batch_size", "32"]
    # Ludus is the right answer; Shaivir is another country's capital.
    assert main(["attribute", *common, "--target", "Ludus", "--target", "Shaivir", *files]) == 0
    out = capsys.readouterr().out
    assert "'Ludus'" in out and "'Shaivir'" in out
    document = json.loads((tmp_path / "files" / "mosho.json").read_text())
    logits = [n for n in document["nodes"] if n["feature_type"] == "logit"]
    assert [n["clerp"].split('"')[1] for n in logits] == ["Ludus", "Shaivir"]

    pt = tmp_path / "diff.pt"
    diff = ["--target-diff", "Ludus", "Shaivir", "-o", str(pt), "--server", *files]
    served = []  # --server: the blocking serve call is replaced; the app is checked below
    monkeypatch.delenv("CT_CONFIG", raising=False)
    monkeypatch.setattr(
        "ct_viewer.commands.attribute._serve_viewer", lambda app, port: served.append(app)
    )
    assert main(["attribute", *common, *diff, "--port", "8123"]) == 0
    captured = capsys.readouterr()
    assert "'Ludus - Shaivir'" in captured.out
    assert "serving the graph as file__mosho on port 8123" in captured.out
    from starlette.testclient import TestClient

    with TestClient(served[0]) as client:
        assert [g["id"] for g in client.get("/api/graphs").json()["graphs"]] == ["file__mosho"]
    graph = Graph.from_pt(pt)
    assert graph.logit_targets[0].token_str == "Ludus - Shaivir"
    assert graph.logit_targets[0].vocab_idx >= graph.cfg.d_vocab


def test_attribute_cli_estimates_memory(capsys):
    assert main(["attribute", *MODEL_ARGS, *PROMPT, "--estimate-memory"]) == 0
    out = capsys.readouterr().out
    assert "predicted peak" in out and "largest batch size that fits" in out
    # the demo prompt's active features with these transcoders (ct demo --transcoders plt)
    assert "N_act=124 (measured)" in out
