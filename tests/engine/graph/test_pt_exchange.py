"""Exchange with circuit-tracer's ``.pt`` graphs, and refusal of code-executing pickles.

The fixtures under tests/fixtures/graph were written by the real circuit-tracer 0.5.0
(``make_fixtures.py``). That circuit-tracer's ``Graph.from_pt`` loads our ``to_pt`` output was
checked once by hand with the reference install; here the pickle is compared byte for byte
with circuit-tracer's own.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import zipfile

import numpy as np
import pytest
import torch

from ct_engine.graph import Graph, LogitTarget, ModelConfig, UnsafePickleError
from tests.engine.graph.helpers import FIXTURES, random_graph

TENSORS = (
    "input_tokens",
    "active_features",
    "activation_values",
    "selected_features",
    "adjacency_matrix",
    "logit_probabilities",
)


def _data_pkl(path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        return archive.read(name)


def _globals(pkl: bytes) -> set[str]:
    return {arg for op, arg, _ in pickletools.genops(pkl) if op.name == "GLOBAL"}


def test_from_pt_reads_circuit_tracer_file():
    g = Graph.from_pt(FIXTURES / "ct_graph.pt")
    expected = json.loads((FIXTURES / "ct_graph_expected.json").read_text())
    with np.load(FIXTURES / "ct_graph_expected.npz") as arrays:
        for name in TENSORS:
            assert torch.equal(getattr(g, name), torch.from_numpy(arrays[name])), name
    assert g.input_string == expected["input_string"]
    assert g.logit_targets == [LogitTarget(s, i) for s, i in expected["logit_targets"]]
    assert g.vocab_size == expected["vocab_size"] == 990
    assert g.scan == expected["scan"]
    assert g.cfg == ModelConfig.from_dict(expected["cfg"])
    assert g.cfg.dtype == "float32" and g.cfg.n_key_value_heads == 1
    assert g.meta == {}


def test_from_pt_reads_legacy_layout():
    """Tensor-valued logit_targets, ``scan_name``, a TransformerLens config with numpy scalars."""
    g = Graph.from_pt(FIXTURES / "ct_graph_legacy.pt")
    assert g.logit_targets == [LogitTarget("", 311), LogitTarget("", 512)]
    assert g.scan == ["tiny-scan-a", "tiny-scan-b"]
    assert (g.cfg.n_layers, g.cfg.d_model, g.cfg.d_vocab, g.cfg.d_mlp) == (2, 8, 1000, 16)
    assert g.cfg.model_name == "tiny-tl" and g.cfg.tokenizer_name == "tiny/tokenizer"
    assert g.cfg.original_architecture == "GPT2LMHeadModel" and g.cfg.dtype == "float32"
    reference = Graph.from_pt(FIXTURES / "ct_graph.pt")
    for name in TENSORS:
        assert torch.equal(getattr(g, name), getattr(reference, name))


def test_to_pt_pickle_is_byte_identical_to_circuit_tracers(tmp_path):
    g = Graph.from_pt(FIXTURES / "ct_graph.pt")
    g.to_pt(tmp_path / "ours.pt")
    ours, theirs = _data_pkl(tmp_path / "ours.pt"), _data_pkl(FIXTURES / "ct_graph.pt")
    assert _globals(ours) == {
        "circuit_tracer.utils.tl_nnsight_mapping UnifiedConfig",
        "circuit_tracer.attribution.targets LogitTarget",
        "torch._utils _rebuild_tensor_v2",
        "collections OrderedDict",
        "torch FloatStorage",
        "torch LongStorage",
        "torch float32",
    }
    assert ours == theirs


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_to_pt_from_pt_round_trip(tmp_path, layout):
    g = random_graph(seed=0, layout=layout)
    g.scan = ["a", "b"]
    g.timings = {"x": 1.0}  # not part of the circuit-tracer format
    g.to_pt(tmp_path / "g.pt")
    back = Graph.from_pt(tmp_path / "g.pt")
    assert back.adjacency_matrix.layout == torch.strided
    assert torch.equal(back.adjacency_matrix, g.dense_adjacency())
    for name in TENSORS[:4] + ("logit_probabilities",):
        assert torch.equal(getattr(back, name), getattr(g, name))
    assert (back.input_string, back.logit_targets, back.vocab_size, back.cfg, back.scan) == (
        g.input_string,
        g.logit_targets,
        g.vocab_size,
        g.cfg,
        g.scan,
    )
    assert back.timings == {}
    assert os.listdir(tmp_path) == ["g.pt"]


def test_to_pt_scan_name_key(tmp_path):
    g = random_graph(seed=1)
    g.scan = "s"
    g.to_pt(tmp_path / "g.pt", scan_key="scan_name")
    pkl = _data_pkl(tmp_path / "g.pt")
    strings = {arg for op, arg, _ in pickletools.genops(pkl) if op.name == "BINUNICODE"}
    assert "scan_name" in strings and "scan" not in strings
    assert Graph.from_pt(tmp_path / "g.pt").scan == "s"
    with pytest.raises(ValueError):
        g.to_pt(tmp_path / "h.pt", scan_key="other")


# -- malicious files --------------------------------------------------------------------------


class _Shell:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('true')",))


def _zip_with_pickle(path, pkl: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pkl)
        archive.writestr("archive/byteorder", "little")


def test_malicious_pt_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = {"input_string": _Shell(f"touch {marker}"), "adjacency_matrix": torch.zeros(2)}
    torch.save(payload, tmp_path / "evil.pt")
    with pytest.raises(UnsafePickleError, match=r"refusing to load global '(posix|os)\.system'"):
        Graph.from_pt(tmp_path / "evil.pt")
    assert not marker.exists()


def test_hand_written_malicious_pickles_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    raw = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    cases = {
        "raw_global": raw,
        "eval": pickle.dumps({"x": _Eval()}, protocol=2),
        "stack_global": pickle.dumps({"x": _Shell(f"touch {marker}")}, protocol=4),
        "builtins_getattr": b"cbuiltins\ngetattr\n(cbuiltins\nobject\nS'__subclasses__'\ntR.",
    }
    for name, pkl in cases.items():
        path = tmp_path / f"{name}.pt"
        _zip_with_pickle(path, pkl)
        with pytest.raises(UnsafePickleError, match="refusing to load global"):
            Graph.from_pt(path)
    assert not marker.exists()


def test_allowed_stand_ins_reject_bad_arguments(tmp_path):
    # A config stand-in may only receive a dict of string keys as state.
    pkl = b"\x80\x02ccircuit_tracer.utils.tl_nnsight_mapping\nUnifiedConfig\n)\x81K\x01b."
    _zip_with_pickle(tmp_path / "bad_state.pt", pkl)
    with pytest.raises(UnsafePickleError, match="config state"):
        Graph.from_pt(tmp_path / "bad_state.pt")
    # A persistent id must name a storage of the archive.
    pkl = b"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x009NK\x02tQ."
    _zip_with_pickle(tmp_path / "missing_storage.pt", pkl)
    with pytest.raises(UnsafePickleError, match="missing"):
        Graph.from_pt(tmp_path / "missing_storage.pt")


def test_non_graph_and_non_zip_files_are_rejected(tmp_path):
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a torch zip archive"):
        Graph.from_pt(tmp_path / "plain.pt")
    torch.save({"input_string": "x"}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="missing"):
        Graph.from_pt(tmp_path / "partial.pt")
    buffer = io.BytesIO()
    torch.save(torch.zeros(3), buffer)
    (tmp_path / "tensor.pt").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="dict"):
        Graph.from_pt(tmp_path / "tensor.pt")
