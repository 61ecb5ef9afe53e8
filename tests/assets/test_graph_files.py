"""``graph-metadata.json``: parallel steps each add their graph's entry, none is lost."""

from __future__ import annotations

import json
import multiprocessing

from ct_assets.defs.assets.files import upsert_index
from ct_engine.graph.files import METADATA_FILE
from ct_lake.lake import Lake
from ct_lake.paths import GRAPH_FILES


def _add(root: str, slugs: list[str]) -> None:
    lake = Lake(root)
    for slug in slugs:
        upsert_index(lake, "tiny", {"slug": slug, "prompt": f"prompt of {slug}"})


def test_parallel_writers_keep_every_entry(tmp_path):
    root = str(tmp_path / "lake")
    batches = [[f"g{w}-{i}" for i in range(10)] for w in range(6)]
    context = multiprocessing.get_context("fork")  # no re-import per worker
    workers = [context.Process(target=_add, args=(root, batch)) for batch in batches]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    lake = Lake(root)
    index = json.loads(lake.read_bytes(GRAPH_FILES, METADATA_FILE, model="tiny"))
    slugs = [g["slug"] for g in index["graphs"]]
    assert sorted(slugs) == sorted(s for batch in batches for s in batch)

    # re-adding a slug replaces its entry
    upsert_index(lake, "tiny", {"slug": "g0-0", "prompt": "new text"})
    index = json.loads(lake.read_bytes(GRAPH_FILES, METADATA_FILE, model="tiny"))
    entries = [g for g in index["graphs"] if g["slug"] == "g0-0"]
    assert entries == [{"slug": "g0-0", "prompt": "new text"}]
    assert len(index["graphs"]) == 60
