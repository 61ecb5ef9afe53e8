"""Saving graphs without pickle: one safetensors file with a JSON header entry.

Layout of the file:

* tensors ``input_tokens``, ``active_features``, ``activation_values``, ``selected_features``,
  ``logit_probabilities``;
* the adjacency, depending on how it is held and what is smaller:

  - dense, stored dense: ``adjacency``;
  - dense, stored sparse: ``adjacency.rows``, ``adjacency.cols`` (int32 when ``N < 2³¹``) and
    ``adjacency.values``, the entries whose bit pattern is nonzero (so ``-0.0`` survives);
  - sparse COO: ``adjacency.indices (2, nnz)`` and ``adjacency.values`` as held (coalesced or not);
  - sparse CSR: ``adjacency.crow_indices``, ``adjacency.col_indices``, ``adjacency.values``;

* the safetensors metadata entry ``ct_graph``: JSON with everything else (strings, targets,
  config, scan, timings, meta) and the adjacency layout.

Loading gives back the same dtypes, values and adjacency layout. The file is written to a
temporary name next to the target and renamed into place, tensor by tensor straight from
their memory (safetensors' own writer first copies every tensor into one bytes object, which
doubles the peak for a graph of hundreds of millions of edges).
"""

from __future__ import annotations

import json
import os
import uuid
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ct_engine.graph.config import LogitTarget, ModelConfig
from ct_engine.graph.graph import Graph

FORMAT_NAME = "ct-graph"
FORMAT_VERSION = 1
_METADATA_KEY = "ct_graph"
_PLAIN_TENSORS = (
    "input_tokens",
    "active_features",
    "activation_values",
    "selected_features",
    "logit_probabilities",
)
# Integer views used to find entries whose bit pattern is nonzero.
_BIT_VIEWS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_SCAN_BLOCK_ENTRIES = 1 << 24


def save_graph(graph: Graph, path: str | PathLike[str]) -> None:
    """Write ``graph`` to ``path`` (one safetensors file), atomically."""
    path = Path(path)
    tensors = {
        name: getattr(graph, name).detach().cpu().contiguous().clone() for name in _PLAIN_TENSORS
    }
    adjacency_tensors, adjacency_info = _encode_adjacency(graph.adjacency_matrix)
    tensors |= adjacency_tensors
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "input_string": graph.input_string,
        "logit_targets": [[t.token_str, t.vocab_idx] for t in graph.logit_targets],
        "vocab_size": graph.vocab_size,
        "cfg": graph.cfg.to_dict(),
        "scan": graph.scan,
        "timings": graph.timings,
        "meta": graph.meta,
        "adjacency": adjacency_info,
    }
    try:
        metadata = {_METADATA_KEY: json.dumps(header)}
    except TypeError as err:
        raise TypeError(f"graph.meta/timings must be JSON-serialisable: {err}") from err
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        _write_safetensors(tmp, tensors, metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_graph(path: str | PathLike[str], map_location: str | torch.device = "cpu") -> Graph:
    """Read a graph written by :func:`save_graph`."""
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        metadata = handle.metadata() or {}
        if _METADATA_KEY not in metadata:
            raise ValueError(f"{path} is not a ct-graph file (no {_METADATA_KEY!r} metadata)")
        header = json.loads(metadata[_METADATA_KEY])
        if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: unsupported graph format {header.get('format')!r} "
                f"version {header.get('version')!r}"
            )
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    adjacency = _decode_adjacency(tensors, header["adjacency"])
    graph = Graph(
        input_string=header["input_string"],
        adjacency_matrix=adjacency,
        logit_targets=[LogitTarget(str(s), int(i)) for s, i in header["logit_targets"]],
        vocab_size=header["vocab_size"],
        cfg=ModelConfig.from_dict(header["cfg"]),
        scan=header["scan"],
        timings=header["timings"],
        meta=header["meta"],
        **{name: tensors[name] for name in _PLAIN_TENSORS},
    )
    return graph.to(map_location)


def _encode_adjacency(A: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON description of the adjacency (see the module docstring)."""
    info: dict[str, Any] = {"shape": list(A.shape)}
    A = A.detach().cpu()
    if A.layout == torch.sparse_coo:
        info |= {"layout": "coo", "storage": "sparse", "coalesced": A.is_coalesced()}
        indices = A._indices() if not A.is_coalesced() else A.indices()
        values = A._values() if not A.is_coalesced() else A.values()
        return {
            "adjacency.indices": indices.contiguous(),
            "adjacency.values": values.contiguous(),
        }, info
    if A.layout == torch.sparse_csr:
        info |= {"layout": "csr", "storage": "sparse"}
        return {
            "adjacency.crow_indices": A.crow_indices().contiguous(),
            "adjacency.col_indices": A.col_indices().contiguous(),
            "adjacency.values": A.values().contiguous(),
        }, info
    info["layout"] = "dense"
    rows, cols, values = _bitwise_nonzero(A)
    n = A.shape[0]
    index_dtype = torch.int32 if n < 2**31 else torch.int64
    index_bytes = torch.tensor([], dtype=index_dtype).element_size()
    sparse_bytes = len(values) * (2 * index_bytes + A.element_size())
    if sparse_bytes >= A.numel() * A.element_size():
        info["storage"] = "dense"
        return {"adjacency": A.contiguous()}, info
    info["storage"] = "sparse"
    return {
        "adjacency.rows": rows.to(index_dtype),
        "adjacency.cols": cols.to(index_dtype),
        "adjacency.values": values.contiguous(),
    }, info


def _decode_adjacency(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> torch.Tensor:
    shape = tuple(info["shape"])
    layout, storage = info["layout"], info["storage"]
    if layout == "coo":
        return torch.sparse_coo_tensor(
            tensors["adjacency.indices"],
            tensors["adjacency.values"],
            shape,
            is_coalesced=bool(info["coalesced"]),
            check_invariants=True,
        )
    if layout == "csr":
        return torch.sparse_csr_tensor(
            tensors["adjacency.crow_indices"],
            tensors["adjacency.col_indices"],
            tensors["adjacency.values"],
            shape,
            check_invariants=True,
        )
    if layout != "dense":
        raise ValueError(f"unknown adjacency layout {layout!r}")
    if storage == "dense":
        return tensors["adjacency"]
    values = tensors["adjacency.values"]
    out = torch.zeros(shape, dtype=values.dtype)
    out[tensors["adjacency.rows"].long(), tensors["adjacency.cols"].long()] = values
    return out


def _bitwise_nonzero(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row-major coordinates and values of the entries of ``A`` whose bits are not all zero."""
    bits = _BIT_VIEWS[A.element_size()]
    n_rows, n_cols = A.shape
    block = max(1, _SCAN_BLOCK_ENTRIES // max(n_cols, 1))
    rows, cols, values = [], [], []
    for start in range(0, n_rows, block):
        chunk = A[start : start + block].contiguous()
        r, c = (chunk.view(bits) != 0).nonzero(as_tuple=True)
        rows.append(r + start)
        cols.append(c)
        values.append(chunk[r, c])
    if not rows:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0, dtype=A.dtype)
    return torch.cat(rows), torch.cat(cols), torch.cat(values)


_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """A safetensors file (8-byte header size, JSON header, raw little-endian data), each
    tensor written from its own memory; fsynced."""
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        size = t.numel() * t.element_size()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little"))
        handle.write(text)
        for name in names:
            t = tensors[name].contiguous()
            if t.numel():
                flat = t.reshape(-1)
                raw = flat.view(torch.uint8) if t.dtype != torch.bool else flat.to(torch.uint8)
                handle.write(memoryview(raw.numpy()))
        handle.flush()
        os.fsync(handle.fileno())
