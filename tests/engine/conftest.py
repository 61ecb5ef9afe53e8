"""Tiny Hugging Face models and random transcoders, built once per test session.

Models are small (2–3 layers, d_model 32) with random weights; transcoders are random with
``F = 4·D`` features in circuit-tracer's on-disk formats, using each family's real hooks.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from ct_engine.tiny import FAMILY_HOOKS, TinyModelSpec, build_random_transcoders, build_tiny_model

# Transcoder kinds the oracle covers: JumpReLU PLT, PLT with skip, TopK PLT, CLTs.
TRANSCODER_KINDS = {
    "plt_jumprelu": dict(kind="plt", activation="jump_relu"),
    "plt_skip": dict(kind="plt", activation="relu", skip=True),
    "plt_topk": dict(kind="plt", activation="topk", k=12, skip=True),
    "clt": dict(kind="clt", activation="jump_relu"),
    "clt_skip": dict(kind="clt", activation="relu", skip=True),
}

TINY = {
    family: TinyModelSpec(family=family, n_layers=3, d_model=32, n_heads=4, n_kv_heads=2, d_mlp=64)
    for family in ("llama", "gemma2", "qwen3")
}

PROMPT = "the capital of Texas is Austin and the"


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_root):
    """``tiny_model_dir(family) -> Path`` of a tiny Hugging Face model."""

    def make(family: str) -> Path:
        path = tiny_root / family
        if not (path / "config.json").exists():
            build_tiny_model(path, TINY[family])
        return path

    return make


@pytest.fixture(scope="session")
def transcoder_dir(tiny_root):
    """``transcoder_dir(family, kind, hooks=None) -> Path`` of random transcoders."""

    def make(family: str, kind: str, hooks: tuple[str, str] | None = None) -> Path:
        spec = TINY[family]
        hooks = hooks or FAMILY_HOOKS[family]
        path = tiny_root / f"{family}-{kind}-{hooks[0]}-{hooks[1]}"
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

    return make


@pytest.fixture(scope="session")
def replacement_model(tiny_model_dir, transcoder_dir):
    """``replacement_model(family, kind) -> ReplacementModel``, cached per session."""
    from ct_engine.replacement import ReplacementModel

    cache = {}

    def make(family: str, kind: str = "plt_jumprelu"):
        if (family, kind) not in cache:
            cache[family, kind] = ReplacementModel.from_pretrained(
                tiny_model_dir(family), transcoder_dir(family, kind), device="cpu"
            )
        return cache[family, kind]

    return make
