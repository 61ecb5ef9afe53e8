"""Graph files for viewers: circuit-tracer / Neuronpedia JSON.

``create_graph_files`` prunes a graph and writes ``<slug>.json`` (``metadata``, ``qParams``,
``nodes``, ``links``) plus an upserted entry in ``graph-metadata.json``. Node ids:

=========  ===========================  ==============================  ======================
node       ``node_id``                  ``feature``                     ``jsNodeId``
=========  ===========================  ==============================  ======================
feature    ``{layer}_{feature}_{pos}``  Cantor pair of (layer, feature)  ``{layer}_{feature}-0``
error      ``{layer}_-1_{pos}``         ``-1``                          ``{layer}_-1-{pos}``
token      ``E_{token_id}_{pos}``       ``pos``                         ``E_{token_id}-{pos}``
logit      ``{L+1}_{vocab_idx}_{T-1}``  ``vocab_idx``                   ``L_{vocab_idx}-{T-1}``
=========  ===========================  ==============================  ======================

Error ids use circuit-tracer's corrected form (after 0.5.0): 0.5.0's ``0_{layer}_{pos}``
collides with layer-0 feature ids. ``influence`` is the cumulative influence share of the
pruning (smallest for the most influential node), as in circuit-tracer.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from ct_engine.folders import set_default_mode
from ct_engine.graph.graph import Graph, NodeInfo
from ct_engine.graph.pruning import PruneResult, prune_graph
from ct_engine.options import check_slug
from ct_engine.transcoders.refs import scan_name

SCHEMA_VERSION = 1
METADATA_FILE = "graph-metadata.json"
# JSON Schema of the graph file, shipped with the package.
SCHEMA_PATH = Path(__file__).with_name("graph_file.schema.json")


def cantor_pair(layer: int, feature: int) -> int:
    """Neuronpedia's feature id: ``(l + f)(l + f + 1) / 2 + f``."""
    return (layer + feature) * (layer + feature + 1) // 2 + feature


def node_ids(info: NodeInfo, n_layers: int) -> tuple[str, str]:
    """``(node_id, jsNodeId)`` of a node (module table)."""
    if info.kind == "feature":
        return f"{info.layer}_{info.feature}_{info.pos}", f"{info.layer}_{info.feature}-0"
    if info.kind == "error":
        return f"{info.layer}_-1_{info.pos}", f"{info.layer}_-1-{info.pos}"
    if info.kind == "token":
        return f"E_{info.vocab_idx}_{info.pos}", f"E_{info.vocab_idx}-{info.pos}"
    return f"{n_layers + 1}_{info.vocab_idx}_{info.pos}", f"L_{info.vocab_idx}-{info.pos}"


def _scan_fields(scan) -> tuple[str, list[str]]:
    if scan is None:
        raise ValueError("the graph has no scan: pass scan= to name its transcoder set")
    # A local folder (the toy world's sets, a user's own) shows as its name, never its path.
    if isinstance(scan, (str, os.PathLike)):
        return scan_name(scan), []
    scans = [scan_name(s) for s in scan]
    # circuit-tracer uses Python's hash(), which changes between processes; ours is stable.
    digest = hashlib.sha256("-".join(scans).encode()).hexdigest()[:12]
    return f"custom-{digest}", scans


def graph_document(
    graph: Graph,
    slug: str,
    *,
    tokenizer=None,
    scan=None,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
    pruned: PruneResult | None = None,
) -> dict:
    """The JSON document of a pruned graph, as a dict (see :func:`create_graph_files`).

    ``pruned``: ``prune_graph(graph, node_threshold, edge_threshold)`` when the caller has it
    already (the lakehouse prunes each graph once per run); computed here otherwise."""
    if tokenizer is None:
        tokenizer = graph_tokenizer(graph)
    scan_name, transcoder_list = _scan_fields(scan if scan is not None else graph.scan)
    if pruned is None:
        pruned = prune_graph(graph, node_threshold, edge_threshold)
    node_mask, edge_mask, cumulative = pruned
    L = graph.n_layers

    kept = node_mask.nonzero().squeeze(1).tolist()
    infos = {i: graph.node_info(i) for i in kept}
    ids = {i: node_ids(info, L) for i, info in infos.items()}
    # Links: kept edges between kept nodes, row-major (by target, then source).
    both = node_mask[edge_mask.rows] & node_mask[edge_mask.cols]
    rows, cols = edge_mask.rows[both], edge_mask.cols[both]
    weights = edge_mask.values_in(graph.adjacency_matrix)[both].tolist()
    rows, cols = rows.tolist(), cols.tolist()
    links = [
        {"source": ids[s][0], "target": ids[t][0], "weight": w}
        for t, s, w in zip(rows, cols, weights, strict=True)
    ]
    linked = set(rows) | set(cols)

    nodes = []
    for i in kept:
        info = infos[i]
        if i not in linked and info.kind not in ("token", "logit"):
            continue
        node_id, js_id = ids[i]
        node = {
            "node_id": node_id,
            "feature": info.pos if info.kind == "token" else -1,
            "layer": str(info.layer) if info.kind != "token" else "E",
            "ctx_idx": info.pos,
            "feature_type": "",
            "token_prob": 0.0,
            "is_target_logit": False,
            "run_idx": 0,
            "reverse_ctx_idx": 0,
            "jsNodeId": js_id,
            "clerp": "",
            "influence": float(cumulative[i]),
            "activation": None,
        }
        if info.kind == "feature":
            idx = int(graph.selected_features[i])
            node.update(
                feature=cantor_pair(info.layer, info.feature),
                feature_type="cross layer transcoder",
                activation=float(graph.activation_values[idx]),
            )
        elif info.kind == "error":
            node.update(feature_type="mlp reconstruction error")
        elif info.kind == "token":
            node.update(feature_type="embedding")
        else:
            k = i - graph.logit_slice.start
            prob = float(graph.logit_probabilities[k])
            node.update(
                feature=info.vocab_idx,
                layer=str(L + 1),
                feature_type="logit",
                token_prob=prob,
                is_target_logit=k == 0,
                clerp=f'Output "{info.target.token_str}" (p={prob:.3f})',
                influence=None,
            )
        nodes.append(node)

    metadata = {
        "slug": slug,
        "scan": scan_name,
        "transcoder_list": transcoder_list,
        "prompt_tokens": [tokenizer.decode([int(t)]) for t in graph.input_tokens],
        "prompt": graph.input_string,
        "node_threshold": node_threshold,
        "schema_version": SCHEMA_VERSION,
    }
    q_params = {
        "pinnedIds": [],
        "supernodes": [],
        "linkType": "both",
        "clickedId": "",
        "sg_pos": "",
    }
    return {"metadata": metadata, "qParams": q_params, "nodes": nodes, "links": links}


def graph_tokenizer(graph: Graph):
    """The tokenizer named by the graph's config; a registered model name (``toy-world``) is
    read from its shipped folder, so graphs of the shipped models need no hub access."""
    from transformers import AutoTokenizer

    from ct_engine.presets import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(graph.cfg.tokenizer_name))


def load_any_graph(graph_or_path: Graph | str | os.PathLike[str]) -> Graph:
    """A :class:`Graph` as is, or read from circuit-tracer's ``.pt`` (by the safe reader, which
    never runs pickled code) or from our ``.safetensors`` file.

    Raises:
        ValueError: a path with another suffix.
        FileNotFoundError: a path that does not exist.
    """
    if isinstance(graph_or_path, Graph):
        return graph_or_path
    if not isinstance(graph_or_path, (str, os.PathLike)):
        raise TypeError(
            f"expected a Graph or the path of a graph file, got {type(graph_or_path).__name__}"
        )
    path = Path(graph_or_path).expanduser()
    if path.suffix not in (".pt", ".safetensors"):
        raise ValueError(f"{path}: a graph file ends in .pt (circuit-tracer) or .safetensors")
    if not path.is_file():
        raise FileNotFoundError(f"no graph file at {path}")
    return Graph.from_pt(path) if path.suffix == ".pt" else Graph.load(path)


def create_graph_files(
    graph_or_path: Graph | str | os.PathLike[str],
    slug: str,
    output_path: str | os.PathLike[str],
    scan: str | os.PathLike[str] | list[str] | None = None,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
    *,
    tokenizer=None,
) -> Path:
    """Prune a graph and write ``<output_path>/<slug>.json`` for a viewer; insert or replace
    the slug's entry in ``graph-metadata.json``. Both writes are atomic. Returns the path.

    The arguments are circuit-tracer's, in its order.

    Args:
        graph_or_path: a :class:`Graph`, or the path of a ``.pt`` / ``.safetensors`` graph.
        slug: the graph's name in the viewer (a plain file name).
        output_path: folder of the graph files (created if needed).
        scan: names the transcoder set; default ``graph.scan``.
        node_threshold, edge_threshold: pruning thresholds (cumulative influence shares).
        tokenizer: decodes the prompt tokens; default the tokenizer of the graph's model
            (a shipped model's from its folder, others from the Hugging Face hub).

    Raises:
        ValueError: a slug that is not a plain file name, no scan to name the transcoders,
            a graph path that is not ``.pt`` / ``.safetensors``, or a ``graph-metadata.json``
            there that is not a graph index.
    """
    check_slug(slug)
    if isinstance(scan, (int, float)):
        # Older calls passed node_threshold fourth; circuit-tracer's fourth argument is scan.
        raise TypeError(f"scan={scan!r}: scan is the fourth argument; pass node_threshold= by name")
    graph = load_any_graph(graph_or_path)
    out = Path(output_path)
    out.mkdir(parents=True, exist_ok=True)
    document = graph_document(
        graph,
        slug,
        tokenizer=tokenizer,
        scan=scan,
        node_threshold=node_threshold,
        edge_threshold=edge_threshold,
    )
    entries = [g for g in read_graph_index(out) if g.get("slug") != slug]  # before any write
    path = out / f"{slug}.json"
    _write_json_atomic(path, document)
    entries.append(document["metadata"])
    _write_json_atomic(out / METADATA_FILE, {"graphs": entries})
    return path


def read_graph_index(folder: str | os.PathLike[str]) -> list[dict]:
    """The entries of ``folder``'s ``graph-metadata.json``; ``[]`` when there is none.

    Raises:
        ValueError: the file names itself when it is not a ``{"graphs": [...]}`` document.
    """
    path = Path(folder) / METADATA_FILE
    if not path.exists():
        return []
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read the graph index ({err}): fix or remove it") from None
    graphs = index.get("graphs") if isinstance(index, dict) else None
    if not isinstance(graphs, list) or not all(isinstance(g, dict) for g in graphs):
        raise ValueError(f'{path}: not a graph index {{"graphs": [...]}}: fix or remove it')
    return graphs


def _write_json_atomic(path: Path, payload: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, separators=(",", ":"))
        set_default_mode(tmp)  # mkstemp's file is private (0600); the viewer's JSON is not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
