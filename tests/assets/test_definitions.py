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
        workspace = REPO / "dagster_home" / "workspace.yaml"  # what `make dagster` serves
        argv = [str(bin_dir / "dagster"), "definitions", "validate", "-w", str(workspace)]
        cwd = tmp_path
    env = {**os.environ, "DAGSTER_HOME": str(home), "CT_CONFIG": str(config)}
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{output}"
    if argv[1] == "definitions":
        assert "All code locations passed validation" in output, output
        # none about the code location (its name is the project's); Dagster's nag that `dg`
        # supersedes this command is the only one left
        warnings = [
            line
            for line in output.splitlines()
            if "warning" in line.lower() and "SupersessionWarning" not in line
        ]
        assert warnings == [], output


def test_a_new_local_dagster_home_gets_the_repos_instance_settings(tmp_path, monkeypatch):
    """``ct materialize`` in a folder of its own writes the settings of the repo's
    ``dagster_home/dagster.yaml`` (telemetry off, one slot per pool) into the new home, so
    Dagster prints no notice about a missing file and no telemetry banner."""
    import argparse

    import yaml

    from ct_assets.commands._common import INSTANCE_SETTINGS, load

    repo = yaml.safe_load((REPO / "dagster_home" / "dagster.yaml").read_text())
    assert yaml.safe_load(INSTANCE_SETTINGS) == repo
    for name in ("DAGSTER_HOME", "CT_CONFIG", "CT_PROFILE"):  # load() sets the first two
        monkeypatch.setenv(name, "")  # so that monkeypatch restores them afterwards
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    config, instance = load(argparse.Namespace(config=None))
    written = tmp_path / "dagster_home" / "dagster.yaml"
    assert yaml.safe_load(written.read_text()) == repo
    assert instance.root_directory == str(tmp_path / "dagster_home")
    assert not instance.telemetry_enabled
