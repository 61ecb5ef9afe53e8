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


@pytest.fixture(scope="session")
def tiny_lake_template(tmp_path_factory, tiny_lakehouse_files) -> Path:
    """The tiny model's ``PROMPTS`` materialized once per session with ``write_config``'s
    settings: a folder to copy with :func:`copy_tiny_lake`, never to write into.

    A materialization costs far more than a copy, and several modules need this same lake.
    Its rows and MLflow runs name a few files by absolute path (the transcoder cache's set, the
    runs' artifacts): in a copy those stay the template's, which is only ever read."""
    import dagster as dg

    from ct_assets.lib.runner import materialize
    from ct_lake.config import load_config
    from tests.assets.conftest import write_config

    folder = tmp_path_factory.mktemp("tiny-lake-template")
    config = load_config(write_config(folder, tiny_lakehouse_files))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CT_CONFIG", str(config.path))
        mp.setenv("DAGSTER_HOME", str(folder / "dagster_home"))
        (folder / "dagster_home").mkdir()
        with dg.instance_for_test(temp_dir=str(folder / "dagster_home")) as instance:
            assert materialize(config, "tiny", PROMPTS, instance).success
    return folder


def copy_tiny_lake(template: Path, folder: Path) -> Path:
    """A private copy of ``template`` (see ``tiny_lake_template``) in the new ``folder``, with its
    Dagster home (the runs that built it); returns the copy's config path."""
    import shutil

    shutil.copytree(template, folder, dirs_exist_ok=False)
    return folder / "ct_lakehouse.yaml"


@pytest.fixture(scope="session")
def toy_features_template(tmp_path_factory):
    """The toy world's dashboards, feature files, graph and lake of ``tests/viewer/toy_features.py``
    built once per session; modules take a private copy (``toy_features.private_copy``)."""
    from tests.viewer.toy_features import build

    return build(tmp_path_factory.mktemp("toy-features-template"), lake=True)


# --- Two workers (pytest-xdist, ``make test``) ---------------------------------------------------
# Much of the suite waits on subprocesses and servers, so two workers on two cores finish it in
# far less time than one. Work is handed out a test file at a time, as ``--dist loadfile`` does
# (a module's fixtures are built once), except that the tests marked ``xdist_group("<name>")``
# form one unit whatever their files: the team profile's tests share one set of session
# services, which two workers would start twice. The groups go first: they are the longest
# units, and one started last would leave the other worker idle at the end.


def _grouped_run(config) -> bool:
    """In ``--dist loadgroup`` runs: true in the controller and in the workers."""
    option = config.option
    return getattr(option, "dist", "no") == "loadgroup" or bool(getattr(option, "loadgroup", False))


def pytest_collection_modifyitems(config, items):
    if _grouped_run(config):  # every worker sorts alike: their collections must agree
        items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    if getattr(config.option, "dist", "no") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileOrGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            # xdist appends "@<group>" to the ids of marked tests (after any "[params]")
            if nodeid.rfind("@") > nodeid.rfind("]"):
                return "@" + nodeid.rsplit("@", 1)[1]
            return nodeid.split("::", 1)[0]

    config.option.loadscopereorder = False  # the collection's order, groups first
    return FileOrGroupScheduling(config, log)
