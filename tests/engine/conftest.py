"""Tiny Hugging Face models and random transcoders, built once per test session."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from ct_engine.tiny import FAMILY_HOOKS, TinyModelSpec, build_random_transcoders, build_tiny_model

# Transcoder kinds the oracle covers (issue: JumpReLU PLT, PLT with skip, TopK PLT, CLT).
TRANSCODER_KINDS = {
    "plt_jumprelu": dict(kind="plt", activation="jump_relu"),
    "plt_skip": dict(kind="plt", activation="relu", skip=True),
    "plt_topk": dict(kind="plt", activation="topk", k=12, skip=True),
    "clt": dict(kind="clt", activation="jump_relu"),
    "clt_skip": dict(kind="clt", activation="relu", skip=True),
}

TINY = {
    "llama": TinyModelSpec(family="llama", n_layers=3, d_model=32, n_heads=4, n_kv_heads=2, d_mlp=64),
    "gemma2": TinyModelSpec(family="gemma2", n_layers=3, d_model=32, n_heads=4, n_kv_heads=2, d_mlp=64),
    "qwen3": TinyModelSpec(family="qwen3", n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_mlp=64),
}


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny")


def tiny_model_dir(root: Path, family: str) -> Path:
    path = root / family
    if not (path / "config.json").exists():
        build_tiny_model(path, TINY[family])
    return path


def tiny_transcoder_dir(root: Path, family: str, kind: str, hooks=None) -> Path:
    spec = TINY[family]
    hooks = hooks or FAMILY_HOOKS[family]
    path = root / f"{family}-{kind}-{hooks[0]}-{hooks[1]}"
    if not (path / "config.yaml").exists():
        build_random_transcoders(
            path,
            n_layers=spec.n_layers,
            d_model=spec.d_model,
            d_transcoder=4 * spec.d_model,
            feature_input_hook=hooks[0],
            feature_output_hook=hooks[1],
            seed=zlib.crc32(f"{family}-{kind}".encode()) % 1000,
            **TRANSCODER_KINDS[kind],
        )
    return path
