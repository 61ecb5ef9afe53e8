"""Test-wide settings: offline Hugging Face, deterministic seeds, few threads."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread for torch (and MKL) here and in every subprocess the tests start, set
# before torch is imported: the tests' models are tiny, and with two OpenMP threads on busy
# cores the threads spin waiting for each other (attribution on the tiny model measured 10x
# to 20x slower in wall time and CPU time with two threads than with one on a loaded 2-core
# machine). Code that needs a thread count sets its own (training does).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# A circuit-tracer transcoder cache on the machine (~/.cache/circuit_tracer) must not change
# what the tests load: its root is a folder that does not exist (tests of it set their own).
os.environ["CIRCUIT_TRACER_CACHE_DIR"] = os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"ct-tests-{os.getpid()}-no-circuit-tracer-cache"
)

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(42)


# The prompts of the tiny lakehouse model's tests; its corpus repeats them.
PROMPTS = [
    "the capital of Texas is Austin and the",
    "Mira lives in Paris which is the capital of",
]


@pytest.fixture(scope="session")
def tiny_lakehouse_files(tmp_path_factory) -> Path:
    """A tiny Llama, random JumpReLU transcoders (2 layers x 128 features) and a corpus file
    of its prompts, built once per session: ``root/model``, ``root/plt``, ``root/corpus.txt``."""
    from ct_engine.tiny import (
        FAMILY_HOOKS,
        TinyModelSpec,
        build_random_transcoders,
        build_tiny_model,
    )

    root = tmp_path_factory.mktemp("lakehouse-model")
    spec = TinyModelSpec(family="llama", n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_mlp=64)
    build_tiny_model(root / "model", spec)
    hooks = FAMILY_HOOKS["llama"]
    build_random_transcoders(
        root / "plt",
        n_layers=2,
        d_model=32,
        d_transcoder=128,
        kind="plt",
        activation="jump_relu",
        feature_input_hook=hooks[0],
        feature_output_hook=hooks[1],
        threshold_scale=1.5,
        model_name=str(root / "model"),
    )
    # the feature dashboards' corpus (feature_corpus in write_config): the prompts' words
    (root / "corpus.txt").write_text("\n".join(PROMPTS * 40) + "\n")
    return root
