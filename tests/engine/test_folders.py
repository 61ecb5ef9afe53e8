"""ct_engine.folders: the umask read without changing it, and the modes written folders get."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ct_engine.features.cards import Example, ExampleGroup, FeatureCard
from ct_engine.features.files import write_cards
from ct_engine.folders import current_umask, default_mode, replace_folder
from tests.umask import CASES, mode, modes, umask


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o027, 0o002])
def test_current_umask_reads_the_mask_without_changing_it(mask):
    with umask(mask):
        assert current_umask() == mask
        assert os.umask(mask) == mask  # still set: reading did not change it
        assert default_mode() == 0o666 & ~mask
        assert default_mode(folder=True) == 0o777 & ~mask


def test_current_umask_without_proc_sets_and_restores_it(tmp_path):
    """Where /proc is missing (macOS), the fallback gives the same answer and leaves the mask."""
    script = (
        "import builtins, os\n"
        "real_open = builtins.open\n"
        "def no_proc(path, *a, **k):\n"
        "    if str(path).startswith('/proc/'):\n"
        "        raise FileNotFoundError(path)\n"
        "    return real_open(path, *a, **k)\n"
        "builtins.open = no_proc\n"
        "os.umask(0o027)\n"
        "from ct_engine.folders import current_umask\n"
        "print(oct(current_umask()), oct(os.umask(0)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0o27", "0o27"]


def test_current_umask_is_per_process_not_per_thread():
    """Threads share the umask: a thread reads what the main thread set."""
    seen = []
    with umask(0o077):
        thread = threading.Thread(target=lambda: seen.append(current_umask()))
        thread.start()
        thread.join()
    assert seen == [0o077]


@pytest.mark.parametrize(("mask", "file_mode", "folder_mode"), CASES)
def test_replace_folder_gives_the_usual_folder_mode(tmp_path, mask, file_mode, folder_mode):
    staging = tmp_path / ".new"
    staging.mkdir(mode=0o700)  # private while it is built, as tempfile.mkdtemp makes it
    (staging / "a.txt").write_text("a")
    with umask(mask):
        replace_folder(staging, tmp_path / "set")
        assert mode(tmp_path / "set") == folder_mode
        staging.mkdir(mode=0o700)
        replace_folder(staging, tmp_path / "set")  # replacing an existing folder too
    assert mode(tmp_path / "set") == folder_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


@pytest.mark.parametrize(("mask", "file_mode", "folder_mode"), CASES)
def test_a_features_folder_has_the_usual_modes(tmp_path, mask, file_mode, folder_mode):
    with umask(mask):
        folder = write_cards({0: [_card(0, 0)], 1: [_card(1, 0)]}, tmp_path / "features", 1)
    found = modes(folder)
    assert found.pop(".") == folder_mode
    assert sorted(found) == ["ct_features.json", "index.json.gz", "layer_0.bin", "layer_1.bin"]
    assert set(found.values()) == {file_mode}


def _card(layer: int, feature: int) -> FeatureCard:
    example = Example(tokens=["a", " b"], acts=[0.0, 1.0], max_pos=1, max_act=1.0)
    return FeatureCard(
        layer=layer,
        feature=feature,
        transcoder_id="set",
        n_tokens=10,
        n_active=1,
        frequency=0.1,
        act_min=1.0,
        act_max=1.0,
        act_mean=1.0,
        quantile_levels=[0.0, 1.0],
        quantile_values=[1.0, 1.0],
        histogram_edges=[0.5, 1.0],
        histogram_counts=[1],
        groups=[ExampleGroup("Top activations", [example])],
        top_logits=[("x", 1.0)],
        bottom_logits=[("y", -1.0)],
        top_tokens=[(" b", 1)],
        label="a label",
        label_source="human",
    )


def test_the_modes_module_is_light():
    """ct_lake uses these helpers, so ct_engine.folders must not import torch."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, ct_engine.folders; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout.strip() == "False", done.stderr
