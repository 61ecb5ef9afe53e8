"""Package data: the SQL views, the default config and the golden set, found from a checkout
and from an installed wheel; the config lookup order.

Lookup order: an explicit path > ``$CT_CONFIG`` > ``./ct_lakehouse.yaml`` > the packaged
default, whose relative paths resolve against the current folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ct_lake import package_data
from ct_lake.config import CONFIG_ENV, ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ct_engine", "ct_lake", "ct_assets", "ct_viewer", "ct_cli")


def _write(folder: Path, lake: str) -> Path:
    path = folder / package_data.CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"lake: {lake}\nmodels: []\n")
    return path


def test_config_lookup_order(tmp_path, monkeypatch):
    here, env, explicit = tmp_path / "here", tmp_path / "env", tmp_path / "explicit"
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    here.mkdir()
    monkeypatch.chdir(here)
    # nothing named, no ./ct_lakehouse.yaml: the packaged default, its lake in this folder
    packaged = load_config()
    assert packaged.path == package_data.packaged_config()
    assert packaged.lake == here / ".ct-lake"
    _write(here, "from-cwd")
    assert load_config().lake == here / "from-cwd"  # ./ct_lakehouse.yaml
    monkeypatch.setenv(CONFIG_ENV, str(_write(env, "from-env")))
    assert load_config().lake == env / "from-env"  # $CT_CONFIG beats ./ct_lakehouse.yaml
    path = _write(explicit, "from-path")
    assert load_config(path).lake == explicit / "from-path"  # an explicit path beats both


def test_the_packaged_default_resolves_against_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.base == tmp_path
    assert (config.lake, config.prompts_file) == (tmp_path / ".ct-lake", tmp_path / "prompts.txt")
    assert config.tracking_uri == f"sqlite:///{tmp_path}/dagster_home/mlflow.db"
    # pkg: paths name shipped files: the golden set and the toy world's corpus
    assert config.golden == REPO / "ct_assets" / "golden" / "golden_set.yaml"
    assert config.golden.is_file()
    corpus = Path(config.model("toy-world").eval_texts)
    assert corpus.is_absolute() and corpus.read_text().startswith("Shubaith has a house")


def test_a_config_file_resolves_against_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = load_config(_write(tmp_path / "cfg", "data"))
    assert config.base == tmp_path / "cfg" and config.lake == tmp_path / "cfg" / "data"


def test_pkg_paths(tmp_path):
    inside = package_data.resolve_path("pkg:ct_lake/sql/views", tmp_path)
    assert inside == package_data.sql_dir() / "views" and inside.is_dir()
    assert package_data.resolve_path("a/b.yaml", tmp_path) == tmp_path / "a" / "b.yaml"
    with pytest.raises(ValueError, match="pkg:no_such_package: no installed package"):
        package_data.resolve_path("pkg:no_such_package/x.yaml", tmp_path)
    with pytest.raises(ValueError, match="expected pkg:PACKAGE/PATH"):
        package_data.resolve_path("pkg:ct_lake", tmp_path)


def test_a_bad_pkg_path_in_a_config_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lake: lake\nmodels: []\ngolden: pkg:not_installed_pkg/golden.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message == f"{path}: golden: pkg:not_installed_pkg: no installed package " + repr(
        "not_installed_pkg"
    )


def test_the_catalog_reads_the_packaged_views():
    from ct_lake import catalog

    assert catalog.views_dir() == package_data.sql_dir() / "views"
    assert package_data.sql_dir().parent == Path(catalog.__file__).resolve().parent


_INSTALLED_CHECK = """
import json, sys
from pathlib import Path
import ct_lake, ct_cli
from ct_lake import package_data
from ct_lake.catalog import connect, describe
from ct_lake.config import load_config
from ct_assets.lib.golden import load_golden
config = load_config()
views = [view.name for view, _ in describe(connect(config.lake))]
print(json.dumps({
    "ct_lake": ct_lake.__file__, "ct_cli": ct_cli.__file__, "sql_dir": str(package_data.sql_dir()),
    "config": str(config.path), "lake": str(config.lake), "golden": str(config.golden),
    "eval_texts": config.models[0].eval_texts, "views": views,
    "golden_cells": len(load_golden(config)),
}))
"""


def test_the_installed_wheel_finds_its_package_data(tmp_path):
    """Build a wheel from a copy of the sources, install it into a folder, and run from a
    folder outside any checkout with that folder first on ``sys.path``."""
    source, wheels, target, work = (tmp_path / n for n in ("src", "wheels", "site", "work"))
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("ct_lakehouse-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    views = sorted(p.name for p in (REPO / "ct_lake" / "sql" / "views").glob("*.sql"))
    assert views and {f"ct_lake/sql/views/{v}" for v in views} <= names
    assert "ct_lake/defaults/ct_lakehouse.yaml" in names
    assert "ct_assets/golden/golden_set.yaml" in names
    baselines = REPO / "ct_assets" / "golden" / "baselines"
    shipped = {
        f"ct_assets/{p.relative_to(baselines.parent.parent)}" for p in baselines.rglob("*.json")
    }
    assert shipped and shipped <= names
    assert "ct_cli/main.py" in names

    install = [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    env["PYTHONPATH"] = str(target)
    done = subprocess.run(
        [sys.executable, "-c", _INSTALLED_CHECK],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    installed = target.resolve()
    for key in ("ct_lake", "ct_cli", "sql_dir", "config", "golden", "eval_texts"):
        assert Path(found[key]).is_relative_to(installed), (key, found[key])
    assert found["config"] == str(installed / "ct_lake" / "defaults" / "ct_lakehouse.yaml")
    assert found["lake"] == str(work.resolve() / ".ct-lake")  # the current folder
    from ct_assets.lib.golden import load_golden

    assert found["golden_cells"] == len(load_golden(load_config(REPO / "ct_lakehouse.yaml"))) > 0
    assert {v.removesuffix(".sql") for v in views} <= set(found["views"])
    assert {"prompts", "graph_overview"} <= set(found["views"])
