"""The README's main command: ``ct demo`` builds the default model, attributes, summarizes."""

from __future__ import annotations

from ct_engine.cli import main
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


def test_attribute_cli_reports_bad_input(tmp_path, capsys):
    workdir = tmp_path / "demo"
    assert main(["demo", "--workdir", str(workdir), "--max_feature_nodes", "50"]) == 0
    capsys.readouterr()
    code = main(
        [
            "attribute",
            "-p",
            "   ",
            "-t",
            str(workdir / "transcoders-plt"),
            "-m",
            str(workdir / "model"),
        ]
    )
    assert code == 2
    assert "the prompt is empty" in capsys.readouterr().err
