"""Short training runs: files, bit-for-bit determinism, and loading into the engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ct_engine.toyworld.corpus import CorpusConfig, read_corpus
from ct_engine.toyworld.model import ModelSpec
from ct_engine.toyworld.train_model import main, train_model
from ct_engine.toyworld.training import TrainConfig
from ct_engine.toyworld.world import World, WorldSizes

SIZES = WorldSizes(countries=3, cities_per_country=3, people_per_country=3)
SHORT = dict(
    world_sizes=SIZES,
    corpus=CorpusConfig(n_docs=300),
    model_spec=ModelSpec(n_layers=2, d_model=32, n_heads=2, n_kv_heads=2, d_mlp=64),
    train=TrainConfig(steps=30, batch_size=16, warmup_steps=5, lr=1e-2, threads=1),
    progress=False,
)


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("toyworld-train")
    return [train_model(root / name, seed=0, **SHORT) for name in ("a", "b")]


def test_writes_model_dir(short_runs):
    result = short_runs[0]
    out = Path(result.out_dir)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "corpus.txt", "eval.json"):
        assert (out / name).exists(), name
    record = json.loads((out / "eval.json").read_text())
    for key in ("seed", "steps", "train_seconds", "n_parameters", "accuracy", "summary"):
        assert key in record
    assert record["steps"] == 30 and record["seed"] == 0
    assert set(record["accuracy"]) == {"one_hop", "two_hop"}
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 2
    assert len(read_corpus(out / "corpus.txt")) == 300
    assert result.final_loss < 5.0  # ln(vocab) ~ 5.5 at the start


def test_same_seed_gives_identical_weights(short_runs):
    a, b = (load_file(f"{r.out_dir}/model.safetensors") for r in short_runs)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("corpus.txt", "tokenizer.json", "config.json"):
        assert (
            open(f"{short_runs[0].out_dir}/{name}").read()
            == open(f"{short_runs[1].out_dir}/{name}").read()
        )


def test_model_loads_in_the_engine(short_runs, tmp_path):
    from ct_engine import ReplacementModel, attribute
    from ct_engine.tiny import FAMILY_HOOKS, build_random_transcoders

    spec = SHORT["model_spec"]
    tc = build_random_transcoders(
        tmp_path / "tc",
        n_layers=spec.n_layers,
        d_model=spec.d_model,
        d_transcoder=4 * spec.d_model,
        feature_input_hook=FAMILY_HOOKS["llama"][0],
        feature_output_hook=FAMILY_HOOKS["llama"][1],
    )
    model = ReplacementModel.from_pretrained(short_runs[0].out_dir, tc, device="cpu")
    prompt = World.generate(0, SIZES).two_hop_prompts()[0]
    assert prompt.prompt.startswith("The capital of the country where")
    graph = attribute(prompt.prompt, model, max_n_logits=5, batch_size=64)
    n_tokens = len(prompt.prompt.split()) + 1  # word-level tokens plus the BOS
    assert graph.input_tokens.shape[0] == n_tokens
    assert int(graph.input_tokens[0]) == 1  # <bos>
    assert torch.isfinite(graph.adjacency_matrix).all()
    assert graph.adjacency_matrix.shape[0] > n_tokens


def test_cli_parses_and_runs(tmp_path, monkeypatch):
    """The module entry point, on the short settings (the defaults are the full run)."""
    import ct_engine.toyworld.train_model as cli

    seen = {}

    def fake_train_model(out, seed, steps, *, train, progress):
        seen.update(out=out, seed=seed, steps=steps, threads=train.threads, progress=progress)
        return train_model(tmp_path / "m", seed, steps, **{**SHORT, "progress": False})

    monkeypatch.setattr(cli, "train_model", fake_train_model)
    assert main(["--out", str(tmp_path / "m"), "--seed", "0", "--steps", "3", "--no-progress"]) == 0
    assert seen == dict(out=str(tmp_path / "m"), seed=0, steps=3, threads=2, progress=False)
    assert json.loads((tmp_path / "m" / "eval.json").read_text())["steps"] == 3
