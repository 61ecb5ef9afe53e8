"""ct_lakehouse.yaml: each model entry form resolves, each mistake is one line naming its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ct_engine.options import BACKENDS
from ct_engine.presets import PRESETS
from ct_lake.config import ConfigError, LakehouseConfig, ModelEntry, load_config

REPO = Path(__file__).resolve().parents[2]
TOY = {"name": "toy", "model": "toy-world", "transcoders": "toy-world-plt"}


def _write(folder: Path, models: list[dict], **top) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ct_lakehouse.yaml"
    path.write_text(yaml.safe_dump({"lake": "lake", "models": models, **top}, sort_keys=False))
    return path


def _entry(folder: Path, entry: dict) -> ModelEntry:
    (model,) = load_config(_write(folder, [entry])).models
    return model


def _error(folder: Path, models: list[dict], **top) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(_write(folder, models, **top))
    return str(info.value)


# (entry, resolved fields): every form a model entry may take.
GOOD = [
    pytest.param(
        {"name": "g2", "preset": "gemma-2-2b"},
        dict(
            preset="gemma-2-2b",
            model="google/gemma-2-2b",
            transcoders="gemma",
            backend="transformerlens",
            dtype="float32",
            device=None,
        ),
        id="preset-only",
    ),
    pytest.param(
        {"name": "g3", "preset": "gemma-3-1b-it"},
        dict(model="google/gemma-3-1b-it", backend="nnsight", dtype="float32"),
        id="preset-default-backend-nnsight",
    ),
    pytest.param(
        {"name": "g3", "preset": "gemma-3-1b-pt", "backend": "transformerlens"},
        dict(
            preset="gemma-3-1b-pt",
            model="google/gemma-3-1b-pt",
            transcoders="mwhanna/gemma-scope-2-1b-pt/transcoder_all/width_16k_l0_small_affine",
            backend="transformerlens",
        ),
        id="preset-backend-override",
    ),
    pytest.param(
        {"name": "oss", "preset": "gpt-oss-20b-clt", "device": "cuda:1"},
        dict(model="openai/gpt-oss-20b", backend="nnsight", dtype="bfloat16", device="cuda:1"),
        id="preset-on-accelerator-takes-its-dtype-advice",
    ),
    pytest.param(
        {"name": "q", "preset": "qwen3-0.6b", "device": "cuda", "dtype": "fp16"},
        dict(backend="transformerlens", dtype="float16", device="cuda"),
        id="preset-dtype-alias-override",
    ),
    pytest.param(
        {**TOY, "backend": "nnsight"},
        dict(
            preset=None,
            model="toy-world",
            transcoders="toy-world-plt",
            backend="nnsight",
            dtype="float32",
        ),
        id="model-transcoders-nnsight",
    ),
    pytest.param(
        {**TOY, "device": "cpu", "dtype": "bf16", "batch_size": 8},
        dict(backend="transformerlens", dtype="bfloat16", device="cpu", batch_size=8),
        id="model-device-dtype",
    ),
]


@pytest.mark.parametrize("entry,expected", GOOD)
def test_good_entries_resolve(tmp_path, entry, expected):
    model = _entry(tmp_path, entry)
    assert {k: getattr(model, k) for k in expected} == expected


# (models, the one line after "ct_lakehouse.yaml: ").
BAD = [
    pytest.param(
        [{**TOY, "bakend": "nnsight"}],
        "models[0].bakend: unknown key (did you mean 'backend'?)",
        id="typo-key",
    ),
    pytest.param(
        [TOY, {"name": "g", "preset": "gemma-2-2bb"}],
        "models[1].preset: unknown preset 'gemma-2-2bb' (did you mean 'gemma-2-2b'?)",
        id="unknown-preset",
    ),
    pytest.param(
        [{"name": "g", "preset": "gemma-3-4b-pt", "backend": "transformerlens"}],
        "models[0].backend: preset 'gemma-3-4b-pt' (Gemma3ForConditionalGeneration) loads on "
        "nnsight only, not transformerlens",
        id="backend-the-preset-cannot-use",
    ),
    pytest.param(
        [{"name": "g", "preset": "gemma-2-2b", "backend": "tl"}],
        "models[0].backend: 'tl' is not one of transformerlens or nnsight",
        id="unknown-backend",
    ),
    pytest.param(
        [{"name": "g", "preset": "gemma-2-2b", "model": "google/gemma-2-2b"}],
        "models[0].model: not allowed with preset 'gemma-2-2b', which fixes the model and "
        "transcoders (write model + transcoders without a preset to choose them)",
        id="both-preset-and-model",
    ),
    pytest.param(
        [{"name": "g", "preset": "gemma-2-2b", "transcoders": "gemma"}],
        "models[0].transcoders: not allowed with preset 'gemma-2-2b', which fixes the model "
        "and transcoders (write model + transcoders without a preset to choose them)",
        id="preset-and-transcoders",
    ),
    pytest.param(
        [{"name": "g", "backend": "nnsight"}],
        "models[0].model: missing: give a preset, or a model with transcoders",
        id="neither-preset-nor-model",
    ),
    pytest.param(
        [{"name": "g", "model": "toy-world"}],
        "models[0].transcoders: missing: a model entry needs its transcoders",
        id="model-without-transcoders",
    ),
    pytest.param(
        [{**TOY, "dtype": "float64"}],
        "models[0].dtype: 'float64' is not one of float32, bfloat16 or float16 "
        "(or fp32, bf16, fp16)",
        id="bad-dtype",
    ),
    pytest.param(
        [{**TOY, "device": "gpu"}],
        "models[0].device: 'gpu' is not a torch device (cpu, cuda, cuda:1, mps, ...)",
        id="bad-device",
    ),
    pytest.param(
        [{**TOY, "name": "Toy World"}],
        "models[0].name: model name 'Toy World' is not a valid key: use 1-64 lowercase "
        "letters, digits, '.', '_' or '-', starting with a letter or digit",
        id="bad-name",
    ),
    pytest.param(
        [{**TOY, "batch_size": 0}],
        "models[0].batch_size: Input should be greater than or equal to 1",
        id="bad-batch-size",
    ),
    pytest.param(
        [TOY, {**TOY, "backend": "nnsight"}],
        "models: names must be unique, ['toy'] repeat",
        id="duplicate-name",
    ),
    pytest.param(
        [{**TOY, "bakend": "nnsight"}, {"name": "g", "preset": "nope-model"}],
        "models[0].bakend: unknown key (did you mean 'backend'?); "
        "models[1].preset: unknown preset 'nope-model'",
        id="two-mistakes-one-line",
    ),
]


@pytest.mark.parametrize("models,line", BAD)
def test_bad_entries_are_one_line_naming_the_key(tmp_path, monkeypatch, models, line):
    monkeypatch.chdir(tmp_path)  # the file is shown relative to the working folder
    message = _error(tmp_path, models)
    assert message == f"ct_lakehouse.yaml: {line}"
    assert "\n" not in message and "pydantic" not in message


@pytest.mark.parametrize(
    "top,line",
    [
        ({"prompt_set": {}}, "prompt_set: unknown key (did you mean 'prompt_sets'?)"),
        (
            {"pruning": {"node_treshold": 0.5}},
            "pruning.node_treshold: unknown key (did you mean 'node_threshold'?)",
        ),
        ({"mlflow": {"experiment": "x", "colour": 3}}, "mlflow.colour: unknown key"),
        (
            {"attribution": {"desired_logit_prob": 2}},
            "attribution.desired_logit_prob: Input should be less than or equal to 1",
        ),
    ],
)
def test_bad_top_level_and_setting_keys(tmp_path, monkeypatch, top, line):
    monkeypatch.chdir(tmp_path)
    assert _error(tmp_path, [TOY], **top) == f"ct_lakehouse.yaml: {line}"


def test_unreadable_files_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "ct_lakehouse.yaml"
    path.write_text("models: [\n  {name: a\n")
    with pytest.raises(ConfigError, match=r"^ct_lakehouse.yaml: invalid YAML at line \d+: "):
        load_config(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="^ct_lakehouse.yaml: expected a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="no lakehouse config at .*missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_accepted_on_each_of_its_backends(tmp_path, name):
    p = PRESETS[name]
    entry = _entry(tmp_path, {"name": "m", "preset": name})
    assert (entry.model, entry.transcoders, entry.backend) == (p.model_id, p.transcoders, p.backend)
    assert entry.dtype == "float32"  # no accelerator named: the CPU's dtype
    for backend in BACKENDS:
        form = {"name": "m", "preset": name, "backend": backend}
        if backend in p.backends:
            assert _entry(tmp_path, form).backend == backend
        else:
            assert "loads on nnsight only" in _error(tmp_path, [form])
    assert _entry(tmp_path, {"name": "m", "preset": name, "device": "cuda"}).dtype == p.dtype


def test_the_shipped_config_loads_without_torch():
    script = (
        "import sys, ct_lake.config as c; cfg = c.load_config(); "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "print(cfg.models[0].name, cfg.models[0].backend, cfg.models[0].dtype)"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["toy-world", "transformerlens", "float32"]


def test_relative_paths_resolve_against_the_file(tmp_path):
    config = load_config(
        _write(tmp_path, [TOY], golden="g.yaml", prompts_file="p.txt", lake="data/lake")
    )
    assert isinstance(config, LakehouseConfig)
    assert config.lake == tmp_path / "data" / "lake"
    assert (config.golden, config.prompts_file) == (tmp_path / "g.yaml", tmp_path / "p.txt")


@pytest.mark.parametrize(
    "lake,expected",
    [
        ("s3://bucket/some/prefix", "s3://bucket/some/prefix"),
        ("s3://bucket/prefix/", "s3://bucket/prefix"),
        ("../elsewhere", "LOCAL:elsewhere"),
    ],
)
def test_the_lake_is_a_folder_or_an_s3_uri(tmp_path, lake, expected):
    config = load_config(_write(tmp_path / "cfg", [TOY], lake=lake))
    if expected.startswith("LOCAL:"):
        assert config.lake == tmp_path / expected.removeprefix("LOCAL:")
        assert config.location.is_local and config.location.local_path == config.lake
    else:
        assert config.lake == expected and config.location.uri == expected
        assert not config.location.is_local


def test_a_bad_lake_uri_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = _error(tmp_path, [TOY], lake="gs://bucket/lake")
    assert message.startswith("ct_lakehouse.yaml: lake: lake 'gs://bucket/lake': unsupported")
    assert "\n" not in message
