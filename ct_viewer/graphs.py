"""Where the viewer's graphs come from: the lake (attribution graphs) and folders of JSON files.

Graph ids (``ct_viewer/API.md``): a lake graph is ``<model>__<prompt key>`` (the viewer slug
of :func:`ct_lake.paths.graph_slug`), a JSON file graph is ``file__<slug>`` for
``<graph_file_dir>/<slug>.json``. Ids are matched against regular expressions and turned into
files only through :class:`~ct_lake.lake.Lake` (lake graphs: the ``graphs`` table says which
exist, :meth:`~ct_lake.lake.Lake.local_file` gives the graph file, downloaded into the local
cache for a lake on object storage) or as ``<dir>/<slug>.json`` with the resolved file checked
to lie inside ``<dir>`` (file graphs): no id is ever a raw path.

A JSON file graph is already pruned: the thresholds a client asks for cannot be re-applied,
so its document is served exactly as stored.

A lake graph's document also ranks its nodes by influence (:func:`add_influence_ranks`): the
document's ``influence`` is circuit-tracer's cumulative share (smallest for the most
influential node), which a reader cannot turn back into one node's own part of the total.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ct_lake.paths import GRAPH_FILE, GRAPHS, graph_slug

GRAPH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
LAKE_ID = re.compile(r"^(?P<model>[a-z0-9][a-z0-9._-]{0,63})__(?P<prompt>p_[0-9a-f]{12})$")
FILE_PREFIX = "file__"
SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
FEATURE_TYPE = "cross layer transcoder"
_METADATA_FILE = "graph-metadata.json"
_GRAPH_LOCK = threading.Lock()  # one per process: load_graph's cache is process-wide
_TARGET_CLERP = re.compile(r'^Output "(?P<token>.*)" \(p=[^)]*\)$', re.DOTALL)

SUMMARY_FIELDS = (
    "id",
    "model",
    "prompt",
    "prompt_text",
    "n_tokens",
    "n_features",
    "n_edges",
    "top_target",
    "top_target_prob",
    "replacement_score",
    "completeness_score",
    "source",
)


class GraphNotFound(LookupError):
    """No graph with this id (or a malformed id): a 404."""


class Conflict(RuntimeError):
    """The request is valid but cannot be served for this graph or server: a 409."""


@dataclass(frozen=True)
class NodeRef:
    """A node of a graph document: its kind and, for features, where it sits."""

    kind: str  # feature | error | token | logit
    layer: int
    pos: int
    feature: int


@dataclass(frozen=True)
class GraphRef:
    """A resolved graph id."""

    id: str
    source: str  # "lake" | "file"
    path: Path
    model: str | None = None
    prompt: str | None = None


class _LRU:
    """A small thread-safe LRU cache; ``get(key, make)`` builds missing values outside the lock
    (two threads may build the same value once each; the cache keeps one)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, make: Callable[[], Any]):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def _identity(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (symlinks resolved) is a regular file inside ``folder``."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return resolved.is_file() and resolved.is_relative_to(folder.resolve())


def _float_or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if value != value else value  # NaN -> None


class GraphStore:
    """The graphs of one server: a lake (optional, with its config) and JSON file folders.

    ``lake`` is a :class:`~ct_lake.lake.Lake`, or its root (a local path or ``s3://...``).
    """

    def __init__(self, lake=None, config=None, graph_file_dirs: Sequence[Path] = ()):
        from ct_lake.lake import Lake

        if lake is not None and not isinstance(lake, Lake):
            lake = Lake(lake)
        self.lake = lake
        self.config = config
        self.file_dirs = [Path(d) for d in graph_file_dirs]
        self._tokenizers: dict[str, Any] = {}
        self._tokenizer_lock = threading.Lock()
        self._graph_lock = _GRAPH_LOCK
        self._documents = _LRU(8)
        self._node_sets = _LRU(32)
        self._file_summaries = _LRU(512)

    # -- ids ------------------------------------------------------------------------------------

    def resolve(self, graph_id: str) -> GraphRef:
        """The graph of ``graph_id``; :class:`GraphNotFound` for a bad or unknown id."""
        if not GRAPH_ID.match(graph_id):
            raise GraphNotFound("no such graph")
        if graph_id.startswith(FILE_PREFIX):
            slug = graph_id[len(FILE_PREFIX) :]
            if SLUG.match(slug) and slug != _METADATA_FILE.removesuffix(".json"):
                for folder in self.file_dirs:
                    path = folder / f"{slug}.json"
                    if is_inside(path, folder):
                        return GraphRef(graph_id, "file", path)
            raise GraphNotFound(f"no graph {graph_id}")
        match = LAKE_ID.match(graph_id)
        if match is None or self.lake is None:
            raise GraphNotFound(f"no graph {graph_id}")
        model, prompt = match["model"], match["prompt"]
        if not self.lake.has_partition("graphs", model=model, prompt=prompt):
            raise GraphNotFound(f"no graph {graph_id}")
        try:
            path = self.lake.local_file(GRAPHS, GRAPH_FILE, model=model, prompt=prompt)
        except FileNotFoundError:
            raise GraphNotFound(
                f"graph {graph_id} is listed in the lake but its file is missing"
            ) from None
        return GraphRef(graph_id, "lake", path, model=model, prompt=prompt)

    # -- listing --------------------------------------------------------------------------------

    def summaries(
        self, model: str | None = None, q: str | None = None
    ) -> tuple[list[dict], list[dict]]:
        """Every graph's summary, lake graphs first, filtered by model and prompt text; and
        what could not be listed: ``{"source", "graph", "file", "error"}`` for each damaged
        lake file (``file`` relative to the lake; ``graph`` when the file belongs to one
        graph) or unreadable graph file (``file`` its name). One damaged file leaves out what
        it holds, never the whole list."""
        damaged: list[dict] = []
        rows = self._lake_summaries(damaged) + self._file_graph_summaries(damaged)
        if model:
            rows = [r for r in rows if r["model"] == model]
        if q:
            needle = q.casefold()
            rows = [r for r in rows if needle in (r["prompt_text"] or "").casefold()]
        return rows, damaged

    def _lake_summaries(self, damaged: list[dict]) -> list[dict]:
        from ct_lake.catalog import CatalogError, query_rows
        from ct_lake.storage import DamagedLog
        from ct_lake.tables import TABLES

        if self.lake is None:
            return []
        found: dict[str, dict[str, str]] = {}
        try:
            if not self.lake.partitions("graphs"):
                return []
            columns, rows = query_rows(
                self.lake,
                "SELECT model, prompt, prompt_text, n_tokens, n_features, n_edges, top_target, "
                "top_target_prob, replacement_score, completeness_score FROM graph_overview",
                damaged=found,
                skip_damaged=True,
            )
        except (DamagedLog, CatalogError) as err:
            damaged.append({"source": "lake", "graph": None, "file": None, "error": str(err)})
            return []
        finally:
            for table, files in found.items():
                partitions = TABLES[table].partitions
                for path, why in files.items():
                    values = dict(part.split("=", 1) for part in path.split("/")[:-1])
                    graph = None
                    if partitions == ("model", "prompt") and len(values) == 2:
                        graph = graph_slug(values["model"], values["prompt"])
                    elif table == "annotations":
                        graph = values.get("graph")
                    damaged.append(
                        {"source": "lake", "graph": graph, "file": f"{table}/{path}", "error": why}
                    )
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        out = []
        for r in records:
            out.append(
                {
                    "id": graph_slug(r["model"], r["prompt"]),
                    "model": r["model"],
                    "prompt": r["prompt"],
                    "prompt_text": r["prompt_text"],
                    "n_tokens": r["n_tokens"],
                    "n_features": r["n_features"],
                    "n_edges": r["n_edges"],
                    "top_target": r["top_target"],
                    "top_target_prob": _float_or_none(r["top_target_prob"]),
                    "replacement_score": _float_or_none(r["replacement_score"]),
                    "completeness_score": _float_or_none(r["completeness_score"]),
                    "source": "lake",
                }
            )
        return out

    def _file_graph_summaries(self, damaged: list[dict]) -> list[dict]:
        seen, out = set(), []
        for folder in self.file_dirs:
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.json")):
                slug = path.stem
                if path.name == _METADATA_FILE or not SLUG.match(slug) or slug in seen:
                    continue
                if not is_inside(path, folder):
                    continue
                seen.add(slug)
                try:
                    summary = self._file_summaries.get(
                        _identity(path), lambda p=path, s=slug: _file_summary(p, s)
                    )
                except Exception as err:  # unreadable, not JSON, not a graph document
                    why = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
                    damaged.append(
                        {
                            "source": "file",
                            "graph": FILE_PREFIX + slug,
                            "file": path.name,
                            "error": why,
                        }
                    )
                    continue
                out.append(dict(summary))
        return out

    # -- documents ------------------------------------------------------------------------------

    def file_bytes(self, ref: GraphRef) -> bytes:
        """A file graph's document, exactly as stored."""
        return ref.path.read_bytes()

    def document(self, ref: GraphRef, node_threshold: float, edge_threshold: float) -> dict:
        """A lake graph's document, pruned at the thresholds."""
        return json.loads(self.document_bytes(ref, node_threshold, edge_threshold))

    def document_bytes(self, ref: GraphRef, node_threshold: float, edge_threshold: float):
        """A lake graph's document as JSON bytes (cached per file and thresholds)."""
        key = (*_identity(ref.path), node_threshold, edge_threshold)

        def build() -> bytes:
            document = self._build_document(ref, node_threshold, edge_threshold)
            return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()

        return self._documents.get(key, build)

    def _build_document(self, ref: GraphRef, node_threshold: float, edge_threshold: float):
        from ct_engine.graph.files import graph_document

        graph = self.graph(ref)
        entry = self.entry(ref.model)
        scan = graph.scan if graph.scan is not None else (entry.transcoders if entry else None)
        document = graph_document(
            graph,
            ref.id,
            tokenizer=self.tokenizer(ref, graph),
            scan=scan if scan is not None else "unknown",
            node_threshold=node_threshold,
            edge_threshold=edge_threshold,
        )
        add_influence_ranks(document, graph)
        return document

    def graph(self, ref: GraphRef):
        from ct_engine.graph.cache import load_graph

        def stored_influence(graph) -> None:  # a lake graph takes its node influence along
            from ct_lake.records import seed_node_influence

            seed_node_influence(self.lake, {"model": ref.model, "prompt": ref.prompt}, graph)

        with self._graph_lock:  # load_graph's cache is not thread-safe
            return load_graph(ref.path, on_load=stored_influence if ref.source == "lake" else None)

    def entry(self, model: str | None):
        """The config's model entry of ``model``, or None (no config, or not declared)."""
        if self.config is None or model is None:
            return None
        try:
            return self.config.model(model)
        except ValueError:
            return None

    def tokenizer(self, ref: GraphRef, graph):
        """The model's tokenizer (from the config entry, else the graph's tokenizer name)."""
        from ct_engine.presets import resolve_model

        entry = self.entry(ref.model)
        name = resolve_model(entry.model if entry is not None else graph.cfg.tokenizer_name)
        with self._tokenizer_lock:
            if name not in self._tokenizers:
                from transformers import AutoTokenizer

                self._tokenizers[name] = AutoTokenizer.from_pretrained(name)
            return self._tokenizers[name]

    # -- node ids -------------------------------------------------------------------------------

    def node_set(self, ref: GraphRef) -> dict[str, NodeRef]:
        """Every node id of the graph: the unpruned graph's nodes for a lake graph, the
        document's nodes for a file graph."""
        if ref.source == "file":
            return self._node_sets.get(_identity(ref.path), lambda: _file_nodes(ref.path))
        return self._node_sets.get(_identity(ref.path), lambda: _graph_nodes(self.graph(ref)))


def _graph_nodes(graph) -> dict[str, NodeRef]:
    """Every node of the graph by node id, in the graph's node order."""
    from ct_engine.graph.files import node_ids

    L = graph.n_layers
    nodes: dict[str, NodeRef] = {}
    features = graph.active_features[graph.selected_features.to(graph.active_features.device)]
    for layer, pos, feature in features.tolist():
        nodes[f"{layer}_{feature}_{pos}"] = NodeRef("feature", layer, pos, feature)
    for i in range(graph.n_features, graph.n_nodes):
        info = graph.node_info(i)
        nodes[node_ids(info, L)[0]] = NodeRef(info.kind, info.layer, info.pos, info.feature)
    return nodes


def add_influence_ranks(document: dict, graph) -> None:
    """Give each non-logit node of ``document`` its ``influence_rank`` (1 = the most
    influential) and ``influence_share`` (its influence over the total) among every node of the
    unpruned ``graph`` but the logits, and the metadata ``influence_ranked_nodes`` (how many).

    The influence is the lake's ``nodes.influence`` (:func:`ct_lake.records.node_influence`);
    the order, ties by node index, is the one of the document's cumulative ``influence``.
    """
    import torch

    from ct_lake.records import node_influence

    influence = node_influence(graph)[: graph.logit_slice.start]
    total = float(influence.sum())
    order = torch.sort(influence, descending=True, stable=True).indices.tolist()
    rank = {i: r for r, i in enumerate(order, start=1)}
    index = {node_id: i for i, node_id in enumerate(_graph_nodes(graph))}
    values = influence.tolist()
    for node in document["nodes"]:
        i = index.get(node["node_id"])
        if i is None or i >= len(values):  # logits: no influence of their own
            continue
        node["influence_rank"] = rank[i]
        node["influence_share"] = values[i] / total if total > 0 else 0.0
    document["metadata"]["influence_ranked_nodes"] = len(values)


_FEATURE_ID = re.compile(r"^(?P<layer>\d+)_(?P<feature>\d+)_(?P<pos>\d+)$")


def _file_nodes(path: Path) -> dict[str, NodeRef]:
    try:
        document = json.loads(path.read_bytes())
        if not isinstance(document, dict) or not isinstance(document.get("nodes", []), list):
            raise ValueError("not an object with a list of nodes")
    except (ValueError, RecursionError) as err:
        raise Conflict(f"graph file {path.name} is not a graph document ({err})") from None
    nodes: dict[str, NodeRef] = {}
    for node in document.get("nodes", []):
        if not isinstance(node, dict):
            continue
        node_id = node.get("node_id")
        if not isinstance(node_id, str):
            continue
        kind = {
            FEATURE_TYPE: "feature",
            "mlp reconstruction error": "error",
            "embedding": "token",
            "logit": "logit",
        }.get(node.get("feature_type"), "other")
        match = _FEATURE_ID.match(node_id) if kind == "feature" else None
        if match:
            layer, feature, pos = (int(match[k]) for k in ("layer", "feature", "pos"))
            nodes[node_id] = NodeRef(kind, layer, pos, feature)
        else:
            nodes[node_id] = NodeRef(kind, -1, int(node.get("ctx_idx") or 0), -1)
    return nodes


def _file_summary(path: Path, slug: str) -> dict:
    try:
        document = json.loads(path.read_bytes())
    except RecursionError:
        raise ValueError("not a graph document: JSON nested too deeply") from None
    except ValueError as err:
        raise ValueError(f"not JSON: {err}") from None
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("nodes"), list)
        or not all(isinstance(node, dict) for node in document["nodes"])
        or not isinstance(document.get("metadata") or {}, dict)
    ):
        raise ValueError("not a graph document (an object with a list of node objects)")
    metadata = document.get("metadata") or {}
    nodes = document["nodes"]
    top_target = top_prob = None
    for node in nodes:
        if node.get("feature_type") == "logit" and node.get("is_target_logit"):
            match = _TARGET_CLERP.match(node.get("clerp") or "")
            top_target = match["token"] if match else node.get("clerp")
            top_prob = _float_or_none(node.get("token_prob"))
            break
    tokens = metadata.get("prompt_tokens")
    return {
        "id": FILE_PREFIX + slug,
        "model": None,
        "prompt": slug,
        "prompt_text": metadata.get("prompt"),
        "n_tokens": len(tokens) if isinstance(tokens, list) else None,
        "n_features": sum(1 for n in nodes if n.get("feature_type") == FEATURE_TYPE),
        "n_edges": len(document.get("links") or []),
        "top_target": top_target,
        "top_target_prob": top_prob,
        "replacement_score": None,
        "completeness_score": None,
        "source": "file",
    }
