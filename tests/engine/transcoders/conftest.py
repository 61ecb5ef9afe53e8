"""Fixtures for the transcoder tests: offline hub, and builders for every on-disk format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from ct_engine.tiny import build_random_transcoders

D, F, L = 16, 64, 3
HOOKS = {"feature_input_hook": "mlp.hook_in", "feature_output_hook": "mlp.hook_out"}


@pytest.fixture(autouse=True)
def _offline_and_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No hub traffic, a private cache root, and a fixed seed for every test."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("CT_CACHE_DIR", str(tmp_path / "ct_cache"))
    torch.manual_seed(0)


@pytest.fixture
def ct_folder(tmp_path: Path) -> Callable[..., Path]:
    """Build a circuit-tracer folder: ``ct_folder(kind="plt", activation=..., skip=...)``."""

    def build(name: str = "ct", **kwargs) -> Path:
        params = dict(n_layers=L, d_model=D, d_transcoder=F, kind="plt", activation="jump_relu")
        params.update(kwargs)
        return build_random_transcoders(tmp_path / name, **params)

    return build


def _rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.rand(*shape) * 2 - 1) * scale


def _write_config(directory: Path, model_kind: str, files: list[str], **extra) -> None:
    config = {"model_kind": model_kind, **HOOKS, "transcoders": files, **extra}
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def gemmascope_folder(tmp_path: Path) -> Callable[..., tuple[Path, list[dict]]]:
    """GemmaScope ``.npz`` PLTs listed in a config; returns (folder, raw arrays per layer)."""

    def build(n_layers: int = L) -> tuple[Path, list[dict]]:
        directory = tmp_path / "gemmascope"
        raw, files = [], []
        for i in range(n_layers):
            arrays = {
                "W_enc": _rand(D, F, scale=3 / D**0.5).numpy(),
                "W_dec": _rand(F, D, scale=1 / F**0.5).numpy(),
                "b_enc": _rand(F, scale=0.1).numpy(),
                "b_dec": _rand(D, scale=0.1).numpy(),
                "threshold": torch.rand(F).numpy(),
            }
            path = directory / f"layer_{i}" / "width_16k" / "params.npz"
            path.parent.mkdir(parents=True)
            np.savez(path, **arrays)
            raw.append(arrays)
            files.append(str(path.relative_to(directory)))
        _write_config(directory, "transcoder_set", files, model_name="google/gemma-2-2b")
        return directory, raw

    return build


@pytest.fixture
def gemmascope2_plt_folder(tmp_path: Path) -> Callable[..., tuple[Path, list[dict]]]:
    """GemmaScope-2 per-layer safetensors (with affine skip); returns (folder, raw tensors)."""

    def build(n_layers: int = L, skip: bool = True) -> tuple[Path, list[dict]]:
        directory = tmp_path / "gs2_plt"
        directory.mkdir()
        raw, files = [], []
        for i in range(n_layers):
            tensors = {
                "w_enc": _rand(D, F, scale=3 / D**0.5),
                "w_dec": _rand(F, D, scale=1 / F**0.5),
                "b_enc": _rand(F, scale=0.1),
                "b_dec": _rand(D, scale=0.1),
                "threshold": torch.rand(F),
            }
            if skip:
                tensors["affine_skip_connection"] = _rand(D, D, scale=0.5 / D**0.5)
            save_file(tensors, str(directory / f"layer_{i}_width_16k.safetensors"))
            raw.append(tensors)
            files.append(f"layer_{i}_width_16k.safetensors")
        _write_config(directory, "transcoder_set", files)
        return directory, raw

    return build


@pytest.fixture
def gemmascope2_clt_folder(tmp_path: Path) -> Callable[..., tuple[Path, list[dict]]]:
    """GemmaScope-2 CLT files, one per layer (``w_dec (F, L, D)``); returns (folder, raw)."""

    def build(n_layers: int = L, skip: bool = True) -> tuple[Path, list[dict]]:
        directory = tmp_path / "gs2_clt"
        directory.mkdir()
        raw, files = [], []
        for i in range(n_layers):
            tensors = {
                "w_enc": _rand(D, F, scale=3 / D**0.5),
                "w_dec": _rand(F, n_layers, D, scale=1 / F**0.5),
                "b_enc": _rand(F, scale=0.1),
                "b_dec": _rand(D, scale=0.1),
                "threshold": torch.rand(F),
            }
            if skip:
                tensors["affine_skip_connection"] = _rand(D, D, scale=0.5 / D**0.5)
            save_file(tensors, str(directory / f"params_layer_{i}.safetensors"))
            raw.append(tensors)
            files.append(f"params_layer_{i}.safetensors")
        _write_config(directory, "cross_layer_transcoder", files)
        return directory, raw

    return build
