"""The viewer on a lake in object storage (the moto S3 server on 127.0.0.1): graphs listed
through the lake's tables, graph files fetched through the lake's local cache, annotations
written to the S3 table."""

from __future__ import annotations

from starlette.testclient import TestClient

from ct_lake.lake import Lake
from ct_lake.paths import GRAPH_FILE, GRAPHS, TRANSCODER_DIR
from ct_viewer import create_app

# What the viewer reads: the graph listing joins these tables; documents come from the files.
TABLES = ("graphs", "prompts", "scores")


def _copy_lake(source: Lake, target: Lake) -> int:
    """Copy the viewer's tables and graph files partition by partition; the graph count."""
    for name in TABLES:
        for keys in source.partitions(name):
            target.write_table(name, source.read_table(name, **keys), **keys)
    folder = source.local_tree(TRANSCODER_DIR, "set", model="tiny")
    target.write_tree(TRANSCODER_DIR, "set", folder, model="tiny")
    graphs = source.partitions("graphs")
    for keys in graphs:
        path = source.local_file(GRAPHS, GRAPH_FILE, **keys)
        target.write_file(GRAPHS, GRAPH_FILE, path, **keys)
    return len(graphs)


def test_the_viewer_serves_an_s3_lake(viewer_lake, s3_uri, tmp_path):
    local = Lake(viewer_lake.config.lake)
    lake = Lake(s3_uri)
    assert _copy_lake(local, lake) == 2
    s3_app = create_app(lake_root=s3_uri, config_path=viewer_lake.config.path)
    local_app = create_app(lake_root=local.root, config_path=viewer_lake.config.path)
    graph_id = viewer_lake.ids[0]
    with TestClient(s3_app) as client, TestClient(local_app) as reference:
        listed = client.get("/api/graphs").json()["graphs"]
        assert [g["id"] for g in listed] == viewer_lake.ids
        assert listed == [g for g in reference.get("/api/graphs").json()["graphs"]]
        document = client.get(f"/api/graphs/{graph_id}")
        assert document.status_code == 200
        assert document.content == reference.get(f"/api/graphs/{graph_id}").content

        url = f"/api/graphs/{graph_id}/annotations"
        feature = next(
            n["node_id"]
            for n in document.json()["nodes"]
            if n["feature_type"] == "cross layer transcoder"
        )
        label = {"author": "ana", "kind": "label", "node_ids": [feature], "text": "on S3"}
        created = client.post(url, json=label)
        assert created.status_code == 201, created.text
        assert client.get(url).json()["annotations"] == [created.json()]
        # Not in the local lake: the row went to the S3 lake's table.
        local_ids = [a["id"] for a in reference.get(url).json()["annotations"]]
        assert created.json()["id"] not in local_ids

        # Steering loads the lake's transcoder copy from the S3 lake's local cache.
        steer = {"interventions": [{"node_id": feature, "value": 0.0}], "top": 5}
        steered = client.post(f"/api/graphs/{graph_id}/steer", json=steer)
        assert steered.status_code == 200, steered.text
        assert steered.json() == reference.post(f"/api/graphs/{graph_id}/steer", json=steer).json()
        ((_, _, transcoders, *_),) = s3_app.state.models.cache.loaded()
        assert transcoders == str(lake.file_path(TRANSCODER_DIR, "set", model="tiny"))
        assert transcoders != str(local.file_path(TRANSCODER_DIR, "set", model="tiny"))
    (row,) = Lake(s3_uri).read_table("annotations", graph=graph_id).to_pylist()
    assert (row["id"], row["node_ids"], row["text"]) == (created.json()["id"], [feature], "on S3")
