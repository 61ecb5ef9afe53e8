"""What the Dagster commands share: the config flag and the Dagster instance."""

from __future__ import annotations

import os
from pathlib import Path

from ct_lake.commands._common import add_config_flag

__all__ = ["add_config_flag", "load"]


def load(args):
    """``(config, instance)``: the config (also exported as ``CT_CONFIG`` for Dagster code)
    and the Dagster instance of ``$DAGSTER_HOME``, default ``dagster_home/`` in
    the config's base folder (next to the file, or the current folder for the packaged default)."""
    from ct_lake.config import CONFIG_ENV, load_config

    config = load_config(args.config)
    os.environ[CONFIG_ENV] = str(config.path)
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(config.base / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    import dagster as dg

    return config, dg.DagsterInstance.get()
