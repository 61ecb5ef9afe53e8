"""``ct eval-transcoders`` (through the ``ct`` parser) and the per-layer plot."""

from __future__ import annotations

import argparse
import json

import pytest

from ct_engine.commands.eval_transcoders import run
from ct_engine.metrics import LAYER_METRICS, evaluate_transcoders
from ct_engine.metrics.plot import plot_metrics
from ct_engine.metrics.table import format_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _parse(argv: list[str]) -> argparse.Namespace:
    from ct_engine.cli import build_parser

    return build_parser().parse_args(argv)


def test_cli_prints_a_table_and_saves_plot_and_json(
    tiny_model_dir, transcoder_dir, tmp_path, capsys
):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the capital of Texas is Austin\n\nMira lives in Paris\none two three\n")
    args = _parse(
        [
            "eval-transcoders",
            str(tiny_model_dir("llama")),
            str(transcoder_dir("llama", "clt")),
            "--prompts",
            str(prompts),
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--plot",
            str(tmp_path / "out" / "metrics.png"),
            "--json",
            str(tmp_path / "metrics.json"),
            "--no-progress",
        ]
    )
    assert args.command == "eval-transcoders" and args.n_tokens is None
    assert run(args) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.split()[:1] == ["layer"])
    assert "fvu_cen" in header and "nmse_unc" in header and "ce_recov" in header
    labels = {"0", "1", "2", "3", "mean"}
    first = [line.split()[0] for line in lines if line.strip() and line.split()[0] in labels]
    assert first == ["0", "1", "2", "mean"]  # 3 layers, then the mean row
    assert "13 tokens scored" in out  # 6 + 4 + 3 words; BOS excluded
    assert "top-1 agreement" in out and "cross-layer" in out
    png = (tmp_path / "out" / "metrics.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["n_layers"] == 3 and record["n_tokens"] == 13 and record["is_cross_layer"]
    assert len(record["ce_loss_recovered"]) == 3 and "fvu_centered" in record["mean"]


def test_cli_default_sample_and_token_cap(tiny_model_dir, transcoder_dir, capsys):
    args = _parse(
        [
            "eval-transcoders",
            str(tiny_model_dir("llama")),
            str(transcoder_dir("llama", "plt_skip")),
            "--n-tokens",
            "25",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "25 tokens scored" in out and "per-layer transcoders, skip" in out


def test_cli_reports_bad_input(tiny_model_dir, transcoder_dir, tmp_path, capsys):
    args = _parse(
        [
            "eval-transcoders",
            str(tiny_model_dir("llama")),
            str(transcoder_dir("llama", "clt")),
            "--prompts",
            str(tmp_path / "missing.txt"),
        ]
    )
    assert run(args) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plot_is_a_png_and_table_has_a_mean_row(replacement_model, tmp_path):
    model = replacement_model("llama", "plt_jumprelu")
    metrics = evaluate_transcoders(model, ["the capital of Texas is Austin"], progress=False)
    path = plot_metrics(metrics, tmp_path / "p.png", title="tiny")
    assert path.read_bytes()[:8] == PNG_MAGIC
    table = format_table(metrics)
    rows = [line.split()[0] for line in table.splitlines()[:7]]
    assert [r for r in rows if not r.startswith("-")] == ["layer", "0", "1", "2", "mean"]
    mean_row = table.splitlines()[6].split()
    assert float(mean_row[LAYER_METRICS.index("l0") + 1]) == pytest.approx(metrics.mean["l0"], 1e-3)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_transcoders(model, ["the"], batch_size=0, progress=False)
