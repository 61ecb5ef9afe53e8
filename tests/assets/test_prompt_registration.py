"""The three ways to register prompts: the prompt-file sensor, the ``register_prompt`` job and
``ct prompts add``. Each writes the lake's ``prompts`` table and adds dynamic partitions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import pytest

from ct_assets.defs.prompts import prompt_file_sensor, register_prompt
from ct_assets.lib.context import multi_key
from ct_assets.lib.resources import LakehouseResource
from ct_cli.main import main
from ct_lake.catalog import connect
from ct_lake.config import load_config
from ct_lake.keys import MODELS_PARTITIONS, PROMPTS_PARTITIONS

from .conftest import PROMPTS, write_config


def sha_key(text: str) -> str:
    """The documented prompt key, computed independently of ``ct_lake.keys``."""
    return "p_" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def registered_texts(lake_root: Path) -> dict[str, str]:
    rows = connect(lake_root).sql("SELECT prompt, text, n_chars FROM prompts").fetchall()
    for _, text, n_chars in rows:
        assert n_chars == len(text)
    return {key: text for key, text, _ in rows}


@pytest.fixture
def config_path(tmp_path) -> Path:
    # Registration never loads the model: the config's model paths need not exist.
    return write_config(tmp_path, tmp_path / "no-model-files")


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield instance


def test_sensor_registers_prompt_sets_and_requests_runs(config_path, instance):
    config = load_config(config_path)
    resources = {"lakehouse": LakehouseResource(config_path=str(config_path))}
    keys = [sha_key(text) for text in PROMPTS]

    context = dg.build_sensor_context(instance=instance, cursor=None, resources=resources)
    result = prompt_file_sensor(context)
    assert isinstance(result, dg.SensorResult)
    assert {r.partition_key for r in result.run_requests} == {multi_key("tiny", k) for k in keys}
    assert len(result.run_requests) == len(PROMPTS)  # one model x each new prompt
    assert all(r.run_key == r.partition_key for r in result.run_requests)
    assert instance.get_dynamic_partitions(MODELS_PARTITIONS) == ["tiny"]
    assert sorted(instance.get_dynamic_partitions(PROMPTS_PARTITIONS)) == sorted(keys)
    assert registered_texts(config.lake) == dict(zip(keys, PROMPTS, strict=True))
    cursor = context.cursor
    assert cursor

    # Nothing changed: the same cursor skips, and nothing is registered twice.
    again = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    skipped = prompt_file_sensor(again)
    assert isinstance(skipped, dg.SkipReason)
    assert again.cursor == cursor
    assert len(instance.get_dynamic_partitions(PROMPTS_PARTITIONS)) == len(PROMPTS)


def test_sensor_picks_up_new_lines_of_the_prompts_file(tmp_path, instance):
    path = write_config(tmp_path, tmp_path / "no-model-files", prompts_file="prompts.txt")
    resources = {"lakehouse": LakehouseResource(config_path=str(path))}
    context = dg.build_sensor_context(instance=instance, cursor=None, resources=resources)
    assert len(prompt_file_sensor(context).run_requests) == len(PROMPTS)  # no file yet

    new = "Tom lives in Rome which is the capital of"
    (tmp_path / "prompts.txt").write_text(f"{PROMPTS[0]}\n\n{new}\n")
    context = dg.build_sensor_context(instance=instance, cursor=context.cursor, resources=resources)
    result = prompt_file_sensor(context)
    assert [r.partition_key for r in result.run_requests] == [multi_key("tiny", sha_key(new))]
    assert registered_texts(tmp_path / "lake")[sha_key(new)] == new


def test_register_prompt_job_adds_partitions(config_path, instance):
    text = "the capital of France is Paris and the"
    resources = {"lakehouse": LakehouseResource(config_path=str(config_path))}
    run_config = {"ops": {"register_prompt_op": {"config": {"text": text, "models": ["tiny"]}}}}
    result = register_prompt.execute_in_process(
        run_config=run_config, instance=instance, resources=resources
    )
    assert result.success
    key = sha_key(text)
    assert result.output_for_node("register_prompt_op") == [multi_key("tiny", key)]
    assert instance.has_dynamic_partition(MODELS_PARTITIONS, "tiny")
    assert instance.get_dynamic_partitions(PROMPTS_PARTITIONS) == [key]
    assert registered_texts(config_path.parent / "lake") == {key: text}

    bad = {"ops": {"register_prompt_op": {"config": {"text": text, "models": ["nope"]}}}}
    failed = register_prompt.execute_in_process(
        run_config=bad, instance=instance, resources=resources, raise_on_error=False
    )
    assert not failed.success
    assert not instance.has_dynamic_partition(MODELS_PARTITIONS, "nope")


def test_ct_prompts_add(config_path, tmp_path, monkeypatch, capsys):
    home = tmp_path / "cli_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("CT_CONFIG", str(config_path))  # the command sets it; restore it after
    text = "Ana speaks the language of Spain which is"
    key = sha_key(text)

    assert main(["prompts", "add", text, "--model", "tiny", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert f"{key}  (new)" in out and str(multi_key("tiny", key)) in out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions(MODELS_PARTITIONS) == ["tiny"]
        assert instance.get_dynamic_partitions(PROMPTS_PARTITIONS) == [key]
    assert registered_texts(config_path.parent / "lake") == {key: text}

    assert main(["prompts", "add", text, "--model", "tiny", "--config", str(config_path)]) == 0
    assert f"{key}  (known)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "model", "message"),
    [
        ("   ", "tiny", "ct prompts: error: the prompt is empty"),
        ("a fine prompt", "nope", "ct prompts: error: unknown model 'nope'"),
    ],
)
def test_ct_prompts_add_rejects_bad_input(
    config_path, tmp_path, monkeypatch, capsys, text, model, message
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "cli_home"))
    monkeypatch.setenv("CT_CONFIG", str(config_path))
    argv = ["prompts", "add", text, "--model", model, "--config", str(config_path)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert not (config_path.parent / "lake" / "prompts").exists()  # nothing registered
