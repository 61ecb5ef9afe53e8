"""The attribution graph object.

Node layout (``S`` selected features, ``L`` layers, ``T`` positions, ``K`` logit targets)::

    [ selected features (S) | errors (L·T, layer-major) | tokens (T) | logit targets (K) ]

so error ``(l, p)`` is node ``S + l·T + p``, token ``p`` is ``S + L·T + p`` and logit ``k`` is
``S + (L+1)·T + k``. ``adjacency_matrix[target, source]`` is the direct effect of ``source`` on
``target``: rows are targets, columns are sources.

The adjacency may be a dense tensor or a torch sparse tensor (COO or CSR); every helper here
works on both.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import torch

from ct_engine.graph._edges import EdgeList
from ct_engine.graph.config import LogitTarget, ModelConfig

NodeKind = Literal["feature", "error", "token", "logit"]

SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr)


@dataclass(frozen=True)
class NodeInfo:
    """What one node of a graph is.

    Attributes:
        kind: ``"feature"``, ``"error"``, ``"token"`` or ``"logit"``.
        layer: the layer of a feature or error; ``-1`` for tokens (they are written at the
            embedding, before layer 0); ``n_layers`` for logits (read after the last layer).
        pos: the position (logits: the last position, ``T - 1``).
        feature: the transcoder feature index; ``-1`` for errors, tokens and logits.
        vocab_idx: the input token id for tokens, the target's vocabulary index for logits,
            ``-1`` otherwise.
        target: the :class:`LogitTarget` of a logit node, else ``None``.
    """

    kind: NodeKind
    layer: int
    pos: int
    feature: int = -1
    vocab_idx: int = -1
    target: LogitTarget | None = None


@dataclass(eq=False)
class Graph:
    """An attribution graph: nodes, their direct-effect edges, and what produced them.

    Attributes:
        input_string: the decoded prompt, including the prepended special token's text.
        input_tokens: ``(T,)`` long, the prompt token ids.
        active_features: ``(N_act, 3)`` long, (layer, pos, feature) of every active feature,
            in lexicographic order.
        activation_values: ``(N_act,)`` activation of every active feature.
        selected_features: ``(S,)`` long, ascending indices into ``active_features`` of the
            features that are graph nodes.
        adjacency_matrix: ``(N, N)`` float32, dense or sparse (COO/CSR); rows = targets.
        logit_targets: the ``K`` output targets, in node order.
        logit_probabilities: ``(K,)`` target weights (softmax probabilities for real tokens).
        vocab_size: the tokenizer's vocabulary size.
        cfg: the model facts (:class:`ModelConfig`; a dict is converted).
        scan: identifier(s) of the transcoders used, if known.
        timings: seconds spent per phase while building the graph.
        meta: extra JSON-able information.
    """

    input_string: str
    input_tokens: torch.Tensor
    active_features: torch.Tensor
    activation_values: torch.Tensor
    selected_features: torch.Tensor
    adjacency_matrix: torch.Tensor
    logit_targets: list[LogitTarget]
    logit_probabilities: torch.Tensor
    vocab_size: int
    cfg: ModelConfig
    scan: str | list[str] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.cfg, dict):
            self.cfg = ModelConfig.from_dict(self.cfg)
        self.logit_targets = [
            t if isinstance(t, LogitTarget) else LogitTarget(str(t[0]), int(t[1]))
            for t in self.logit_targets
        ]
        self.vocab_size = int(self.vocab_size)
        self._validate()

    def _validate(self) -> None:
        A = self.adjacency_matrix
        if A.dim() != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"adjacency_matrix must be square, got shape {tuple(A.shape)}")
        if not A.dtype.is_floating_point:
            raise ValueError(f"adjacency_matrix must be floating point, got {A.dtype}")
        if A.shape[0] != self.n_nodes:
            raise ValueError(
                f"adjacency_matrix has {A.shape[0]} nodes, expected {self.n_nodes} = "
                f"{self.n_features} features + ({self.n_layers}+1)·{self.n_pos} errors/tokens "
                f"+ {self.n_logits} logits"
            )
        if self.active_features.dim() != 2 or self.active_features.shape[1] != 3:
            raise ValueError("active_features must have shape (N_act, 3)")
        if len(self.logit_probabilities) != self.n_logits:
            raise ValueError("logit_probabilities and logit_targets differ in length")

    # -- sizes and slices -------------------------------------------------------------------

    @property
    def n_pos(self) -> int:
        """``T``, the number of prompt positions."""
        return len(self.input_tokens)

    @property
    def n_layers(self) -> int:
        """``L``, the model's number of layers."""
        return int(self.cfg.n_layers)

    @property
    def n_features(self) -> int:
        """``S``, the number of feature nodes."""
        return len(self.selected_features)

    @property
    def n_logits(self) -> int:
        """``K``, the number of logit target nodes."""
        return len(self.logit_targets)

    @property
    def n_nodes(self) -> int:
        """``N = S + (L+1)·T + K``."""
        return self.n_features + (self.n_layers + 1) * self.n_pos + self.n_logits

    @property
    def feature_slice(self) -> slice:
        return slice(0, self.n_features)

    @property
    def error_slice(self) -> slice:
        start = self.n_features
        return slice(start, start + self.n_layers * self.n_pos)

    @property
    def token_slice(self) -> slice:
        start = self.n_features + self.n_layers * self.n_pos
        return slice(start, start + self.n_pos)

    @property
    def logit_slice(self) -> slice:
        start = self.n_features + (self.n_layers + 1) * self.n_pos
        return slice(start, start + self.n_logits)

    # -- node lookup ------------------------------------------------------------------------

    def error_node(self, layer: int, pos: int) -> int:
        """Node index of the error node of ``layer`` at ``pos``."""
        _check_range("layer", layer, self.n_layers)
        _check_range("pos", pos, self.n_pos)
        return self.n_features + layer * self.n_pos + pos

    def token_node(self, pos: int) -> int:
        """Node index of the token (embedding) node at ``pos``."""
        _check_range("pos", pos, self.n_pos)
        return self.token_slice.start + pos

    def logit_node(self, k: int) -> int:
        """Node index of logit target ``k``."""
        _check_range("logit", k, self.n_logits)
        return self.logit_slice.start + k

    def feature_nodes_of(self, layer: int, pos: int) -> torch.Tensor:
        """``(n,)`` long: node indices of the selected features at ``(layer, pos)``, ascending."""
        feats = self.active_features[self.selected_features.to(self.active_features.device)]
        hit = (feats[:, 0] == layer) & (feats[:, 1] == pos)
        return hit.nonzero().squeeze(1).cpu()

    def node_kind(self, i: int) -> NodeKind:
        """Kind of node ``i`` (negative indices count from the end)."""
        i = self._index(i)
        if i < self.error_slice.start:
            return "feature"
        if i < self.token_slice.start:
            return "error"
        if i < self.logit_slice.start:
            return "token"
        return "logit"

    def node_info(self, i: int) -> NodeInfo:
        """Kind, layer, position and feature of node ``i`` (see :class:`NodeInfo`)."""
        i = self._index(i)
        kind = self.node_kind(i)
        if kind == "feature":
            layer, pos, feat = (int(v) for v in self.active_features[self.selected_features[i]])
            return NodeInfo("feature", layer, pos, feat)
        if kind == "error":
            layer, pos = divmod(i - self.error_slice.start, self.n_pos)
            return NodeInfo("error", layer, pos)
        if kind == "token":
            pos = i - self.token_slice.start
            return NodeInfo("token", -1, pos, vocab_idx=int(self.input_tokens[pos]))
        target = self.logit_targets[i - self.logit_slice.start]
        return NodeInfo(
            "logit", self.n_layers, self.n_pos - 1, vocab_idx=target.vocab_idx, target=target
        )

    def _index(self, i: int) -> int:
        n = self.n_nodes
        if not -n <= i < n:
            raise IndexError(f"node {i} out of range for a graph of {n} nodes")
        return i + n if i < 0 else i

    # -- tensors ----------------------------------------------------------------------------

    @property
    def logit_token_ids(self) -> torch.Tensor:
        """``(K,)`` long: the targets' vocabulary indices, on the probabilities' device."""
        return torch.tensor(
            [t.vocab_idx for t in self.logit_targets],
            dtype=torch.long,
            device=self.logit_probabilities.device,
        )

    @property
    def logit_tokens(self) -> torch.Tensor:
        """Deprecated alias of :attr:`logit_token_ids` (circuit-tracer's old name)."""
        warnings.warn(
            "logit_tokens is deprecated; use logit_token_ids", DeprecationWarning, stacklevel=2
        )
        return self.logit_token_ids

    @property
    def is_sparse(self) -> bool:
        """Whether the adjacency is stored as a torch sparse tensor."""
        return self.adjacency_matrix.layout in SPARSE_LAYOUTS

    def dense_adjacency(self) -> torch.Tensor:
        """``(N, N)``: the adjacency as a dense tensor (the stored tensor itself when dense)."""
        A = self.adjacency_matrix
        return A.to_dense() if A.layout in SPARSE_LAYOUTS else A

    def nonzero_edges(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The nonzero entries of the adjacency, in row-major order.

        Returns:
            ``(targets (E,) long, sources (E,) long, values (E,))``.
        """
        edges = EdgeList.from_matrix(self.adjacency_matrix, dtype=self.adjacency_matrix.dtype)
        return edges.rows, edges.cols, edges.values

    def to(self, device: str | torch.device) -> Graph:
        """Move every tensor to ``device`` (in place); returns ``self``."""
        for name in (
            "input_tokens",
            "active_features",
            "activation_values",
            "selected_features",
            "adjacency_matrix",
            "logit_probabilities",
        ):
            setattr(self, name, getattr(self, name).to(device))
        return self

    # -- storage ----------------------------------------------------------------------------

    def save(self, path: str | PathLike[str]) -> None:
        """Write to one safetensors file (tensors) with JSON metadata; atomic.

        See :mod:`ct_engine.graph.storage`. A ``.pt`` or ``.json`` name is refused: those
        suffixes promise other formats (:meth:`to_pt`, ``create_graph_files``).
        """
        from ct_engine.graph.storage import save_graph

        suffix = Path(path).suffix.lower()
        if suffix in (".pt", ".json"):
            raise ValueError(
                f"Graph.save writes safetensors, not {suffix}: name the file .safetensors, use "
                "to_pt() for a circuit-tracer .pt, or create_graph_files() for the viewer's JSON"
            )
        save_graph(self, path)

    @staticmethod
    def load(path: str | PathLike[str], map_location: str | torch.device = "cpu") -> Graph:
        """Read a graph written by :meth:`save`."""
        from ct_engine.graph.storage import load_graph

        return load_graph(path, map_location=map_location)

    def to_pt(self, path: str | PathLike[str], scan_key: str = "scan") -> None:
        """Write a ``.pt`` that circuit-tracer 0.5.0's ``Graph.from_pt`` loads.

        See :mod:`ct_engine.graph.pt_exchange`. ``timings`` and ``meta`` are not written.
        """
        from ct_engine.graph.pt_exchange import write_pt

        write_pt(self, path, scan_key=scan_key)

    @staticmethod
    def from_pt(path: str | PathLike[str], map_location: str | torch.device = "cpu") -> Graph:
        """Read a circuit-tracer ``.pt`` graph through a restricted unpickler."""
        from ct_engine.graph.pt_exchange import read_pt

        return read_pt(path, map_location=map_location)


def _check_range(name: str, value: int, size: int) -> None:
    if not 0 <= value < size:
        raise IndexError(f"{name} {value} out of range [0, {size})")
