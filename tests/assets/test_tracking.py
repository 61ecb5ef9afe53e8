"""MLflow down: the lake is still written, the failure shows in metadata and a failed check,
and nothing hangs."""

from __future__ import annotations

import socket
import time

import dagster as dg

from ct_assets.lib.context import multi_key
from ct_assets.lib.resources import lakehouse_resources
from ct_lake.config import load_config
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake
from ct_lake.prompts import register_prompts

from .conftest import PROMPTS, write_config


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


def test_unreachable_mlflow_keeps_the_lake_and_fails_a_check(tmp_path, tiny_lakehouse_files):
    from ct_assets.defs.assets.graphs import attribution_graph

    mlflow = {"tracking_uri": f"http://127.0.0.1:{_closed_port()}", "timeout_s": 3}
    path = write_config(tmp_path, tiny_lakehouse_files, mlflow=mlflow)
    config = load_config(path)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        register_prompts(config, PROMPTS[:1], ["tiny"], instance)
        start = time.perf_counter()
        result = dg.materialize(
            [attribution_graph],
            partition_key=multi_key("tiny", prompt_key(PROMPTS[0])),
            instance=instance,
            resources=lakehouse_resources(str(path)),
        )
        elapsed = time.perf_counter() - start
    assert result.success
    assert elapsed < 60  # the tracking call gave up; nothing hung
    lake = Lake(config.lake)
    keys = dict(model="tiny", prompt=prompt_key(PROMPTS[0]))
    assert lake.read_table("graphs", **keys).num_rows == 1
    assert lake.read_table("edges", **keys).num_rows > 0
    [materialization] = result.asset_materializations_for_node("attribution_graph")
    error = materialization.metadata["mlflow_error"].value
    assert "127.0.0.1" in error
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "mlflow_logged" and not check.passed
