"""Files shipped inside the packages: the SQL views and queries and the default config.

They are package data, found next to the code, in a checkout and in an installed wheel alike:

* :func:`sql_dir`: ``ct_lake/sql/`` (``views/`` for the catalog, ``queries/`` for people);
* :func:`packaged_config`: ``ct_lake/defaults/ct_lakehouse.yaml``, the config of last resort;
* :func:`default_config`: the config used when no path and no ``$CT_CONFIG`` name one:
  ``./ct_lakehouse.yaml`` of the current folder if there is one, else the packaged default;
* :func:`config_base`: where a config's relative paths resolve: the config file's folder, but
  the *current* folder for the packaged default (so ``lake: .ct-lake`` lands in the current
  folder, never inside the installed package);
* :func:`resolve_path`: a path value of a config: relative to the base, or ``pkg:PKG/PATH``
  for a file shipped inside the installed package ``PKG`` (the packaged default names the
  golden set ``pkg:ct_assets/golden/golden_set.yaml`` this way). The package is located,
  not imported, so naming a package of a higher layer adds no import of it.

Packages must be installed as folders (a wheel, an editable install or a checkout on
``sys.path``), not zipped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

CONFIG_NAME = "ct_lakehouse.yaml"
PACKAGE_PREFIX = "pkg:"
_HERE = Path(__file__).resolve().parent


def sql_dir() -> Path:
    """``ct_lake/sql/``: ``views/*.sql`` (the catalog's views) and ``queries/*.sql``."""
    return _HERE / "sql"


def packaged_config() -> Path:
    """The default config shipped with ``ct_lake``."""
    return _HERE / "defaults" / CONFIG_NAME


def default_config(cwd: Path | None = None) -> Path:
    """``<cwd>/ct_lakehouse.yaml`` when that file exists, else :func:`packaged_config`.
    ``cwd``: default the current folder."""
    local = (cwd or Path.cwd()) / CONFIG_NAME
    return local if local.is_file() else packaged_config()


def is_packaged_config(path: str | Path) -> bool:
    return Path(path).resolve() == packaged_config()


def config_base(path: str | Path) -> Path:
    """The folder the relative paths of the config file ``path`` resolve against: its own
    folder, or the current folder for :func:`packaged_config`."""
    return Path.cwd() if is_packaged_config(path) else Path(path).resolve().parent


def package_dir(package: str) -> Path:
    """The folder of the installed top-level package ``package``, found without importing
    it. Raises ``ValueError`` (one line) when it is not installed as a folder."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ValueError(f"{PACKAGE_PREFIX}{package}: no installed package {package!r}")
    return Path(locations[0]).resolve()


def resolve_path(value: str | Path, base: Path) -> Path:
    """A config's path value as a path: ``pkg:PKG/PATH`` is ``PATH`` inside the installed
    package ``PKG``; anything else is relative to ``base`` (absolute paths stay as they are).
    Raises ``ValueError`` for ``pkg:`` without a package and a path."""
    text = str(value)
    if not text.startswith(PACKAGE_PREFIX):
        return base / text
    package, _, inner = text[len(PACKAGE_PREFIX) :].partition("/")
    if not package or not inner:
        raise ValueError(f"{text}: expected {PACKAGE_PREFIX}PACKAGE/PATH")
    return package_dir(package) / inner
