"""``ct intervene``: interventions from the command line on the demo model."""

from __future__ import annotations

import torch

from ct_cli.main import main
from ct_engine.replacement import ReplacementModel

PROMPT = "The capital of the country where Mosho lives is"
MODEL_ARGS = ["-t", "toy-world-plt", "-m", "toy-world"]


def test_intervene_prints_logit_changes_and_continuations(tmp_path, capsys):
    model_args = MODEL_ARGS
    model = ReplacementModel.from_pretrained("toy-world", "toy-world-plt", device="cpu")
    clean_logits, acts = model.get_activations(PROMPT)
    layer = model.n_layers - 1
    feat = int(acts[layer, -1].argmax())
    T = acts.shape[1]
    item = f"{layer},{T - 1},{feat}=*3"
    args = ["intervene", "-p", PROMPT, *model_args, item, "--top", "5", "--generate", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    clean = float(acts[layer, -1, feat])
    assert (
        f"layer {layer}, pos {T - 1}, feature {feat}: clean {clean:.3f} -> {3 * clean:.3f}" in out
    )
    assert "p before" in out and "Δlogit" in out
    # The top row is the most probable token after the intervention, with its probability.
    logits, _ = model.feature_intervention(PROMPT, [(layer, T - 1, feat, 3 * clean)])
    probs = torch.softmax(logits[0, -1].double(), -1)
    top = int(probs.argmax())
    table = out.split("Δlogit\n", 1)[1].splitlines()
    assert table[0].startswith(repr(model.tokenizer.decode([top])))
    assert f"{float(probs[top]):9.4f}" in table[0]
    assert "clean:      " in out and "intervened: " in out


def test_intervene_rejects_bad_items(tmp_path, capsys):
    model_args = MODEL_ARGS
    assert main(["intervene", "-p", PROMPT, *model_args, "2,5=1"]) == 2
    assert "expected layer,pos,feature=value" in capsys.readouterr().err
    assert main(["intervene", "-p", PROMPT, *model_args, "9,1,0=1"]) == 2
    assert "layer 9 is out of range" in capsys.readouterr().err
