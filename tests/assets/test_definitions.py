"""The Dagster project loads: ``ct_assets.definitions`` resolves its ``defs/`` folder."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from .conftest import write_config

REPO = Path(__file__).resolve().parents[2]


def test_definitions_load(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    from ct_assets.definitions import defs

    loaded = defs()
    assert isinstance(loaded, dg.Definitions)
    dg.Definitions.validate_loadable(loaded)


def test_definitions_validate_cli(tmp_path):
    """What CI runs: ``dg check defs`` when ``dg`` (dagster-dg-cli) is installed, else
    ``dagster definitions validate``, in a fresh process with a temporary instance."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    config = write_config(tmp_path, tmp_path / "no-model-files")
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "dg").exists():
        argv, cwd = [str(bin_dir / "dg"), "check", "defs"], REPO
    else:
        argv = [str(bin_dir / "dagster"), "definitions", "validate", "-m", "ct_assets.definitions"]
        cwd = tmp_path
    env = {**os.environ, "DAGSTER_HOME": str(home), "CT_CONFIG": str(config)}
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{output}"
    if argv[1] == "definitions":
        assert "All code locations passed validation" in output, output
