"""What the Dagster commands share: the config flag and the Dagster instance."""

from __future__ import annotations

import os
from pathlib import Path

from ct_lake.commands._common import add_config_flag

__all__ = ["add_config_flag", "load"]


def load(args):
    """``(config, instance)``: the config (also exported as ``CT_CONFIG`` for Dagster code)
    and the Dagster instance of ``$DAGSTER_HOME``, default ``dagster_home/`` next to it."""
    from ct_lake.config import CONFIG_ENV, load_config

    config = load_config(args.config)
    os.environ[CONFIG_ENV] = str(config.path)
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(config.path.parent / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    import dagster as dg

    return config, dg.DagsterInstance.get()
