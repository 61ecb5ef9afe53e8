"""Bad input to the Python API: the exception a caller gets, and a message that names the
bad file, tensor or value."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ct_engine.graph import Graph, UnsafePickleError
from ct_engine.graph.config import LogitTarget
from ct_engine.presets import TRANSCODERS
from ct_engine.transcoders import TranscoderFormatError, load_transcoders
from tests.bad_inputs.harness import Api, check_api, ids


def _toy_transcoders(tmp: Path, kind: str, file: str, key: str, index, value) -> Path:
    """A copy of the toy world's transcoders with ``file[key][index] = value``."""
    folder = tmp / f"toy-{kind}"
    shutil.copytree(TRANSCODERS[f"toy-world-{kind}"], folder)
    tensors = load_file(folder / file)
    tensors[key][index] = value
    save_file(tensors, folder / file)
    return folder


def _load(kind, file, key, index, value, **options):
    return lambda tmp: load_transcoders(
        _toy_transcoders(tmp, kind, file, key, index, value), **options
    )


def _lazy_rows(tmp: Path):
    """A lazy decoder is read when rows are needed: the bad row is refused then."""
    folder = _toy_transcoders(tmp, "plt", "layer_1.safetensors", "W_dec", (7, 2), float("nan"))
    transcoders = load_transcoders(folder, lazy_decoder=True)
    return transcoders.decoder_vectors(1, torch.tensor([0, 7]))


def _gemmascope_npz(tmp: Path):
    """A one-layer GemmaScope ``.npz`` set whose threshold holds a NaN."""
    import numpy as np

    D, F = 4, 8
    arrays = dict(W_enc=np.ones((D, F)), W_dec=np.ones((F, D)), b_enc=np.zeros(F))
    arrays.update(b_dec=np.zeros(D), threshold=np.array([0.1] * 5 + [np.nan] + [0.1] * 2))
    np.savez(tmp / "params.npz", **{k: v.astype("float32") for k, v in arrays.items()})
    (tmp / "config.yaml").write_text(
        "model_kind: transcoder_set\nfeature_input_hook: mlp.hook_in\n"
        "feature_output_hook: mlp.hook_out\ntranscoders: [params.npz]\n"
    )
    return load_transcoders(tmp)


def _tiny_graph(n_features: int, **tensors) -> Graph:
    """A graph of ``n_features`` features over 2 layers x 3 positions and one logit; any
    tensor given in ``tensors`` replaces the default one (made only when not given)."""
    n = n_features + 3 * 3 + 1
    defaults = dict(
        input_tokens=lambda: torch.zeros(3, dtype=torch.long),
        active_features=lambda: torch.zeros(n_features, 3, dtype=torch.long),
        activation_values=lambda: torch.ones(n_features),
        selected_features=lambda: torch.arange(n_features),
        adjacency_matrix=lambda: torch.zeros(n, n),
    )
    cfg = dict(n_layers=2, d_model=8, d_head=4, n_heads=2, d_mlp=16, d_vocab=50)
    cfg.update(tokenizer_name="x", model_name="x", original_architecture="x")
    return Graph(
        input_string="x",
        logit_targets=[LogitTarget("a", 1)],
        logit_probabilities=torch.ones(1),
        vocab_size=50,
        cfg=cfg,
        **{key: tensors[key] if key in tensors else make() for key, make in defaults.items()},
    )


def _declared_bomb(tmp: Path) -> Graph:
    """A file of a few KB that declares a 100,051-node graph (40 GB once touched): every
    tensor is a zero-stride view of one stored value."""
    S, n = 100_041, 100_041 + 3 * 3 + 1
    _tiny_graph(
        S,
        active_features=torch.zeros(1, 1, dtype=torch.long).expand(S, 3),
        activation_values=torch.zeros(1).expand(S),
        selected_features=torch.zeros(1, dtype=torch.long).expand(S),
        adjacency_matrix=torch.zeros(1, 1).expand(n, n),
    ).to_pt(tmp / "bomb.pt")
    assert (tmp / "bomb.pt").stat().st_size < 10_000
    return Graph.from_pt(tmp / "bomb.pt")


def _compressed(tmp: Path) -> Graph:
    """A real graph file re-zipped with compression (torch never compresses)."""
    _tiny_graph(4).to_pt(tmp / "g.pt")
    with zipfile.ZipFile(tmp / "g.pt") as src, zipfile.ZipFile(tmp / "z.pt", "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    return Graph.from_pt(tmp / "z.pt")


def _bad_hook(tmp: Path):
    from ct_engine.replacement import ReplacementModel
    from ct_engine.tiny import TinyModelSpec, build_random_transcoders, build_tiny_model

    spec = TinyModelSpec(family="llama", n_layers=2, d_model=16, n_heads=2, n_kv_heads=1, d_mlp=32)
    model = build_tiny_model(tmp / "model", spec)
    transcoders = build_random_transcoders(
        tmp / "tc",
        n_layers=2,
        d_model=16,
        d_transcoder=32,
        feature_input_hook="hook_resid_middle",
        feature_output_hook="mlp.hook_out",
    )
    return ReplacementModel.from_pretrained(model, transcoders, device="cpu")


def _toy_attribute(targets):
    from ct_engine import ReplacementModel, attribute

    model = ReplacementModel.from_pretrained("toy-world", "toy-world-plt", device="cpu")
    return attribute("The capital of Soubathia is", model, attribution_targets=targets)


NOT_FINITE = r"weights are not finite: 1 NaN and 0 infinite values, the first at index"

CASES = [
    # transcoder weights: refused as they are read, naming the file and tensor
    Api(
        "transcoders-nan-encoder",
        _load("plt", "layer_2.safetensors", "W_enc", (3, 5), float("nan")),
        TranscoderFormatError,
        rf"{NOT_FINITE} \(3, 5\) \(file: .*/layer_2\.safetensors, key: 'W_enc'\)$",
    ),
    Api(
        "transcoders-inf-bias",
        _load("plt", "layer_0.safetensors", "b_dec", 4, float("-inf")),
        TranscoderFormatError,
        r"0 NaN and 1 infinite values, the first at index \(4,\) \(file: .*/layer_0\.safetensors, "
        r"key: 'b_dec'\)$",
    ),
    Api(
        "transcoders-nan-eager-decoder",
        _load("plt", "layer_3.safetensors", "W_dec", (0, 0), float("nan"), lazy_decoder=False),
        TranscoderFormatError,
        r"key: 'W_dec'\)$",
    ),
    Api(
        "transcoders-nan-lazy-decoder-rows",
        _lazy_rows,
        TranscoderFormatError,
        rf"{NOT_FINITE} \(1, 2\) \(file: .*/layer_1\.safetensors, key: 'W_dec'\)$",
    ),
    Api(
        "transcoders-overflow-float16",
        _load("plt", "layer_0.safetensors", "W_enc", (1, 1), 1e6, dtype=torch.float16),
        TranscoderFormatError,
        r"weights overflow float16 \(largest magnitude 1e\+06\): load them in a wider dtype "
        r"\(file: .*/layer_0\.safetensors, key: 'W_enc'\)$",
    ),
    Api(
        "transcoders-nan-cross-layer",
        _load("clt", "W_enc_1.safetensors", "W_enc_1", (2, 2), float("nan")),
        TranscoderFormatError,
        rf"{NOT_FINITE} \(2, 2\) \(file: .*/W_enc_1\.safetensors, key: 'W_enc_1'\)$",
    ),
    Api(
        "transcoders-nan-gemmascope-npz",
        _gemmascope_npz,
        TranscoderFormatError,
        rf"{NOT_FINITE} \(5,\) \(file: .*/params\.npz, key: 'threshold'\)$",
    ),
    # a transcoder hook the model does not have: the model is named, the nearest hook offered
    Api(
        "transcoder-hook-unknown",
        _bad_hook,
        TranscoderFormatError,
        r"^the transcoders use hook 'hook_resid_middle', which this model \(.*/model, a "
        r"LlamaForCausalLM\) does not have; its hooks include hook_resid_mid.*"
        r"\(key: 'feature_input_hook'\)$",
    ),
    # graph .pt files
    Api(
        "graph-pt-missing",
        lambda tmp: Graph.from_pt(tmp / "nope.pt"),
        FileNotFoundError,
        r"^graph file .*/nope\.pt does not exist$",
    ),
    Api(
        "graph-pt-folder",
        lambda tmp: Graph.from_pt(tmp),
        IsADirectoryError,
        r"is a folder, not a graph file$",
    ),
    Api(
        "graph-pt-declares-more-than-it-stores",
        _declared_bomb,
        UnsafePickleError,
        r"bomb\.pt: a tensor of shape \(100051, 100051\) \(10,010,202,601 values\) is declared "
        r"over 1 stored values$",
    ),
    Api(
        "graph-pt-compressed-record",
        _compressed,
        UnsafePickleError,
        r"storage record '.*/data/\d+' is compressed; torch never does that$",
    ),
    Api(
        "graph-save-json-suffix",
        lambda tmp: _tiny_graph(1).save(tmp / "graph.json"),
        ValueError,
        r"^Graph\.save writes safetensors, not \.json: name the file \.safetensors",
    ),
    # a target word the vocabulary lacks would silently explain <unk>
    Api(
        "attribute-target-unknown-word",
        lambda tmp: _toy_attribute(["Xyzzyplugh"]),
        ValueError,
        r"^target 'Xyzzyplugh' is not in the model's vocabulary \(it tokenizes as \['<unk>'\]\)",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_api_refuses(case, tmp_path):
    check_api(case, tmp_path)
