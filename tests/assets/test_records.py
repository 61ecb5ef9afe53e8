"""One record per asset partition: what Dagster and MLflow show comes from it, by the roles of
``ct_lake.tables.ROLES``; and the configuration is read once per run."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import dagster as dg

from ct_assets.lib import resources as resources_module
from ct_assets.lib.context import multi_key
from ct_assets.lib.resources import EngineResource, lakehouse_resources
from ct_assets.lib.runner import project_definitions
from ct_assets.lib.steps import describe
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake
from ct_lake.prompts import register_prompts
from ct_lake.records import FileOut, Record, TableOut, store
from ct_lake.tables import METADATA, METRIC, PARAM, ROLES, role

from .conftest import PROMPTS

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_a_record_becomes_metadata_params_and_metrics(tmp_path):
    lake = Lake(tmp_path / "lake")
    keys = {"model": "tiny", "prompt": prompt_key("x")}
    record = Record(
        keys=keys,
        facts={
            "text": "The capital of Texas is",  # a param shown as "prompt"
            "model_name": "org/tiny",  # a param shown as "model"
            "max_feature_nodes": 200,  # a param
            "n_edges": 1234,  # a metric
            "top_target": " Austin",  # metadata only
            "timings_s": [("forward", 1.5), ("load_model", 0.25)],  # an Arrow map
            "targets": [" Austin", " Dallas"],  # a list param
            "dagster_run_id": "abc",  # lake only
            "created_at": datetime.now(UTC),  # lake only
            "peak_memory_mb": None,  # unknown: shown nowhere
        },
        tables=[TableOut("interventions", [])],
        files=[
            FileOut("plots", "p.png", PNG, "picture", image="pruned graph", artifact=True),
            FileOut("graphs", "graph.safetensors", b"not read", "graph_file"),
        ],
    )
    where = store(lake, record)
    shown = describe(record, lake)

    meta = {
        k: getattr(v, "value", getattr(v, "data", getattr(v, "path", v)))
        for k, v in shown.metadata.items()
    }
    assert meta["prompt_text"] == "The capital of Texas is" and meta["model"] == "org/tiny"
    assert meta["n_edges"] == 1234 and meta["top_target"] == " Austin"
    assert meta["max_feature_nodes"] == 200
    assert meta["timings_s"] == {"forward": 1.5, "load_model": 0.25}
    assert meta["targets"] == [" Austin", " Dallas"]
    assert meta["picture"] == where["picture"] == lake.file_uri("plots", "p.png", **keys)
    assert meta["graph_file"] == where["graph_file"]
    image = shown.metadata["pruned graph"].value
    assert image == f"![pruned graph](data:image/png;base64,{base64.b64encode(PNG).decode()})"
    assert "effects" in meta  # the interventions preview (here: a header only)
    assert not {"dagster_run_id", "created_at", "peak_memory_mb", "text"} & set(meta)

    assert shown.params == {
        "prompt_text": "The capital of Texas is",
        "model": "org/tiny",
        "max_feature_nodes": 200,
        "targets": " Austin,  Dallas",
    }
    assert shown.metrics == {"n_edges": 1234.0, "time_forward_s": 1.5, "time_load_model_s": 0.25}
    assert shown.artifacts == [lake.local_file("plots", "p.png", **keys)]
    assert shown.artifacts[0].read_bytes() == PNG


def test_every_role_is_declared_once_with_a_known_kind():
    assert {r.kind for r in ROLES.values()} <= {PARAM, METRIC, METADATA}
    assert role("mean_fvu_centered") == role("mean_l0") == ROLES["mean_*"]
    assert role("tokens") is None and role("dagster_run_id") is None  # lake only


def test_the_config_is_read_once_per_run(lakehouse, monkeypatch):
    """A graph_job run over two prompt partitions (five assets, each looping over both)
    parses the configuration file once; a second run parses it again (it may have changed)."""
    config, instance = lakehouse
    reads = []
    real = resources_module.load_config

    def counting_load_config(path=None):
        reads.append(path)
        return real(path)

    monkeypatch.setattr(resources_module, "load_config", counting_load_config)
    registered = register_prompts(config, PROMPTS, ["tiny"], instance)
    first, last = sorted(registered.prompts, key=instance.get_dynamic_partitions("prompts").index)
    job = project_definitions().resolve_job_def("graph_job")
    engine = EngineResource()
    tags = {
        "dagster/asset_partition_range_start": multi_key("tiny", first),
        "dagster/asset_partition_range_end": multi_key("tiny", last),
    }
    result = job.execute_in_process(
        instance=instance, tags=tags, resources=lakehouse_resources(str(config.path), engine)
    )
    assert result.success
    assert reads == [str(config.path)]
    materialized = instance.get_materialized_partitions(dg.AssetKey("graph_files"))
    assert {str(multi_key("tiny", p)) for p in registered.prompts} <= set(materialized)

    result = job.execute_in_process(
        instance=instance,
        partition_key=multi_key("tiny", first),
        resources=lakehouse_resources(str(config.path), engine),
    )
    assert result.success and len(reads) == 2
    assert len(engine.models.load_events) == 1  # both runs used the engine's loaded model
