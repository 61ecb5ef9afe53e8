"""Every malformed input raises TranscoderFormatError naming the file and the key."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from ct_engine.transcoders import CrossLayerTranscoder, TranscoderFormatError, load_transcoders

D, F, L = 16, 64, 3  # the sizes the conftest builders use


def _raises(ref, file: str | Path, key: str | None, **kwargs) -> TranscoderFormatError:
    with pytest.raises(TranscoderFormatError) as info:
        load_transcoders(ref, **kwargs)
    err = info.value
    assert Path(err.file).name == Path(file).name, str(err)
    assert str(Path(file).name) in str(err)
    assert err.key == key
    if key is not None:
        assert repr(key) in str(err)
    return err


def _edit_config(folder: Path, **changes) -> None:
    config = yaml.safe_load((folder / "config.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


def _edit_tensors(path: Path, drop=(), **replace) -> None:
    tensors = load_file(str(path))
    for key in drop:
        del tensors[key]
    tensors.update(replace)
    save_file(tensors, str(path))


def test_error_message_format():
    err = TranscoderFormatError("bad shape", file="/x/layer_0.safetensors", key="W_enc")
    assert str(err) == "bad shape (file: /x/layer_0.safetensors, key: 'W_enc')"
    assert (err.file, err.key) == ("/x/layer_0.safetensors", "W_enc")
    assert isinstance(err, ValueError)
    assert str(TranscoderFormatError("plain")) == "plain"


@pytest.mark.parametrize("key", ["model_kind", "feature_input_hook", "feature_output_hook"])
def test_missing_config_key(ct_folder, key):
    folder = ct_folder()
    _edit_config(folder, **{key: None})
    _raises(folder, "config.yaml", key)


def test_unknown_model_kind(ct_folder):
    folder = ct_folder()
    _edit_config(folder, model_kind="sparse_autoencoder")
    _raises(folder, "config.yaml", "model_kind")


def test_unknown_activation(ct_folder):
    folder = ct_folder()
    _edit_config(folder, activation="gelu")
    _raises(folder, "config.yaml", "activation")


def test_topk_without_k(ct_folder):
    folder = ct_folder(activation="topk")
    _edit_config(folder, k=None)
    _raises(folder, "config.yaml", "k")


def test_topk_with_bad_k(ct_folder):
    folder = ct_folder(activation="topk")
    _edit_config(folder, k="many")
    _raises(folder, "config.yaml", "k")


def test_jump_relu_without_thresholds(ct_folder):
    folder = ct_folder(activation="relu")
    _edit_config(folder, activation="jump_relu")
    _raises(folder, "layer_0.safetensors", "activation_function.threshold")


def test_clt_rejects_topk(ct_folder):
    folder = ct_folder(kind="clt")
    _edit_config(folder, activation="topk", k=4)
    _raises(folder, "config.yaml", "activation")
    with pytest.raises(TranscoderFormatError):
        CrossLayerTranscoder(
            W_enc=torch.zeros(1, 2, 3),
            b_enc=torch.zeros(1, 2),
            W_dec=[torch.zeros(2, 1, 3)],
            b_dec=torch.zeros(1, 3),
            activation="topk",
            feature_input_hook="a",
            feature_output_hook="b",
        )


@pytest.mark.parametrize("key", ["W_enc", "b_enc", "W_dec", "b_dec"])
def test_plt_missing_tensor(ct_folder, key):
    folder = ct_folder()
    _edit_tensors(folder / "layer_1.safetensors", drop=[key])
    _raises(folder, "layer_1.safetensors", key)


@pytest.mark.parametrize(
    "key,shape",
    [
        ("W_enc", (F + 1, D)),  # F differs from layer 0
        ("W_enc", (F, D + 1)),  # D differs from layer 0
        ("b_enc", (F + 1,)),
        ("W_dec", (F, D + 1)),
        ("b_dec", (D + 1,)),
        ("activation_function.threshold", (F - 1,)),
        ("W_skip", (D, D + 1)),
    ],
)
def test_plt_wrong_shape(ct_folder, key, shape):
    folder = ct_folder(skip=True)
    _edit_tensors(folder / "layer_2.safetensors", **{key: torch.zeros(shape)})
    _raises(folder, "layer_2.safetensors", key)


def test_plt_skip_on_some_layers_only(ct_folder):
    folder = ct_folder(skip=True)
    _edit_tensors(folder / "layer_1.safetensors", drop=["W_skip"])
    _raises(folder, "layer_1.safetensors", "W_skip")


def test_d_model_mismatch(ct_folder):
    _raises(ct_folder(), "layer_0.safetensors", "W_enc", d_model=D + 8)
    _raises(ct_folder(name="clt", kind="clt"), "W_enc_0.safetensors", "W_enc_0", d_model=D + 8)


def test_gap_in_layer_files(ct_folder):
    folder = ct_folder()
    (folder / "layer_1.safetensors").unlink()
    _raises(folder, "layer_1.safetensors", "W_enc")


def test_fewer_layers_than_model(ct_folder):
    _raises(ct_folder(), "layer_3.safetensors", "W_enc", n_layers=L + 1)
    _raises(ct_folder(name="clt", kind="clt"), "W_enc_3.safetensors", "W_enc_3", n_layers=L + 1)


def test_more_layers_than_model(ct_folder):
    _raises(ct_folder(), "layer_2.safetensors", "W_enc", n_layers=L - 1)


def test_no_layer_files(ct_folder):
    folder = ct_folder()
    for path in folder.glob("*.safetensors"):
        path.unlink()
    _raises(folder, "layer_0.safetensors", "W_enc")


def test_missing_directory(tmp_path):
    _raises(tmp_path / "nowhere", "nowhere", None)


def test_missing_config(ct_folder):
    folder = ct_folder()
    (folder / "config.yaml").unlink()
    _raises(folder, "config.yaml", None)


def test_config_not_a_mapping(ct_folder):
    folder = ct_folder()
    (folder / "config.yaml").write_text("- a\n- b\n")
    _raises(folder, "config.yaml", None)


@pytest.mark.parametrize("key", ["W_enc_1", "b_enc_1", "b_dec_1"])
def test_clt_missing_tensor(ct_folder, key):
    folder = ct_folder(kind="clt")
    _edit_tensors(folder / "W_enc_1.safetensors", drop=[key])
    _raises(folder, "W_enc_1.safetensors", key)


def test_clt_missing_decoder_file(ct_folder):
    folder = ct_folder(kind="clt")
    (folder / "W_dec_2.safetensors").unlink()
    _raises(folder, "W_dec_2.safetensors", "W_dec_2")


def test_clt_gap_in_encoder_files(ct_folder):
    folder = ct_folder(kind="clt")
    (folder / "W_enc_1.safetensors").unlink()
    _raises(folder, "W_enc_1.safetensors", "W_enc_1")


@pytest.mark.parametrize(
    "file,key,shape",
    [
        ("W_dec_1.safetensors", "W_dec_1", (F, L, D)),  # must be (F, L − 1, D)
        ("W_enc_2.safetensors", "W_enc_2", (F, D + 2)),
        ("W_enc_1.safetensors", "threshold_1", (F + 1,)),
        ("W_enc_1.safetensors", "W_skip_1", (D + 1, D)),
    ],
)
def test_clt_wrong_shape(ct_folder, file, key, shape):
    folder = ct_folder(kind="clt", skip=True)
    _edit_tensors(folder / file, **{key: torch.zeros(shape)})
    _raises(folder, file, key)


def test_clt_threshold_on_some_layers_only(ct_folder):
    folder = ct_folder(kind="clt")
    _edit_tensors(folder / "W_enc_2.safetensors", drop=["threshold_2"])
    _raises(folder, "W_enc_2.safetensors", "threshold_2")


def test_listed_file_missing(gemmascope_folder):
    folder, _ = gemmascope_folder()
    (folder / "layer_1" / "width_16k" / "params.npz").unlink()
    _raises(folder, "params.npz", "transcoders")


def test_listed_layer_count_mismatch(gemmascope_folder):
    folder, _ = gemmascope_folder()
    _raises(folder, "config.yaml", "transcoders", n_layers=L + 2)


def test_listed_not_a_list(gemmascope_folder):
    folder, _ = gemmascope_folder()
    _edit_config(folder, transcoders="layer_0/width_16k/params.npz")
    _raises(folder, "config.yaml", "transcoders")


def test_npz_missing_key(gemmascope_folder):
    folder, raw = gemmascope_folder()
    arrays = dict(raw[1])
    del arrays["b_dec"]
    np.savez(folder / "layer_1" / "width_16k" / "params.npz", **arrays)
    _raises(folder, "params.npz", "b_dec")


def test_npz_wrong_d_model(gemmascope_folder):
    folder, _ = gemmascope_folder()
    _raises(folder, "params.npz", "W_enc", d_model=D * 2)


def test_npz_with_object_array_is_not_unpickled(gemmascope_folder):
    folder, raw = gemmascope_folder()
    arrays = dict(raw[0])
    arrays["W_enc"] = np.array([{"evil": 1}], dtype=object)
    np.savez(folder / "layer_0" / "width_16k" / "params.npz", **arrays)
    _raises(folder, "params.npz", None)


def test_gs2_plt_wrong_skip_shape(gemmascope2_plt_folder):
    folder, _ = gemmascope2_plt_folder()
    path = folder / "layer_1_width_16k.safetensors"
    _edit_tensors(path, affine_skip_connection=torch.zeros(D, D + 1))
    _raises(folder, path.name, "affine_skip_connection")


def test_gs2_clt_wrong_decoder_shape(gemmascope2_clt_folder):
    folder, _ = gemmascope2_clt_folder()
    path = folder / "params_layer_2.safetensors"
    _edit_tensors(path, w_dec=torch.zeros(F, L - 1, D))
    _raises(folder, path.name, "w_dec")


def test_gs2_clt_skip_on_some_layers_only(gemmascope2_clt_folder):
    folder, _ = gemmascope2_clt_folder()
    path = folder / "params_layer_1.safetensors"
    _edit_tensors(path, drop=["affine_skip_connection"])
    _raises(folder, path.name, "affine_skip_connection")


def test_listed_clt_file_of_wrong_format(ct_folder, gemmascope2_clt_folder):
    folder, _ = gemmascope2_clt_folder()
    plt = ct_folder()
    _edit_config(folder, transcoders=[str(plt / f"layer_{i}.safetensors") for i in range(L)])
    _raises(folder, "layer_0.safetensors", "w_enc")


def test_corrupt_safetensors(ct_folder):
    folder = ct_folder()
    (folder / "layer_0.safetensors").write_bytes(b"not a safetensors file")
    _raises(folder, "layer_0.safetensors", None)


def test_unrecognised_layer_file(gemmascope2_plt_folder):
    folder, _ = gemmascope2_plt_folder()
    path = folder / "layer_0_width_16k.safetensors"
    save_file({"weights": torch.zeros(2)}, str(path))
    _raises(folder, path.name, "W_enc")
