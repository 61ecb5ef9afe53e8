"""ct_lakehouse.yaml: each model entry form resolves, each mistake is one line naming its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ct_engine.options import BACKENDS
from ct_engine.presets import PRESETS
from ct_lake.config import (
    LAKE_ENV,
    TRACKING_URI_ENV,
    ConfigError,
    LakehouseConfig,
    ModelEntry,
    load_config,
)

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
    with pytest.raises(ConfigError, match=r"^ct_lakehouse.yaml:\d+:\d+: invalid YAML: "):
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


# -- environment overrides -----------------------------------------------------------------


@pytest.fixture
def no_overrides(monkeypatch):
    """Neither override set, whatever the shell running the tests exports."""
    monkeypatch.delenv(LAKE_ENV, raising=False)
    monkeypatch.delenv(TRACKING_URI_ENV, raising=False)
    return monkeypatch


def test_ct_lake_overrides_the_files_lake(tmp_path, no_overrides):
    path = _write(tmp_path / "cfg", [TOY], lake="from-file")
    assert load_config(path).lake == tmp_path / "cfg" / "from-file"
    no_overrides.setenv(LAKE_ENV, "s3://team-bucket/lake/")
    config = load_config(path)
    assert config.lake == "s3://team-bucket/lake"
    assert (config.location.bucket, config.location.key) == ("team-bucket", "lake")
    no_overrides.setenv(LAKE_ENV, str(tmp_path / "absolute"))
    assert load_config(path).lake == tmp_path / "absolute"


def test_a_relative_ct_lake_resolves_against_the_working_folder(tmp_path, no_overrides):
    path = _write(tmp_path / "cfg", [TOY])
    (tmp_path / "work").mkdir()
    no_overrides.chdir(tmp_path / "work")
    no_overrides.setenv(LAKE_ENV, "data/lake")
    config = load_config(path)
    assert config.lake == tmp_path / "work" / "data" / "lake"  # not under cfg/
    assert config.location.local_path == config.lake


def test_an_empty_override_counts_as_unset(tmp_path, no_overrides):
    path = _write(tmp_path, [TOY], mlflow={"tracking_uri": "sqlite:///m.db"})
    no_overrides.setenv(LAKE_ENV, "  ")
    no_overrides.setenv(TRACKING_URI_ENV, "")
    config = load_config(path)
    assert config.lake == tmp_path / "lake"
    assert config.tracking_uri == f"sqlite:///{tmp_path}/m.db"


@pytest.mark.parametrize(
    "value,expected",
    [
        ("http://127.0.0.1:55000", "http://127.0.0.1:55000"),
        ("sqlite:////srv/mlflow.db", "sqlite:////srv/mlflow.db"),
        ("sqlite:///rel/mlflow.db", "sqlite:///WORK/rel/mlflow.db"),
        ("postgresql+psycopg2://ct@127.0.0.1:54329/mlflow", None),
    ],
)
def test_ct_mlflow_tracking_uri_overrides_the_file(tmp_path, no_overrides, value, expected):
    path = _write(
        tmp_path / "cfg", [TOY], mlflow={"tracking_uri": "sqlite:///file.db", "experiment": "e"}
    )
    (tmp_path / "work").mkdir()
    no_overrides.chdir(tmp_path / "work")
    no_overrides.setenv(TRACKING_URI_ENV, value)
    config = load_config(path)
    expected = (expected or value).replace("WORK", str(tmp_path / "work"))
    assert config.tracking_uri == expected
    assert config.mlflow.experiment == "e"  # the rest of the section is the file's


def test_ct_mlflow_tracking_uri_applies_without_an_mlflow_section(tmp_path, no_overrides):
    no_overrides.setenv(TRACKING_URI_ENV, "http://127.0.0.1:5000")
    config = load_config(_write(tmp_path, [TOY]))
    assert config.tracking_uri == "http://127.0.0.1:5000"
    assert config.mlflow.timeout_s == 10.0  # defaults otherwise


@pytest.mark.parametrize(
    "name,value,line",
    [
        (
            LAKE_ENV,
            "gs://bucket/lake",
            "CT_LAKE: lake 'gs://bucket/lake': unsupported scheme 'gs' "
            "(use a local path or s3://bucket/prefix)",
        ),
        (
            LAKE_ENV,
            "s3://Bad_Bucket/lake",
            "CT_LAKE: lake 's3://Bad_Bucket/lake': 'Bad_Bucket' is not an S3 bucket name "
            "(3-63 lowercase letters, digits, '.' or '-')",
        ),
        (
            TRACKING_URI_ENV,
            "htp://127.0.0.1:5000",
            "CT_MLFLOW_TRACKING_URI: 'htp://127.0.0.1:5000': unknown scheme 'htp' (use "
            "sqlite:///path, http://host:port, a database URI or a local folder)",
        ),
        (
            TRACKING_URI_ENV,
            "http:///mlflow",
            "CT_MLFLOW_TRACKING_URI: 'http:///mlflow': no host (use http://host:port)",
        ),
        (
            TRACKING_URI_ENV,
            "sqlite://mlflow.db",
            "CT_MLFLOW_TRACKING_URI: 'sqlite://mlflow.db': a sqlite URI is "
            "sqlite:///relative/path or sqlite:////abs/path",
        ),
    ],
)
def test_a_bad_override_is_one_line_naming_the_variable(tmp_path, no_overrides, name, value, line):
    no_overrides.setenv(name, value)
    message = _error(tmp_path, [TOY])
    assert message == line


def test_the_file_key_and_the_variable_give_the_same_message(tmp_path, no_overrides):
    no_overrides.chdir(tmp_path)
    bad = "htp://127.0.0.1:5000"
    from_file = _error(tmp_path, [TOY], mlflow={"tracking_uri": bad})
    no_overrides.setenv(TRACKING_URI_ENV, bad)
    from_env = _error(tmp_path / "other", [TOY])
    assert from_file.startswith("ct_lakehouse.yaml: mlflow.tracking_uri: ")
    assert from_env.startswith(f"{TRACKING_URI_ENV}: ")
    assert from_file.split("tracking_uri: ", 1)[1] == from_env.split(": ", 1)[1]
    no_overrides.delenv(TRACKING_URI_ENV)
    from_file = _error(tmp_path / "third", [TOY], lake="gs://b/l")
    no_overrides.setenv(LAKE_ENV, "gs://b/l")
    from_env = _error(tmp_path / "other", [TOY])
    assert from_file.split("ct_lakehouse.yaml: lake: ")[1] == from_env.removeprefix("CT_LAKE: ")
    assert from_env.startswith("CT_LAKE: lake 'gs://b/l': unsupported scheme")


def test_overrides_reach_a_fresh_process(tmp_path):
    """A worker started with the team environment reads the same lake and MLflow server."""
    path = _write(tmp_path, [TOY])
    script = "import ct_lake.config as c; cfg = c.load_config(); print(cfg.lake, cfg.tracking_uri)"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "CT_CONFIG": str(path),
        LAKE_ENV: "s3://ct-lake/lake",
        TRACKING_URI_ENV: "http://127.0.0.1:55000",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["s3://ct-lake/lake", "http://127.0.0.1:55000"]
