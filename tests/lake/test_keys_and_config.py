"""Keys, the config file and the lake's atomic, replacing writes."""

from __future__ import annotations

import hashlib

import pytest

from ct_lake.config import load_config
from ct_lake.keys import partition_key, prompt_key
from ct_lake.lake import Lake
from ct_lake.tables import TABLES


def test_prompt_keys_hash_the_exact_text():
    text = "The capital of | the, [country]\nwhere Mira lives is"
    key = prompt_key(text)
    assert key == "p_" + hashlib.sha256(text.encode()).hexdigest()[:12]
    assert prompt_key(text + " ") != key
    assert partition_key("toy-world", key) == ("toy-world", key)
    with pytest.raises(ValueError, match="empty"):
        prompt_key("   ")
    with pytest.raises(ValueError, match="not a valid key"):
        partition_key("Toy World", key)


def test_rewriting_a_partition_replaces_it(tmp_path):
    lake = Lake(tmp_path)
    keys = dict(model="m", prompt=prompt_key("x"))
    rows = [{"target": 5, "source": 1, "weight": 0.5}, {"target": 5, "source": 2, "weight": -1.0}]
    uri, n = lake.write_table("edges", rows, **keys)
    assert n == 2 and uri == f"{tmp_path}/edges/model=m/prompt={keys['prompt']}"
    lake.write_table("edges", rows[:1], **keys)
    assert lake.read_table("edges", **keys).to_pylist() == rows[:1]
    assert lake.scan("edges").num_rows == 1  # the table holds the new rows only
    assert lake.read_table("edges", **keys).schema.equals(TABLES["edges"].schema)


def test_bad_partitions_and_rows_are_refused(tmp_path):
    lake = Lake(tmp_path)
    with pytest.raises(ValueError, match="partitioned by"):
        lake.write_table("edges", [], model="m")
    with pytest.raises(ValueError, match="prompt key"):
        lake.write_table("edges", [], model="m", prompt="../../etc")
    with pytest.raises(ValueError, match="unknown lake table"):
        lake.write_table("nope", [], model="m")
    with pytest.raises((TypeError, KeyError, ValueError)):
        lake.write_table("edges", [{"target": "x"}], model="m", prompt=prompt_key("x"))
    assert not (tmp_path / "edges").exists() or not list((tmp_path / "edges").rglob("*.parquet"))


def test_config_errors_are_clear(tmp_path):
    path = tmp_path / "c.yaml"
    entry = "  - {name: a, model: m, transcoders: t}\n"
    path.write_text("models:\n" + entry + entry)
    with pytest.raises(ValueError, match="unique"):
        load_config(path)
    path.write_text("models:\n  - {name: A B, model: m, transcoders: t}\n")
    with pytest.raises(ValueError, match="not a valid key"):
        load_config(path)
    path.write_text("models:\n  - {name: a, model: m, transcoders: t, batch_size: 0}\n")
    with pytest.raises(ValueError, match="batch_size"):
        load_config(path)
    path.write_text("models:\n  - {name: a, model: m, transcoders: t}\nlake: data\n")
    config = load_config(path)
    assert config.lake == tmp_path / "data"
    with pytest.raises(ValueError, match="unknown model 'b'"):
        config.model("b")
    with pytest.raises(ValueError, match="no lakehouse config"):
        load_config(tmp_path / "missing.yaml")


def test_the_repo_config_loads():
    config = load_config()
    assert config.models[0].name == "toy-world"
    assert config.prompt_sets["demo"]


def test_listing_prompts_of_an_empty_lake(tmp_path, capsys, monkeypatch):
    from ct_cli.main import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  - {name: a, model: m, transcoders: t}\nlake: data\n")
    assert main(["prompts", "list", "--config", str(path)]) == 0
    assert "no prompts registered yet" in capsys.readouterr().out
