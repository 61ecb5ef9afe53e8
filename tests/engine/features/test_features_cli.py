"""``ct features build`` and ``ct features show`` through the ``ct`` command's ``main``: a real
toy-world build, the card it prints, one error line (exit 2) for each bad input, and no torch
for ``show`` and ``--help``."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import re
from pathlib import Path

import pytest

from ct_cli.main import main
from ct_engine.commands import features_build
from ct_engine.features.files import FeatureFiles
from tests.test_cli_imports import _ct

BUILD = ["features", "build", "toy-world", "toy-world-plt", "--no-progress"]


def run_ct(argv: list[str]) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``ct argv``, in process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as stop:
            rc = stop.code
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """A 3,000-token build: ``(its folder, what the command printed)``."""
    out = tmp_path_factory.mktemp("cli") / "toy"
    rc, stdout, stderr = run_ct(BUILD + ["--tokens", "3000", "--window", "32", "--out", str(out)])
    assert rc == 0, stderr
    return out, stdout


def test_build_writes_the_files_and_says_so(built):
    out, printed = built
    files = FeatureFiles(out)
    assert (files.n_layers, files.d_transcoder(0), files.n_tokens) == (4, 1024, 3000)
    assert files.model_name == "toy-world"
    assert files.corpus == "toy-world generated text"
    cards = list(files.cards())
    dead = sum(card.n_active == 0 for card in cards)
    labelled = sum(bool(card.label) for card in cards)
    lines = printed.splitlines()
    assert lines[0] == "features: 4 layers x 1,024 = 4,096 features of toy-world-plt on toy-world"
    assert lines[3].startswith(f"labelled: {labelled:,} (") and labelled > 0
    assert "corpus: toy-world generated text, 3,000 tokens read" in lines
    assert f"dead (never fired): {dead:,} ({100 * dead / 4096:.1f}%)" in lines
    assert 0 < dead < 4096
    assert f"view: ct serve --features_dir {out}" in lines
    assert f"      ct features show LAYER FEATURE --features_dir {out}" in lines
    assert any(line.startswith(f"written to {out} (") for line in lines)


def test_show_prints_the_card(built):
    out, _ = built
    files = FeatureFiles(out)
    layer, feature = 0, 5
    card = files.card(layer, feature)
    assert card.n_active > 3 and card.groups  # a feature that fires: there is a card to show
    rc, printed, err = run_ct(
        ["features", "show", str(layer), str(feature), "--features_dir", str(out)]
    )
    assert (rc, err) == (0, "")
    lines = printed.splitlines()
    assert lines[0].startswith(f"layer {layer}, feature {feature} · ")
    assert lines[2] == f"label: {card.label} ({card.label_source})" and card.label
    assert lines[3].startswith(
        f"fires on {card.n_active:,} of 3,000 tokens ({100 * card.n_active / 3000:.3g}%); "
        f"activation min {card.act_min:.4g}, mean {card.act_mean:.4g}, max {card.act_max:.4g}"
    )
    top = card.top_examples[0]
    marked = f"«{top.tokens[top.max_pos]}»"
    first = next(line for line in lines if marked in line)
    assert first.split()[0] == f"{top.max_act:.4g}"  # the strongest context comes first
    assert f"{top.tokens[top.max_pos]} {top.acts[top.max_pos]:.4g}" in printed
    assert "top logits (promoted):" in lines and card.top_logits[0][0] in printed
    assert "fires most on tokens:" in lines
    assert f"{card.top_tokens[0][0]} ×{card.top_tokens[0][1]:,}" in printed
    # one histogram row per bin ("lo – hi  bar  count"); an empty bin has no bar
    rows = [line for line in lines if re.match(r"^ +\S+ – \S+ ", line)]
    assert [int(row.split()[-1].replace(",", "")) for row in rows] == card.histogram_counts
    with_bar = [row for row in rows if "█" in row or "▏" in row]
    assert len(with_bar) == sum(count > 0 for count in card.histogram_counts)
    assert any(line.startswith("Quantile ") for line in lines)


def test_show_finds_the_default_build_folder(built, tmp_path, monkeypatch):
    out, _ = built
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "toy-world-plt").symlink_to(out)
    monkeypatch.chdir(tmp_path)
    rc, printed, err = run_ct(["features", "show", "1", "3", "toy-world", "toy-world-plt"])
    assert (rc, err) == (0, "") and printed.startswith("layer 1, feature 3 · ")
    rc, _, err = run_ct(["features", "show", "1", "3", "other-model", "toy-world-plt"])
    assert rc == 2 and err == (
        "ct features show: error: features/toy-world-plt holds features of model "
        "'toy-world', not 'other-model'\n"
    )


def _one_error(argv: list[str], prog: str) -> str:
    rc, _, err = run_ct(argv)
    assert rc == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"ct features {prog}: error: "), err
    return err.removeprefix(f"ct features {prog}: error: ").rstrip("\n")


def test_bad_build_inputs(tmp_path):
    out = ["--out", str(tmp_path / "out")]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert _one_error(BUILD + ["--corpus", str(empty)] + out, "build") == (
        f"corpus {empty}: no documents (the file is empty)"
    )
    short = tmp_path / "short.txt"
    short.write_text("Mosho lives in Ludus .\n")
    message = _one_error(BUILD + ["--corpus", str(short), "--window", "32"] + out, "build")
    assert message.startswith("the corpus is shorter than one context window: ")
    csv = tmp_path / "corpus.csv"
    csv.write_text("text\nhello\n")
    assert _one_error(BUILD + ["--corpus", str(csv)] + out, "build") == (
        f"corpus {csv}: unknown format '.csv'; use a .txt (one document per line), .jsonl or "
        ".parquet file"
    )
    missing = tmp_path / "missing.jsonl"
    assert _one_error(BUILD + ["--corpus", str(missing)] + out, "build") == (
        f"corpus {missing}: no such file"
    )
    assert _one_error(BUILD + ["--tokens", "0"] + out, "build") == (
        "--tokens must be positive, got 0"
    )
    assert _one_error(BUILD + ["--window", "-3"] + out, "build") == (
        "--window must be positive, got -3"
    )
    assert _one_error(["features", "build", "some/model", "some/set"] + out, "build").startswith(
        "no feature corpus for model 'some/model': give a .txt, .jsonl or .parquet file"
    )
    assert not (tmp_path / "out").exists()


def test_bad_show_inputs(built, tmp_path):
    out, _ = built
    given = ["--features_dir", str(out)]
    assert _one_error(["features", "show", "4", "0"] + given, "show") == (
        f"layer 4 is out of range: {out} has layers 0..3"
    )
    assert _one_error(["features", "show", "0", "1024"] + given, "show") == (
        "feature 1024 is out of range: layer 0 has features 0..1023"
    )
    assert _one_error(["features", "show", "0", "0", "--features_dir", str(tmp_path)], "show") == (
        f"{tmp_path / 'index.json.gz'}: missing (not a circuit-tracer features folder)"
    )
    (tmp_path / "index.json.gz").write_text(json.dumps([]))
    assert _one_error(
        ["features", "show", "0", "0", "--features_dir", str(tmp_path)], "show"
    ).startswith(f"{tmp_path / 'index.json.gz'}: not gzip-compressed JSON (")
    assert _one_error(["features", "show", "0", "0"], "show") == (
        "give MODEL TRANSCODERS or --features_dir DIR"
    )


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["features", "build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "corpus tokens to read (default: 200000)" in text
    assert "tokens per context window (default: 64)" in text
    assert "tokens per forward pass (default: 4096)" in text


def test_the_parser_defaults_are_build_dashboards_own():
    from ct_engine.features import CorpusSpec, build_dashboards

    defaults = {
        name: p.default for name, p in inspect.signature(build_dashboards).parameters.items()
    }
    assert features_build.DEFAULT_TOKENS == defaults["max_tokens"] == CorpusSpec().tokens
    assert features_build.DEFAULT_WINDOW == defaults["window"]
    assert features_build.DEFAULT_TOP_K == defaults["top_k"]
    assert features_build.DEFAULT_BATCH_TOKENS == defaults["batch_tokens"]


def test_show_and_help_import_no_torch(built, tmp_path):
    out, _ = built
    rc, printed, loaded = _ct(["features", "show", "0", "5", "--features_dir", str(out)], tmp_path)
    assert rc == 0 and printed.startswith("layer 0, feature 5 · ") and loaded == []
    rc, printed, loaded = _ct(["features", "--help"], tmp_path)
    assert rc == 0 and "usage: ct features" in printed and loaded == []
    rc, _, loaded = _ct(["features", "build", "--help"], tmp_path)
    assert rc == 0 and loaded == []
