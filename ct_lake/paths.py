"""Where the lake keeps its per-partition files: graphs, viewer files, transcoder sets, slugs.

Tables are addressed by :class:`ct_lake.lake.Lake`; these are the file kinds next to them::

    <lake>/files/graphs/model=<m>/prompt=<p>/graph.safetensors   the attribution graph
    <lake>/files/graph_files/model=<m>/<slug>.json               viewer files of each graph
    <lake>/files/transcoders/model=<m>/set/                      the converted transcoder set
    <lake>/files/plots/model=<m>[/prompt=<p>]/<name>.png         pictures
    <lake>/files/features/model=<m>/features/                    circuit-tracer feature files
"""

from __future__ import annotations

from pathlib import Path

GRAPHS = "graphs"
GRAPH_FILE = "graph.safetensors"
GRAPH_FILES = "graph_files"
TRANSCODER_DIR = "transcoders"
PLOTS = "plots"
# The feature dashboards in circuit-tracer's layout: the folder holds index.json.gz directly.
FEATURE_FILES = "features"
FEATURE_DIR = "features"


def graph_slug(model: str, prompt: str) -> str:
    """The viewer slug of a lake graph: ``<model>__<prompt key>``."""
    return f"{model}__{prompt}"


def graph_path(lake, model: str, prompt: str) -> Path:
    """The attribution graph file of ``(model, prompt)`` (its folder is created)."""
    path = lake.file_path(GRAPHS, GRAPH_FILE, model=model, prompt=prompt)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def cached_transcoders(lake, model: str) -> str | None:
    """A local folder with the lake's converted copy of a model's transcoders (fetched into the
    local cache for a lake on object storage), or None before ``transcoder_cache`` ran."""
    try:
        path = lake.local_tree(TRANSCODER_DIR, "set", model=model)
    except FileNotFoundError:
        return None
    return str(path) if (path / "config.yaml").exists() else None
