"""Short PLT and CLT training runs on the tiny Llama model: quality, saving, loading, use."""

from __future__ import annotations

import json

import pytest
import torch

from ct_engine.training import TrainConfig, train_module, train_on_activations
from ct_engine.training.train_transcoders import TRAINING_FILE, main
from ct_engine.transcoders import CrossLayerTranscoder, TranscoderSet, load_transcoders

from .conftest import HOOKS

SHORT = dict(n_features=128, steps=150, batch_size=256, lr=4e-3, threads=1)


@pytest.fixture(scope="module")
def trained(llama_activations, tmp_path_factory):
    """``{kind: TrainingResult}`` of short runs, saved under a temporary folder."""
    root = tmp_path_factory.mktemp("trained")
    return {
        kind: train_on_activations(
            llama_activations,
            TrainConfig(kind=kind, **SHORT),
            hooks=HOOKS,
            out_dir=root / kind,
            progress=False,
        )
        for kind in ("plt", "clt")
    }


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_training_reduces_fvu(kind, trained, llama_activations):
    from ct_engine.training import evaluate_on_activations

    data = llama_activations
    init = train_module(data, TrainConfig(kind=kind, **{**SHORT, "steps": 0}), progress=False)
    norm = init.normalization
    before = evaluate_on_activations(
        init.module.to_transcoders(
            norm.x_scale, norm.y_scale, feature_input_hook=HOOKS[0], feature_output_hook=HOOKS[1]
        ),
        data.x,
        data.y,
        data.x_holdout,
        data.y_holdout,
    )
    after = trained[kind].metrics
    assert after.mean_fvu_holdout < 0.5 * before.mean_fvu_holdout
    assert after.mean_fvu_holdout < 0.6
    assert 0 < after.mean_l0_holdout < 64
    assert len(after.layers) == 3 and 0.0 <= after.dead_fraction <= 1.0


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_saved_folder_loads_and_reproduces(kind, trained):
    result = trained[kind]
    assert (result.out_dir / "config.yaml").is_file()
    names = {p.name for p in result.out_dir.iterdir()}
    if kind == "plt":
        assert {f"layer_{i}.safetensors" for i in range(3)} <= names
    else:
        assert {f"W_enc_{i}.safetensors" for i in range(3)} <= names
        assert {f"W_dec_{i}.safetensors" for i in range(3)} <= names
    summary = json.loads((result.out_dir / TRAINING_FILE).read_text())
    assert summary["kind"] == kind and len(summary["metrics"]["layers"]) == 3

    loaded = load_transcoders(result.out_dir, lazy_decoder=False)
    assert isinstance(loaded, CrossLayerTranscoder if kind == "clt" else TranscoderSet)
    assert loaded.activation_name == "jump_relu"
    assert (loaded.feature_input_hook, loaded.feature_output_hook) == HOOKS
    x = torch.randn(3, 50, 32) * 3
    ours = result.transcoders
    assert torch.equal(loaded.encode(x), ours.encode(x))
    assert torch.equal(loaded(x), ours(x))

    # The export folds the normalization in: same outputs as the trainable module.
    trained_module, norm = result.trained.module, result.trained.normalization
    with torch.no_grad():
        x_norm = x.transpose(0, 1) / norm.x_scale[None, :, None]
        y_norm, _ = trained_module(x_norm)
    expected = (y_norm * norm.y_scale[None, :, None]).transpose(0, 1)
    torch.testing.assert_close(loaded(x), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_trained_transcoders_attribute(kind, trained, tiny_model_dir):
    from ct_engine import attribute
    from ct_engine.replacement import ReplacementModel

    from ..conftest import PROMPT

    model = ReplacementModel.from_pretrained(
        tiny_model_dir("llama"), trained[kind].out_dir, device="cpu"
    )
    graph = attribute(PROMPT, model, batch_size=32, max_n_logits=3)
    assert len(graph.active_features) > 0
    assert torch.isfinite(graph.adjacency_matrix).all()


def test_training_is_deterministic(llama_activations):
    config = TrainConfig(kind="clt", **{**SHORT, "steps": 20})
    a = train_module(llama_activations, config, progress=False).module.state_dict()
    b = train_module(llama_activations, config, progress=False).module.state_dict()
    c = train_module(
        llama_activations, TrainConfig(**{**config.__dict__, "seed": 1}), progress=False
    ).module.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_command_line_trains_both(tiny_model_dir, texts_file, tmp_path, capsys):
    argv = [
        "--model", str(tiny_model_dir("llama")),
        "--texts", str(texts_file),
        "--kind", "both",
        "--out", str(tmp_path / "out"),
        "--seed", "0",
        "--features", "64",
        "--steps", "10",
        "--batch-size", "128",
        "--threads", "1",
        "--max-tokens", "1000",
    ]  # fmt: skip
    results = main(argv)
    assert [r.kind for r in results] == ["plt", "clt"]
    for kind in ("plt", "clt"):
        loaded = load_transcoders(tmp_path / "out" / kind)
        assert loaded.d_transcoder == 64 and loaded.n_layers == 3
    assert "fvu_holdout" in capsys.readouterr().out


def test_each_kind_can_have_its_own_settings(tiny_model_dir, texts_file, tmp_path):
    from ct_engine.training.train_transcoders import train_transcoders

    base = TrainConfig(n_features=32, steps=5, batch_size=64, threads=1)
    results = train_transcoders(
        tiny_model_dir("llama"),
        texts_file,
        kinds=("plt", "clt"),
        out_dirs={"clt": tmp_path / "clt"},
        config=base,
        configs={"clt": TrainConfig(n_features=48, steps=3, batch_size=64, threads=1)},
        max_tokens=500,
        progress=False,
    )
    assert [r.config.n_features for r in results] == [32, 48]
    assert [r.config.kind for r in results] == ["plt", "clt"]
    record = json.loads((tmp_path / "clt" / TRAINING_FILE).read_text())
    assert record["config"]["steps"] == 3 and record["kind"] == "clt"
    assert load_transcoders(tmp_path / "clt").d_transcoder == 48
