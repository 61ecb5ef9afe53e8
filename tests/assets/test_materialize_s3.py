"""The asset graph on a lake in object storage (the moto S3 server on 127.0.0.1): every table
and file goes through the lake, nothing is written next to the config."""

from __future__ import annotations

import pytest

from ct_assets.lib.resources import EngineResource
from ct_assets.lib.runner import materialize
from ct_lake.catalog import connect
from ct_lake.config import load_config
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake
from ct_lake.paths import GRAPH_FILE, GRAPH_FILES, GRAPHS, PLOTS, TRANSCODER_DIR, graph_slug
from tests.s3server import s3_server, s3_uri  # noqa: F401

from .conftest import PROMPTS, write_config


@pytest.mark.slow
def test_materialize_on_an_s3_lake(tmp_path, tiny_lakehouse_files, s3_uri, monkeypatch):  # noqa: F811
    import dagster as dg

    path = write_config(tmp_path, tiny_lakehouse_files, lake=s3_uri)
    monkeypatch.setenv("CT_CONFIG", str(path))
    config = load_config(path)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        engine = EngineResource()
        summary = materialize(config, "tiny", PROMPTS[:1], instance, engine=engine)
        assert summary.success
    lake = Lake(s3_uri)
    prompt = prompt_key(PROMPTS[0])
    keys = {"model": "tiny", "prompt": prompt}
    [graph] = lake.read_table("graphs", **keys).to_pylist()
    con = connect(lake)
    assert con.execute("SELECT count(*) FROM edges").fetchone()[0] == graph["n_edges"] > 0
    assert con.execute("SELECT count(*) FROM feature_census").fetchone()[0] > 0
    assert lake.has_file(GRAPHS, GRAPH_FILE, **keys)
    assert lake.has_file(PLOTS, "pruned_graph.png", **keys)
    assert lake.has_file(PLOTS, "transcoder_quality.png", model="tiny")
    assert lake.has_file(GRAPH_FILES, f"{graph_slug('tiny', prompt)}.json", model="tiny")
    assert lake.has_file(GRAPH_FILES, "graph-metadata.json", model="tiny")
    [row] = lake.read_table("transcoder_cache", model="tiny").to_pylist()
    assert row["path"] == lake.file_uri(TRANSCODER_DIR, "set", model="tiny")
    assert row["path"].startswith("s3://")
    assert not (tmp_path / "lake").exists()  # nothing local but the lake's download cache
