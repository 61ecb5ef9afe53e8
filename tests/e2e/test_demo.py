"""``ct demo`` (the embedded toy world) and ``ct attribute`` from the command line."""

from __future__ import annotations

import json

from ct_cli.main import main
from ct_engine.graph import Graph


def test_demo_prints_summary_and_saves_graph(tmp_path, capsys):
    workdir = tmp_path / "demo"
    assert main(["demo", "--workdir", str(workdir), "--batch_size", "64"]) == 0
    out = capsys.readouterr().out
    for line in ("prompt:", "targets:", "nodes:", "pruned", "scores: replacement", "timings:"):
        assert line in out
    assert "top features (layer, pos, feature)" in out
    graph = Graph.load(workdir / "graph.safetensors")
    assert graph.n_features > 0 and graph.input_string.startswith("<bos>")
    # The salient-logit rule: the targets cover 95% of the probability, or hit the cap of 10.
    assert graph.logit_probabilities.sum() >= 0.95 or graph.n_logits == 10
    # The toy world's answer: Mosho lives in Soubathia, whose capital is Ludus.
    assert graph.logit_targets[0].token_str == "Ludus" and "'Ludus' p=" in out


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
    assert "N_act=109 (measured)" in out  # the demo prompt's active features
